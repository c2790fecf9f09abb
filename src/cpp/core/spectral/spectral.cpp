// Power iteration for largest singular values, and spectral radii via LAPACK.
#include "pyjac/spectral/spectral.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>

#include "jacobian/linearize.hpp"
#include "pyjac/common/interrupt.hpp"
#include "common/reduce.hpp"
#include "jacobian/vector_pass.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"
#include "common/tiled_blas.hpp"

namespace pyjac {
namespace {

using blas::Trans;

void check_options(const PowerIterationOptions& o) {
  if (o.iters < 1) throw std::invalid_argument("iters: must be at least 1");
  if (!(o.tol > 0.0)) throw std::invalid_argument("tol: must be positive");
}

template <typename T>
double norm2(const T* v, int n) {
  double s = 0.0;
  for (int i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}

template <typename T>
void scale(T* v, int n, double factor) {
  for (int i = 0; i < n; ++i) v[i] = static_cast<T>(v[i] * factor);
}

}  // namespace

template <typename T>
PowerIterationResult power_iteration(int n_in, int n_out, const VectorApply<T>& forward,
                                     const VectorApply<T>& backward,
                                     const PowerIterationOptions& o, std::uint64_t stream) {
  check_options(o);
  if (n_in < 1 || n_out < 1) throw std::invalid_argument("power_iteration: empty operator");
  PowerIterationResult r;
  std::vector<T> v(n_in), w(n_in), y(n_out);
  Rng rng(o.seed, stream);
  for (T& e : v) e = static_cast<T>(rng.normal());
  scale(v.data(), n_in, 1.0 / norm2(v.data(), n_in));
  double prev = std::numeric_limits<double>::quiet_NaN(), prev_delta = prev;
  for (int it = 1; it <= o.iters; ++it) {
    check_interrupt();
    r.iterations = it;
    // Rescale by exact powers of two before taking norms: sums of squares of tiny or
    // huge entries would under/overflow though the vectors are representable.
    const double log_y = forward(v.data(), y.data());
    const auto ry = detail::rescale_pow2(y.data(), static_cast<std::size_t>(n_out), 1);
    const double log_f = log_y + ry.log_scale;
    const double ny = ry.norm;
    if (ny == 0.0) {  // J v = 0 for a random v: J = 0 (with probability one)
      r.log_value = -std::numeric_limits<double>::infinity();
      r.value = 0.0;
      r.converged = true;
      return r;
    }
    if (!std::isfinite(ny) || !std::isfinite(log_f)) {
      r.log_value = r.value = std::numeric_limits<double>::quiet_NaN();
      return r;
    }
    scale(y.data(), n_out, 1.0 / ny);
    const double log_w = backward(y.data(), w.data());
    const auto rw = detail::rescale_pow2(w.data(), static_cast<std::size_t>(n_in), 1);
    const double log_b = log_w + rw.log_scale;
    const double nw = rw.norm;
    if (!(nw > 0.0) || !std::isfinite(nw) || !std::isfinite(log_b)) {
      // u^T J v = ||J v|| > 0 forbids J^T u = 0: only rounding gets here.
      r.log_value = log_f + std::log(ny);
      r.value = std::exp(r.log_value);
      return r;
    }
    // ||J^T u|| >= ||J v||: the better of the two estimates of this iteration.
    const double est = log_b + std::log(nw);
    scale(w.data(), n_in, 1.0 / nw);
    v.swap(w);
    r.log_value = est;
    if (it >= 2) {
      const double delta = std::abs(est - prev);  // relative change (logs)
      bool done = delta == 0.0;
      if (!done && it >= 3 && delta <= o.tol && prev_delta > 0.0) {
        const double rho = delta / prev_delta;
        done = rho < 1.0 && delta * rho / (1.0 - rho) <= o.tol;
      }
      prev_delta = delta;
      if (done) {
        r.converged = true;
        break;
      }
    }
    prev = est;
  }
  r.value = std::exp(r.log_value);
  return r;
}

template <typename T>
PowerIterationResult matrix_spectral_norm(const T* a, int rows, int cols,
                                          const PowerIterationOptions& o) {
  check_options(o);
  if (rows < 1 || cols < 1) throw std::invalid_argument("matrix: must not be empty");
  // Single-threaded BLAS on fixed tiles: the same numbers for any thread count.
  const int nt = resolve_threads(o.n_threads);
  BlasThreadScope blas_scope(1);
  // Entries far from 1 make A v overflow (or lose its digits to underflow) though
  // sigma_max itself is representable: iterate on A 2^-e, an exact scaling, and add
  // e log 2 back.
  const std::size_t count = static_cast<std::size_t>(rows) * cols;
  const double biggest = detail::max_abs(a, count);
  int e = 0;
  std::vector<T> scaled;
  if (biggest > 0.0 && std::isfinite(biggest)) {
    std::frexp(biggest, &e);
    constexpr int kSafe = std::numeric_limits<T>::max_exponent / 4;
    if (e > kSafe || e < -kSafe) {
      scaled.resize(count);
      detail::scaled_copy(a, count, e, scaled.data());
      a = scaled.data();
    } else {
      e = 0;
    }
  }
  const VectorApply<T> fwd = [&](const T* in, T* out) {
    detail::tiled_gemv(Trans::No, rows, cols, T(1), a, cols, in, T(0), out, nt);
    return 0.0;
  };
  const VectorApply<T> bwd = [&](const T* in, T* out) {
    detail::tiled_gemv(Trans::Yes, rows, cols, T(1), a, cols, in, T(0), out, nt);
    return 0.0;
  };
  PowerIterationResult r = power_iteration<T>(cols, rows, fwd, bwd, o);
  if (e != 0 && r.value > 0.0) {
    r.log_value += e * 0.69314718055994530942;
    r.value = std::exp(r.log_value);
  }
  return r;
}

template <typename T>
std::vector<PowerIterationResult> chain_spectral_norm(const ChainView<T>& c, const T* x,
                                                      bool per_layer,
                                                      const PowerIterationOptions& o,
                                                      int* first_nonfinite_layer) {
  check_options(o);
  const int nt = resolve_threads(o.n_threads);
  const int depth = c.depth();
  detail::Linearization<T> lin;
  {
    BlasThreadScope blas_scope(1);
    lin = detail::linearize(c, x, depth, nt);
  }
  if (first_nonfinite_layer) *first_nonfinite_layer = lin.first_nonfinite_layer;
  if (!per_layer) {
    BlasThreadScope blas_scope(1);  // OpenMP over fixed tiles: thread-count independent
    // The fused vector pass reads every layer's weights from inside one parallel
    // region; a chain that draws its layers goes layer by layer below instead.
    if (c.norm == Norm::None && !c.source) {
      const VectorApply<T> fwd = [&](const T* in, T* out) {
        return detail::apply_chain_to_vector(lin, false, in, out, nt);
      };
      const VectorApply<T> bwd = [&](const T* in, T* out) {
        return detail::apply_chain_to_vector(lin, true, in, out, nt);
      };
      return {power_iteration<T>(c.widths[0], c.widths[depth], fwd, bwd, o)};
    }
    // LayerNorm: layer by layer (its Jacobian needs the whole vector before the GEMV).
    // Rescale after every layer: the vector may cross the float range on the way.
    int widest = 0;
    for (int w : c.widths) widest = std::max(widest, w);
    std::vector<T> buf_a(widest), buf_b(widest);
    const VectorApply<T> fwd = [&](const T* in, T* out) {
      double log_scale = 0.0;
      const T* src = in;
      for (int l = 0; l < depth; ++l) {
        T* dst = l == depth - 1 ? out : (l % 2 == 0 ? buf_a.data() : buf_b.data());
        detail::apply_layer(lin, l, src, 1, dst, nt);
        log_scale += detail::rescale_pow2(dst, c.widths[l + 1], 1).log_scale;
        src = dst;
      }
      return log_scale;
    };
    const VectorApply<T> bwd = [&](const T* in, T* out) {
      double log_scale = 0.0;
      const T* src = in;
      for (int l = depth - 1; l >= 0; --l) {
        T* dst = l == 0 ? out : (l % 2 == 0 ? buf_a.data() : buf_b.data());
        detail::apply_layer_transpose(lin, l, src, 1, dst, nt);
        log_scale += detail::rescale_pow2(dst, c.widths[l], 1).log_scale;
        src = dst;
      }
      return log_scale;
    };
    return {power_iteration<T>(c.widths[0], c.widths[depth], fwd, bwd, o)};
  }
  std::vector<PowerIterationResult> results(depth);
  if (c.source) {
    // One layer drawn at a time, its power iteration run with every thread, then the next.
    BlasThreadScope blas_scope(1);
    for (int l = 0; l < depth; ++l) {
      check_interrupt();
      const VectorApply<T> fwd = [&lin, l, nt](const T* in, T* out) {
        detail::apply_layer(lin, l, in, 1, out, nt);
        return 0.0;
      };
      const VectorApply<T> bwd = [&lin, l, nt](const T* in, T* out) {
        detail::apply_layer_transpose(lin, l, in, 1, out, nt);
        return 0.0;
      };
      results[l] = power_iteration<T>(c.widths[l], c.widths[l + 1], fwd, bwd, o,
                                      static_cast<std::uint64_t>(l) + 1);
    }
    return results;
  }
  // Layers are independent: OpenMP over layers, one BLAS thread each.
  std::exception_ptr error;
  BlasThreadScope blas_scope(1);
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (int l = 0; l < depth; ++l) {
    try {
      const VectorApply<T> fwd = [&lin, l](const T* in, T* out) {
        detail::apply_layer(lin, l, in, 1, out, 1);
        return 0.0;
      };
      const VectorApply<T> bwd = [&lin, l](const T* in, T* out) {
        detail::apply_layer_transpose(lin, l, in, 1, out, 1);
        return 0.0;
      };
      results[l] = power_iteration<T>(c.widths[l], c.widths[l + 1], fwd, bwd, o,
                                      static_cast<std::uint64_t>(l) + 1);
    } catch (...) {
#pragma omp critical(pyjac_spectral_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return results;
}

double spectral_radius(const double* a, int n) {
  if (n < 1) throw std::invalid_argument("matrix: must not be empty");
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  std::vector<double> copy(a, a + nn), wr(n), wi(n);
  for (double v : copy)
    if (!std::isfinite(v)) throw std::invalid_argument("matrix: contains NaN or Inf");
  BlasThreadScope blas_scope(1);  // the same numbers whatever the BLAS thread setting
  const int info = blas::eigenvalues(n, copy.data(), n, wr.data(), wi.data());
  if (info != 0)
    throw std::runtime_error("spectral_radius: LAPACK dgeev did not converge (info " +
                             std::to_string(info) + ")");
  double rho = 0.0;
  for (int i = 0; i < n; ++i) rho = std::max(rho, std::hypot(wr[i], wi[i]));
  return rho;
}

#define PYJAC_INSTANTIATE(T)                                                                   \
  template PowerIterationResult power_iteration<T>(int, int, const VectorApply<T>&,            \
                                                   const VectorApply<T>&,                      \
                                                   const PowerIterationOptions&, std::uint64_t); \
  template PowerIterationResult matrix_spectral_norm<T>(const T*, int, int,                    \
                                                        const PowerIterationOptions&);         \
  template std::vector<PowerIterationResult> chain_spectral_norm<T>(                           \
      const ChainView<T>&, const T*, bool, const PowerIterationOptions&, int*);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac
