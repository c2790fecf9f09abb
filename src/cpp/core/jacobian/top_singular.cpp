#include "jacobian/top_singular.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/rng.hpp"
#include "common/tiled_blas.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

double dot(const double* a, const double* b, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename TM>
constexpr bool kIsDouble = std::is_same_v<TM, double>;

void to_float(const double* a, std::size_t n, std::vector<float>& out) {
  out.resize(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(a[i]);
}
void to_double(const float* a, std::size_t n, double* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i];
}

}  // namespace

TopSingular::TopSingular(int rows, const TopSingularOptions& options) : n_(rows), o_(options) {
  if (rows < 1) throw std::invalid_argument("TopSingular: rows must be at least 1");
  o_.block = std::max(1, std::min(o_.block, rows));
  o_.max_basis = std::max(o_.max_basis, 2 * o_.block);
  z_.resize(static_cast<std::size_t>(o_.max_basis) * n_);
  bz_.resize(static_cast<std::size_t>(o_.max_basis) * n_);
  h_.resize(static_cast<std::size_t>(o_.max_basis) * o_.max_basis);
  theta_.resize(o_.max_basis);
  xr_.resize(static_cast<std::size_t>(o_.block) * n_);
  bxr_.resize(static_cast<std::size_t>(o_.block) * n_);
  warm_.resize(static_cast<std::size_t>(o_.block) * n_);
}

// Orthogonalises the c rows of x against Z (twice: classical Gram-Schmidt needs the
// second pass to be orthogonal to working precision) and among themselves, drops
// the rows that were (numerically) in the span, and returns how many are left.
int TopSingular::orthonormalise_new(double* x, int c) {
  std::vector<double> before(c);
  for (int i = 0; i < c; ++i) before[i] = std::sqrt(dot(x + std::size_t(i) * n_, x + std::size_t(i) * n_, n_));
  if (basis_ > 0) {
    std::vector<double> coef(static_cast<std::size_t>(c) * basis_);
    for (int pass = 0; pass < 2; ++pass) {
      blas::gemm(Trans::No, Trans::Yes, c, basis_, n_, 1.0, x, n_, z_.data(), n_, 0.0,
                 coef.data(), basis_);
      blas::gemm(Trans::No, Trans::No, c, n_, basis_, -1.0, coef.data(), basis_, z_.data(), n_,
                 1.0, x, n_);
    }
  }
  int kept = 0;
  for (int i = 0; i < c; ++i) {
    double* xi = x + std::size_t(i) * n_;
    for (int pass = 0; pass < 2; ++pass)
      for (int j = 0; j < kept; ++j) {
        const double* xj = x + std::size_t(j) * n_;
        const double p = dot(xi, xj, n_);
        for (int t = 0; t < n_; ++t) xi[t] -= p * xj[t];
      }
    const double nrm = std::sqrt(dot(xi, xi, n_));
    if (!(nrm > 1e-10 * before[i]) || nrm == 0.0) continue;
    double* dst = x + std::size_t(kept) * n_;
    for (int t = 0; t < n_; ++t) dst[t] = xi[t] / nrm;
    ++kept;
  }
  return kept;
}

// Appends c orthonormal rows x to the basis with their images Z M and Z M M^T, and
// the new rows of the projected matrix H = (Z M)(Z M)^T, positive semi-definite by
// construction.
template <typename TM>
void TopSingular::add_block(const TM* m, int cols, const double* x, int c) {
  const std::size_t b0 = basis_;
  std::memcpy(z_.data() + b0 * n_, x, sizeof(double) * std::size_t(c) * n_);
  double* y_new = y_.data() + b0 * cols;
  if constexpr (kIsDouble<TM>) {
    tiled_gemm(Trans::No, Trans::No, c, cols, n_, 1.0, x, n_, m, cols, 0.0, y_new, cols,
               o_.n_threads);
    tiled_gemm(Trans::No, Trans::Yes, c, n_, cols, 1.0, y_new, cols, m, cols, 0.0,
               bz_.data() + b0 * n_, n_, o_.n_threads);
  } else {
    to_float(x, std::size_t(c) * n_, xf_);
    yf_.resize(std::size_t(c) * cols);
    bzf_.resize(std::size_t(c) * n_);
    tiled_gemm(Trans::No, Trans::No, c, cols, n_, 1.0f, xf_.data(), n_, m, cols, 0.0f,
               yf_.data(), cols, o_.n_threads);
    tiled_gemm(Trans::No, Trans::Yes, c, n_, cols, 1.0f, yf_.data(), cols, m, cols, 0.0f,
               bzf_.data(), n_, o_.n_threads);
    to_double(yf_.data(), yf_.size(), y_new);
    to_double(bzf_.data(), bzf_.size(), bz_.data() + b0 * n_);
  }
  basis_ += c;
  std::vector<double> g(static_cast<std::size_t>(c) * basis_);
  blas::gemm(Trans::No, Trans::Yes, c, basis_, cols, 1.0, y_new, cols, y_.data(), cols, 0.0,
             g.data(), basis_);
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < basis_; ++j) {
      gram_[(b0 + i) * o_.max_basis + j] = g[std::size_t(i) * basis_ + j];
      gram_[std::size_t(j) * o_.max_basis + b0 + i] = g[std::size_t(i) * basis_ + j];
    }
}

// Rayleigh-Ritz: eigen-decomposes H and forms the top `count` Ritz vectors and
// their images under M M^T (no pass over M needed).
void TopSingular::ritz(int count) {
  const int b = basis_;
  for (int i = 0; i < b; ++i)
    std::memcpy(h_.data() + std::size_t(i) * b, gram_.data() + std::size_t(i) * o_.max_basis,
                sizeof(double) * b);
  if (blas::symmetric_eigen(b, h_.data(), b, theta_.data()) != 0)
    throw std::runtime_error("TopSingular: LAPACK dsyev failed");
  st_.resize(static_cast<std::size_t>(count) * b);
  for (int r = 0; r < count; ++r)
    for (int i = 0; i < b; ++i) st_[std::size_t(r) * b + i] = h_[std::size_t(i) * b + (b - 1 - r)];
  blas::gemm(Trans::No, Trans::No, count, n_, b, 1.0, st_.data(), b, z_.data(), n_, 0.0,
             xr_.data(), n_);
  blas::gemm(Trans::No, Trans::No, count, n_, b, 1.0, st_.data(), b, bz_.data(), n_, 0.0,
             bxr_.data(), n_);
}

TopSingularResult TopSingular::solve(const double* m, int cols, std::uint64_t call_index) {
  return dispatch(m, cols, call_index);
}
TopSingularResult TopSingular::solve(const float* m, int cols, std::uint64_t call_index) {
  return dispatch(m, cols, call_index);
}

template <typename TM>
TopSingularResult TopSingular::dispatch(const TM* m, int cols, std::uint64_t call_index) {
  if (cols < 1) throw std::invalid_argument("TopSingular: cols must be at least 1");
  if (o_.block == 1 || static_cast<long long>(n_) * cols < o_.block_from)
    return solve_single(m, cols, call_index);
  return solve_block(m, cols, call_index);
}

// Lanczos on B = M M^T: B Q_j = Q_j T_j + beta_j q_{j+1} e_j^T with T_j tridiagonal.
// For the top Ritz pair (theta, s) of T_j the residual is beta_j |s_j|, so the test
// needs no extra pass over M.
template <typename TM>
TopSingularResult TopSingular::solve_single(const TM* m, int cols, std::uint64_t call_index) {
  const int n = n_, max_m = std::min(o_.max_basis, n);
  alpha_.resize(max_m);
  beta_.resize(max_m);
  s_.resize(max_m);
  mt_.resize(cols);
  w_.resize(n);
  Rng rng(o_.seed, call_index);
  double* q = z_.data();
  // Start: the previous Ritz vector plus a 1e-3 random part, large enough that a
  // warm vector orthogonal to the new top direction cannot pass the residual test.
  std::vector<double> start(n);
  for (double& v : start) v = rng.normal();
  double rn = std::sqrt(dot(start.data(), start.data(), n));
  if (n_warm_ > 0) {
    for (int i = 0; i < n; ++i) start[i] = warm_[i] + 1e-3 * start[i] / rn;
    rn = std::sqrt(dot(start.data(), start.data(), n));
  }
  for (int i = 0; i < n; ++i) q[i] = start[i] / rn;
  TopSingularResult res;
  double theta = 0.0;
  int j = 0;  // basis vectors in q
  for (;;) {
    double* qj = q + std::size_t(j) * n;
    if constexpr (kIsDouble<TM>) {
      tiled_gemv(Trans::Yes, n, cols, 1.0, m, cols, qj, 0.0, mt_.data(), o_.n_threads);
      tiled_gemv(Trans::No, n, cols, 1.0, m, cols, mt_.data(), 0.0, w_.data(), o_.n_threads);
    } else {
      to_float(qj, n, xf_);
      yf_.resize(cols);
      bzf_.resize(n);
      tiled_gemv(Trans::Yes, n, cols, 1.0f, m, cols, xf_.data(), 0.0f, yf_.data(), o_.n_threads);
      tiled_gemv(Trans::No, n, cols, 1.0f, m, cols, yf_.data(), 0.0f, bzf_.data(), o_.n_threads);
      to_double(bzf_.data(), n, w_.data());
    }
    ++res.passes;
    alpha_[j] = dot(qj, w_.data(), n);
    // Full reorthogonalisation, twice: Lanczos vectors lose orthogonality exactly
    // when a Ritz value converges.
    std::vector<double> coef(j + 1);
    for (int pass = 0; pass < 2; ++pass) {
      blas::gemv(Trans::No, j + 1, n, 1.0, q, n, w_.data(), 0.0, coef.data());
      blas::gemv(Trans::Yes, j + 1, n, -1.0, q, n, coef.data(), 1.0, w_.data());
    }
    const double b = std::sqrt(dot(w_.data(), w_.data(), n));
    ++j;
    if (blas::tridiagonal_top_eigenpair(j, alpha_.data(), beta_.data(), &theta, s_.data()) != 0)
      throw std::runtime_error("TopSingular: LAPACK dstebz/dstein failed");
    const double resid = b * std::abs(s_[j - 1]);
    const bool invariant = !(b > 1e-14 * std::max(theta, 1e-300)) || j >= n;
    const bool done = (theta > 0.0 && resid <= o_.tol * theta) || invariant;
    if (done || res.passes >= o_.max_passes || j >= max_m) {
      // Ritz vector y = Q s: the answer's warm start, or the restart vector.
      std::vector<double> y(n, 0.0);
      blas::gemv(Trans::Yes, j, n, 1.0, q, n, s_.data(), 0.0, y.data());
      const double yn = std::sqrt(dot(y.data(), y.data(), n));
      for (int i = 0; i < n; ++i) warm_[i] = y[i] / yn;
      n_warm_ = 1;
      if (done) {
        res.converged = true;
        break;
      }
      if (res.passes >= o_.max_passes) break;
      std::memcpy(q, warm_.data(), sizeof(double) * n);  // explicit restart
      j = 0;
      continue;
    }
    beta_[j - 1] = b;
    double* next = q + std::size_t(j) * n;
    for (int i = 0; i < n; ++i) next[i] = w_[i] / b;
  }
  res.sigma = std::sqrt(std::max(theta, 0.0));
  return res;
}

template <typename TM>
TopSingularResult TopSingular::solve_block(const TM* m, int cols, std::uint64_t call_index) {
  y_.resize(static_cast<std::size_t>(o_.max_basis) * cols);
  gram_.assign(static_cast<std::size_t>(o_.max_basis) * o_.max_basis, 0.0);
  basis_ = 0;
  const int b = o_.block;
  Rng rng(o_.seed, call_index);
  std::vector<double> x(static_cast<std::size_t>(b) * n_);
  // Warm start: the previous top Ritz vectors, plus at least one fresh random vector
  // so that a warm block orthogonal to the new top direction cannot trap the solver.
  const int n_keep = std::min(n_warm_, b - 1);
  std::memcpy(x.data(), warm_.data(), sizeof(double) * std::size_t(n_keep) * n_);
  for (std::size_t i = std::size_t(n_keep) * n_; i < x.size(); ++i) x[i] = rng.normal();
  TopSingularResult res;
  int c = orthonormalise_new(x.data(), b);
  add_block(m, cols, x.data(), c);
  res.passes = 1;
  double th = 0.0;
  for (;;) {
    const int nr = std::min(b, basis_);
    ritz(nr);
    th = theta_[basis_ - 1];
    if (basis_ >= n_) {  // the basis spans everything: Ritz values are exact
      res.converged = true;
      break;
    }
    // Residuals of the top Ritz pairs: the convergence test and the next block.
    for (int r = 0; r < nr; ++r) {
      const double t = theta_[basis_ - 1 - r];
      double* xr = x.data() + std::size_t(r) * n_;
      for (int i = 0; i < n_; ++i)
        xr[i] = bxr_[std::size_t(r) * n_ + i] - t * xr_[std::size_t(r) * n_ + i];
    }
    const double rn = std::sqrt(dot(x.data(), x.data(), n_));
    if (th > 0.0 && rn <= o_.tol * th) {
      res.converged = true;
      break;
    }
    if (res.passes >= o_.max_passes) break;
    const int n_new = nr;
    if (th <= 0.0) {
      // M Z = 0 so far: the Krylov space says nothing; try fresh directions.
      for (std::size_t i = 0; i < std::size_t(nr) * n_; ++i) x[i] = rng.normal();
    }
    if (basis_ + nr > o_.max_basis) {
      // Thick restart on the top Ritz vectors; their images need no pass over M.
      yr_.resize(std::size_t(nr) * cols);
      blas::gemm(Trans::No, Trans::No, nr, cols, basis_, 1.0, st_.data(), basis_, y_.data(), cols,
                 0.0, yr_.data(), cols);
      std::memcpy(z_.data(), xr_.data(), sizeof(double) * std::size_t(nr) * n_);
      std::memcpy(bz_.data(), bxr_.data(), sizeof(double) * std::size_t(nr) * n_);
      std::memcpy(y_.data(), yr_.data(), sizeof(double) * std::size_t(nr) * cols);
      basis_ = nr;
      std::vector<double> g(std::size_t(nr) * nr);
      blas::gemm(Trans::No, Trans::Yes, nr, nr, cols, 1.0, yr_.data(), cols, yr_.data(), cols,
                 0.0, g.data(), nr);
      std::fill(gram_.begin(), gram_.end(), 0.0);
      for (int i = 0; i < nr; ++i)
        for (int j = 0; j < nr; ++j)
          gram_[std::size_t(i) * o_.max_basis + j] = g[std::size_t(i) * nr + j];
    }
    c = orthonormalise_new(x.data(), n_new);
    if (c == 0) {  // invariant subspace: the Ritz values are eigenvalues
      res.converged = true;
      break;
    }
    add_block(m, cols, x.data(), c);
    ++res.passes;
  }
  const int nr = std::min(b, basis_);
  std::memcpy(warm_.data(), xr_.data(), sizeof(double) * std::size_t(nr) * n_);
  n_warm_ = nr;
  res.sigma = std::sqrt(std::max(th, 0.0));
  return res;
}

}  // namespace pyjac::detail
