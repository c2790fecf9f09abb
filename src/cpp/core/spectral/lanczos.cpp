#include "pyjac/spectral/lanczos.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/reduce.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

using blas::Trans;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Streams of the seeded draws, so that no two uses share numbers.
constexpr std::uint64_t kStartStream = 0;
constexpr std::uint64_t kTraceStream = 1 << 20;
constexpr std::uint64_t kQuadratureStream = 2 << 20;

double dot(const double* a, const double* b, std::int64_t n) {
  double s = 0.0;
  for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

bool all_finite(const double* a, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    if (!std::isfinite(a[i])) return false;
  return true;
}

// +-1 entries from the bits of one stream.
void rademacher(double* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream) {
  Rng rng(seed, stream);
  std::uint64_t bits = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i % 64 == 0) bits = rng.next();
    out[i] = (bits >> (i % 64)) & 1 ? 1.0 : -1.0;
  }
}

void normal_vector(double* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream) {
  Rng rng(seed, stream);
  for (std::int64_t i = 0; i < n; ++i) out[i] = rng.normal();
}

// The Lanczos recurrence with full reorthogonalisation against every basis vector
// kept (classical Gram-Schmidt, a second pass when the first removed most of w:
// Daniel, Gragg, Kaufman and Stewart's criterion).
class LanczosBasis {
 public:
  LanczosBasis(std::int64_t n, int max_steps, const SymmetricProduct& a, int n_threads)
      : n_(n), max_steps_(max_steps), a_(a), nt_(n_threads), w_(n), coefficients_(max_steps) {
    // Reserved, not filled: the basis takes memory only as it grows.
    q_.reserve(static_cast<std::size_t>(max_steps) * n);
  }

  // Starts from v (not necessarily normalised); false when v is zero.
  bool start(const double* v) {
    q_.assign(v, v + n_);
    return normalise(q_.data());
  }

  int steps() const { return static_cast<int>(alpha_.size()); }
  const std::vector<double>& alpha() const { return alpha_; }
  // beta()[j] couples basis vectors j and j + 1; 0 where the space was restarted.
  const std::vector<double>& beta() const { return beta_; }
  const double* vector(int j) const { return q_.data() + static_cast<std::size_t>(j) * n_; }
  // The norm of the residual left after the last step (before it was normalised).
  double residual_norm() const { return residual_; }
  bool finite() const { return finite_; }

  // One product and the new coefficients; the next basis vector is formed by next().
  // The three-term recurrence first, then the projection against the whole basis
  // (whose coefficient on q_j corrects alpha): after the recurrence little is left to
  // remove, so a second pass is rarely needed.
  void step() {
    const int j = steps();
    const double* q = vector(j);
    a_(q, w_.data());
    if (!all_finite(w_.data(), n_)) {
      finite_ = false;
      alpha_.push_back(kNaN);
      residual_ = kNaN;
      return;
    }
    if (j > 0) {
      const double b = beta_.back();
      const double* prev = vector(j - 1);
      for (std::int64_t i = 0; i < n_; ++i) w_[i] -= b * prev[i];
    }
    double alpha = dot(q, w_.data(), n_);
    for (std::int64_t i = 0; i < n_; ++i) w_[i] -= alpha * q[i];
    alpha += reorthogonalise(j + 1, w_.data(), j);
    alpha_.push_back(alpha);
    residual_ = detail::vector_norm(w_.data(), static_cast<std::size_t>(n_));
  }

  // Appends the next basis vector: the residual when it is not negligible against the
  // operator's scale, else (the Krylov space closed) a fresh random vector orthogonal
  // to the basis, coupled by 0. False when no further direction exists.
  bool next(double scale, std::uint64_t seed, std::uint64_t stream) {
    const int j = steps();
    if (j >= max_steps_ || j >= n_) return false;
    q_.resize(static_cast<std::size_t>(j + 1) * n_);
    double* out = q_.data() + static_cast<std::size_t>(j) * n_;
    const double tiny = 64.0 * std::numeric_limits<double>::epsilon() * std::max(scale, 1e-300);
    if (residual_ > tiny) {
      for (std::int64_t i = 0; i < n_; ++i) out[i] = w_[i] / residual_;
      beta_.push_back(residual_);
      return true;
    }
    normal_vector(out, n_, seed, stream + static_cast<std::uint64_t>(j));
    reorthogonalise(j, out);
    beta_.push_back(0.0);
    return normalise(out);
  }

 private:
  // w -= Q^T (Q w) over the first `count` basis vectors, returning (Q w)[at] (0 when at
  // is out of range). Column chunks fixed by n: each chunk's partial products are summed
  // in chunk order, so the result does not depend on the thread count.
  double project_out(int count, double* w, int at) {
    constexpr std::int64_t kChunk = 1 << 14;
    const std::int64_t chunks = (n_ + kChunk - 1) / kChunk;
    partial_.assign(static_cast<std::size_t>(chunks) * count, 0.0);
    const bool parallel = chunks > 1 && static_cast<double>(n_) * count >= (1 << 18);
    const int ld = static_cast<int>(n_);
    detail::parallel_for(chunks, nt_, parallel, [&](std::int64_t ch) {
      const std::int64_t lo = ch * kChunk;
      const int len = static_cast<int>(std::min(kChunk, n_ - lo));
      blas::gemv(Trans::No, count, len, 1.0, q_.data() + lo, ld, w + lo, 0.0,
                 partial_.data() + ch * count);
    });
    double* c = coefficients_.data();
    std::fill(c, c + count, 0.0);
    for (std::int64_t ch = 0; ch < chunks; ++ch)
      for (int r = 0; r < count; ++r) c[r] += partial_[ch * count + r];
    detail::parallel_for(chunks, nt_, parallel, [&](std::int64_t ch) {
      const std::int64_t lo = ch * kChunk;
      const int len = static_cast<int>(std::min(kChunk, n_ - lo));
      blas::gemv(Trans::Yes, count, len, -1.0, q_.data() + lo, ld, c, 1.0, w + lo);
    });
    return at >= 0 && at < count ? c[at] : 0.0;
  }
  // Projects w off the basis, twice when the first pass removed most of it (Daniel,
  // Gragg, Kaufman and Stewart's criterion); returns the total coefficient on vector at.
  double reorthogonalise(int count, double* w, int at = -1) {
    const double before = detail::vector_norm(w, static_cast<std::size_t>(n_));
    double coefficient = project_out(count, w, at);
    const double after = detail::vector_norm(w, static_cast<std::size_t>(n_));
    if (after < 0.7071 * before) coefficient += project_out(count, w, at);
    return coefficient;
  }
  bool normalise(double* v) {
    const double norm = detail::vector_norm(v, static_cast<std::size_t>(n_));
    if (!(norm > 0.0) || !std::isfinite(norm)) return false;
    for (std::int64_t i = 0; i < n_; ++i) v[i] /= norm;
    return true;
  }

  std::int64_t n_;
  int max_steps_;
  const SymmetricProduct& a_;
  int nt_;
  std::vector<double> q_, w_, coefficients_, partial_;
  std::vector<double> alpha_, beta_;
  double residual_ = 0.0;
  bool finite_ = true;
};

// Eigenvalues (ascending) and eigenvectors (columns of z) of the basis's tridiagonal
// matrix.
void tridiagonal_ritz(const LanczosBasis& basis, std::vector<double>& theta,
                      std::vector<double>& z) {
  const int m = basis.steps();
  theta.assign(basis.alpha().begin(), basis.alpha().end());
  std::vector<double> e(std::max(m - 1, 1), 0.0);
  std::copy(basis.beta().begin(), basis.beta().begin() + (m - 1), e.begin());
  z.assign(static_cast<std::size_t>(m) * m, 0.0);
  const int info = blas::tridiagonal_eigen(m, theta.data(), e.data(), z.data());
  if (info != 0)
    throw std::runtime_error("Lanczos: the tridiagonal eigensolver failed (info " +
                             std::to_string(info) + ")");
}

// Indices into the ascending Ritz values of the wanted ones, in the order reported.
std::vector<int> wanted_indices(int m, const LanczosOptions& o) {
  std::vector<int> idx;
  const int k = std::min(o.k, m);
  if (o.which == EigenWhich::Largest) {
    for (int i = 0; i < k; ++i) idx.push_back(m - 1 - i);
  } else if (o.which == EigenWhich::Smallest) {
    for (int i = 0; i < k; ++i) idx.push_back(i);
  } else {
    for (int i = 0; i < k; ++i) idx.push_back(i);
    for (int i = std::max(k, m - k); i < m; ++i) idx.push_back(i);
  }
  return idx;
}

int wanted_count(const LanczosOptions& o) { return o.which == EigenWhich::Both ? 2 * o.k : o.k; }

}  // namespace

LanczosResult lanczos_eigen(std::int64_t n, const SymmetricProduct& a, const LanczosOptions& o) {
  if (n < 1) throw std::invalid_argument("Lanczos: the operator has no dimensions");
  if (o.k < 1 || wanted_count(o) > n)
    throw std::invalid_argument("k: must lie in [1, " +
                                std::to_string(o.which == EigenWhich::Both ? n / 2 : n) + "]");
  const int nt = resolve_threads(o.n_threads);
  BlasThreadScope blas_scope(1);
  const int max_steps = static_cast<int>(std::min<std::int64_t>(n, std::max(o.max_iter, 1)));
  LanczosBasis basis(n, max_steps, a, nt);
  std::vector<double> start(n);
  normal_vector(start.data(), n, o.seed, kStartStream);
  basis.start(start.data());

  LanczosResult r;
  std::vector<double> theta, z;
  const double eps23 = std::pow(std::numeric_limits<double>::epsilon(), 2.0 / 3.0);
  for (;;) {
    check_interrupt();
    basis.step();
    r.iterations = basis.steps();
    if (!basis.finite()) {
      r.values.assign(wanted_count(o), kNaN);
      r.residuals.assign(wanted_count(o), kNaN);
      return r;
    }
    tridiagonal_ritz(basis, theta, z);
    const int m = basis.steps();
    double scale = 0.0;
    for (double t : theta) scale = std::max(scale, std::abs(t));
    const std::vector<int> idx = wanted_indices(m, o);
    bool converged = m >= wanted_count(o);
    std::vector<double> residuals;
    for (int i : idx) {
      const double bound = std::abs(basis.residual_norm() * z[static_cast<std::size_t>(m - 1) * m + i]);
      residuals.push_back(bound);
      converged = converged && bound <= o.tol * std::max(std::abs(theta[i]), eps23 * scale);
    }
    const bool more = !converged && basis.next(scale, o.seed, kStartStream + 1);
    if (!more) {
      r.converged = converged;
      for (std::size_t t = 0; t < idx.size(); ++t) {
        r.values.push_back(theta[idx[t]]);
        r.residuals.push_back(residuals[t]);
      }
      if (o.vectors) {
        r.vectors.assign(idx.size() * static_cast<std::size_t>(n), 0.0);
        for (std::size_t t = 0; t < idx.size(); ++t) {
          double* y = r.vectors.data() + t * n;
          for (int j = 0; j < m; ++j) {
            const double c = z[static_cast<std::size_t>(j) * m + idx[t]];
            const double* q = basis.vector(j);
            for (std::int64_t i = 0; i < n; ++i) y[i] += c * q[i];
          }
        }
      }
      return r;
    }
  }
}

TraceResult trace_estimate(std::int64_t n, const SymmetricProduct& a, const TraceOptions& o) {
  if (n < 1) throw std::invalid_argument("trace: the operator has no dimensions");
  if (o.products < 1) throw std::invalid_argument("samples: must be at least 1");
  const int nt = resolve_threads(o.n_threads);
  BlasThreadScope blas_scope(1);
  TraceResult r;
  std::vector<double> z(n), az(n);
  // Hutch++: the exact trace on the span of A S (S: k random sign vectors), Hutchinson on
  // the rest with the remaining budget.
  const int k = o.hutchpp && o.products >= 3 ? static_cast<int>(std::min<std::int64_t>(o.products / 3, n)) : 0;
  std::vector<double> q(static_cast<std::size_t>(k) * n);
  double exact_part = 0.0;
  if (k > 0) {
    for (int s = 0; s < k; ++s) {
      check_interrupt();
      rademacher(z.data(), n, o.seed, kTraceStream + s);
      a(z.data(), q.data() + static_cast<std::size_t>(s) * n);
      ++r.products;
    }
    // Rows of q are the columns of an (n x k) column-major matrix: QR in place.
    std::vector<double> tau(k);
    int info = blas::geqrf_colmajor(static_cast<int>(n), k, q.data(), static_cast<int>(n),
                                    tau.data());
    if (info == 0)
      info = blas::orgqr_colmajor(static_cast<int>(n), k, q.data(), static_cast<int>(n),
                                  tau.data());
    if (info != 0)
      throw std::runtime_error("trace: the QR factorisation failed (info " +
                               std::to_string(info) + ")");
    for (int s = 0; s < k; ++s) {
      check_interrupt();
      const double* qs = q.data() + static_cast<std::size_t>(s) * n;
      a(qs, az.data());
      ++r.products;
      exact_part += dot(qs, az.data(), n);
    }
  }
  const int samples = o.products - 2 * k;
  std::vector<double> terms;
  std::vector<double> c(std::max(k, 1));
  for (int s = 0; s < samples; ++s) {
    check_interrupt();
    rademacher(z.data(), n, o.seed, kTraceStream + k + s);
    if (k > 0) {
      detail::tiled_gemv(Trans::No, k, static_cast<int>(n), 1.0, q.data(), static_cast<int>(n),
                         z.data(), 0.0, c.data(), nt);
      detail::tiled_gemv(Trans::Yes, k, static_cast<int>(n), -1.0, q.data(),
                         static_cast<int>(n), c.data(), 1.0, z.data(), nt);
    }
    a(z.data(), az.data());
    ++r.products;
    terms.push_back(dot(z.data(), az.data(), n));
  }
  double mean = 0.0;
  for (double t : terms) mean += t;
  if (!terms.empty()) mean /= static_cast<double>(terms.size());
  double var = 0.0;
  for (double t : terms) var += (t - mean) * (t - mean);
  r.trace = exact_part + mean;
  r.standard_error = terms.size() >= 2
                         ? std::sqrt(var / static_cast<double>(terms.size() - 1) /
                                     static_cast<double>(terms.size()))
                         : (k > 0 && terms.empty() ? 0.0 : kNaN);
  return r;
}

QuadratureResult spectral_quadrature(std::int64_t n, const SymmetricProduct& a,
                                     const QuadratureOptions& o) {
  if (n < 1) throw std::invalid_argument("density: the operator has no dimensions");
  if (o.vectors < 1) throw std::invalid_argument("n_vectors: must be at least 1");
  if (o.steps < 1) throw std::invalid_argument("steps: must be at least 1");
  const int nt = resolve_threads(o.n_threads);
  BlasThreadScope blas_scope(1);
  const int steps = static_cast<int>(std::min<std::int64_t>(n, o.steps));
  QuadratureResult r;
  r.vectors = o.vectors;
  r.steps = steps;
  r.nodes.assign(static_cast<std::size_t>(o.vectors) * steps, 0.0);
  r.weights.assign(static_cast<std::size_t>(o.vectors) * steps, 0.0);
  std::vector<double> start(n), theta, z;
  for (int v = 0; v < o.vectors; ++v) {
    const std::uint64_t stream = kQuadratureStream + static_cast<std::uint64_t>(v) * (steps + 1);
    rademacher(start.data(), n, o.seed, stream);
    LanczosBasis basis(n, steps, a, nt);
    basis.start(start.data());
    double scale = 0.0;
    bool finite = true;
    for (int j = 0; j < steps; ++j) {
      check_interrupt();
      basis.step();
      if (!basis.finite()) {
        finite = false;
        break;
      }
      scale = std::max(scale, std::abs(basis.alpha().back()) + basis.residual_norm());
      // A closed Krylov space holds all of q's spectral measure: stop there rather than
      // restart (a restart would add nodes that q has no weight on).
      const double tiny = 64.0 * std::numeric_limits<double>::epsilon() * std::max(scale, 1e-300);
      if (j + 1 == steps || basis.residual_norm() <= tiny) break;
      basis.next(scale, o.seed, stream + 1);
    }
    double* nodes = r.nodes.data() + static_cast<std::size_t>(v) * steps;
    double* weights = r.weights.data() + static_cast<std::size_t>(v) * steps;
    if (!finite) {
      std::fill(nodes, nodes + steps, kNaN);
      std::fill(weights, weights + steps, kNaN);
      continue;
    }
    tridiagonal_ritz(basis, theta, z);
    const int m = basis.steps();
    for (int i = 0; i < m; ++i) {
      nodes[i] = theta[i];
      weights[i] = z[i] * z[i];  // first row of the eigenvector matrix
    }
    for (int i = m; i < steps; ++i) nodes[i] = theta[m - 1];
  }
  return r;
}

}  // namespace pyjac
