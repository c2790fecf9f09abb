#include "pyjac/spectral/lanczos.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/reduce.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/draw.hpp"
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

// +-1 entries from the bits of one stream.
void rademacher(double* out, std::int64_t n, std::uint64_t seed, std::uint64_t stream) {
  Rng rng(seed, stream);
  std::uint64_t bits = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i % 64 == 0) bits = rng.next();
    out[i] = (bits >> (i % 64)) & 1 ? 1.0 : -1.0;
  }
}

// Long vectors cut into chunks fixed by their length: loops share the chunks among
// threads, and a reduction sums per-chunk partials in chunk order, so no result depends
// on the thread count.
class Chunks {
 public:
  static constexpr std::int64_t kSize = 1 << 14;  // even: normal pairs never straddle
  Chunks(std::int64_t n, int n_threads)
      : n_(n), count_((n + kSize - 1) / kSize), nt_(n_threads), partial_(count_) {}
  std::int64_t count() const { return count_; }

  template <typename Body>  // body(chunk, first index, length)
  void each(Body&& body) const {
    detail::parallel_for(count_, nt_, count_ > 1 && n_ >= (1 << 17), [&](std::int64_t c) {
      const std::int64_t lo = c * kSize;
      body(c, lo, std::min(kSize, n_ - lo));
    });
  }
  // sum over chunks of part(first, length), in chunk order.
  template <typename Part>
  double sum(Part&& part) {
    each([&](std::int64_t c, std::int64_t lo, std::int64_t len) { partial_[c] = part(lo, len); });
    double total = 0.0;
    for (double v : partial_) total += v;
    return total;
  }
  // ||v||, exact over the whole range: the plain sum of squares where it is, else the
  // scaled norm of reduce.hpp.
  double norm(const double* v) {
    const double squares = sum([&](std::int64_t lo, std::int64_t len) {
      return detail::row_sum_squares(v + lo, static_cast<std::size_t>(len));
    });
    if (detail::plain_sum_is_exact<double>(squares)) return std::sqrt(squares);
    return detail::vector_norm(v, static_cast<std::size_t>(n_));
  }
  // Entries of a normal stream (draw.hpp), the same whoever draws which chunk.
  void normals(double* out, std::uint64_t seed, std::uint64_t stream) {
    const std::uint64_t state = Rng(seed, stream).state();
    each([&](std::int64_t, std::int64_t lo, std::int64_t len) {
      fill_normals(state, static_cast<std::uint64_t>(lo), static_cast<std::size_t>(len), 1.0,
                   out + lo);
    });
  }

 private:
  std::int64_t n_, count_;
  int nt_;
  std::vector<double> partial_;
};

// The Lanczos recurrence with full reorthogonalisation against every basis vector
// kept (classical Gram-Schmidt, a second pass when the first removed most of w:
// Daniel, Gragg, Kaufman and Stewart's criterion).
class LanczosBasis {
 public:
  LanczosBasis(std::int64_t n, int max_steps, const SymmetricProduct& a, int n_threads)
      : n_(n), max_steps_(max_steps), a_(a), nt_(n_threads), chunks_(n, n_threads),
        // Not filled: the basis takes memory only as its vectors are written.
        q_(new double[static_cast<std::size_t>(std::max(max_steps, 1)) * n]), w_(n),
        coefficients_(max_steps) {}

  // Starts from v (not necessarily normalised); false when v is zero.
  bool start(const double* v) {
    std::copy(v, v + n_, q_.get());
    return normalise(q_.get());
  }
  // Starts from a normal vector of the given stream.
  bool start_normal(std::uint64_t seed, std::uint64_t stream) {
    chunks_.normals(q_.get(), seed, stream);
    return normalise(q_.get());
  }

  int steps() const { return static_cast<int>(alpha_.size()); }
  const std::vector<double>& alpha() const { return alpha_; }
  // beta()[j] couples basis vectors j and j + 1; 0 where the space was restarted.
  const std::vector<double>& beta() const { return beta_; }
  const double* vector(int j) const { return q_.get() + static_cast<std::size_t>(j) * n_; }
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
    double* w = w_.data();
    a_(q, w);
    const double b = j > 0 ? beta_.back() : 0.0;
    const double* prev = j > 0 ? vector(j - 1) : q;
    // w -= b q_{j-1} and the partial dots with q_j, in one pass over each chunk; then
    // w -= alpha q_j with its squares. A non-finite product shows in alpha or the norm.
    double alpha = chunks_.sum([&](std::int64_t lo, std::int64_t len) {
      double s = 0.0;
      for (std::int64_t i = lo; i < lo + len; ++i) {
        w[i] -= b * prev[i];
        s += q[i] * w[i];
      }
      return s;
    });
    const double squares = chunks_.sum([&](std::int64_t lo, std::int64_t len) {
      double s = 0.0;
      for (std::int64_t i = lo; i < lo + len; ++i) {
        w[i] -= alpha * q[i];
        s += w[i] * w[i];
      }
      return s;
    });
    if (!std::isfinite(alpha) || !std::isfinite(squares)) {
      finite_ = false;
      alpha_.push_back(kNaN);
      residual_ = kNaN;
      return;
    }
    const double before = detail::plain_sum_is_exact<double>(squares) ? std::sqrt(squares)
                                                                      : chunks_.norm(w);
    alpha += reorthogonalise(j + 1, w, j, before, &residual_);
    alpha_.push_back(alpha);
  }

  // Appends the next basis vector: the residual when it is not negligible against the
  // operator's scale, else (the Krylov space closed) a fresh random vector orthogonal
  // to the basis, coupled by 0. False when no further direction exists.
  bool next(double scale, std::uint64_t seed, std::uint64_t stream) {
    const int j = steps();
    if (j >= max_steps_ || j >= n_) return false;
    double* out = q_.get() + static_cast<std::size_t>(j) * n_;
    const double tiny = 64.0 * std::numeric_limits<double>::epsilon() * std::max(scale, 1e-300);
    if (residual_ > tiny) {
      const double r = residual_;
      const double* w = w_.data();
      chunks_.each([&](std::int64_t, std::int64_t lo, std::int64_t len) {
        for (std::int64_t i = lo; i < lo + len; ++i) out[i] = w[i] / r;
      });
      beta_.push_back(r);
      return true;
    }
    chunks_.normals(out, seed, stream + static_cast<std::uint64_t>(j));
    reorthogonalise(j, out);
    beta_.push_back(0.0);
    return normalise(out);
  }

 private:
  // w -= Q^T (Q w) over the first `count` basis vectors, returning (Q w)[at] (0 when at
  // is out of range), chunk by chunk.
  double project_out(int count, double* w, int at) {
    partial_.assign(static_cast<std::size_t>(chunks_.count()) * count, 0.0);
    const int ld = static_cast<int>(n_);
    const double* q = q_.get();
    chunks_.each([&](std::int64_t c, std::int64_t lo, std::int64_t len) {
      blas::gemv(Trans::No, count, static_cast<int>(len), 1.0, q + lo, ld, w + lo, 0.0,
                 partial_.data() + c * count);
    });
    double* coefficient = coefficients_.data();
    std::fill(coefficient, coefficient + count, 0.0);
    for (std::int64_t c = 0; c < chunks_.count(); ++c)
      for (int r = 0; r < count; ++r) coefficient[r] += partial_[c * count + r];
    chunks_.each([&](std::int64_t, std::int64_t lo, std::int64_t len) {
      blas::gemv(Trans::Yes, count, static_cast<int>(len), -1.0, q + lo, ld, coefficient, 1.0,
                 w + lo);
    });
    return at >= 0 && at < count ? coefficient[at] : 0.0;
  }
  // Projects w off the basis, twice when the first pass removed most of it; returns the
  // total coefficient on vector `at`, and the norm of what is left in *left when asked.
  double reorthogonalise(int count, double* w, int at = -1, double before = -1.0,
                         double* left = nullptr) {
    if (before < 0.0) before = chunks_.norm(w);
    double coefficient = project_out(count, w, at);
    double after = chunks_.norm(w);
    if (after < 0.7071 * before) {
      coefficient += project_out(count, w, at);
      if (left) after = chunks_.norm(w);
    }
    if (left) *left = after;
    return coefficient;
  }
  bool normalise(double* v) {
    const double norm = chunks_.norm(v);
    if (!(norm > 0.0) || !std::isfinite(norm)) return false;
    chunks_.each([&](std::int64_t, std::int64_t lo, std::int64_t len) {
      for (std::int64_t i = lo; i < lo + len; ++i) v[i] /= norm;
    });
    return true;
  }

  std::int64_t n_;
  int max_steps_;
  const SymmetricProduct& a_;
  int nt_;
  Chunks chunks_;
  std::unique_ptr<double[]> q_;
  std::vector<double> w_, coefficients_, partial_;
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
  basis.start_normal(o.seed, kStartStream);

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
  // The terms' deviations from their mean, whose norm (the scaled one: exact however
  // large the terms) gives the sample standard deviation.
  std::vector<double> deviations;
  for (double t : terms) deviations.push_back(t - mean);
  const double count = static_cast<double>(terms.size());
  r.trace = exact_part + mean;
  r.standard_error = terms.size() >= 2
                         ? detail::vector_norm(deviations.data(), deviations.size()) /
                               std::sqrt((count - 1.0) * count)
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
