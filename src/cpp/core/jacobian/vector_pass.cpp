// One vector through every layer Jacobian of a linearised chain (J v, or J^T u in
// reverse): the inner loop of matrix-free power iteration. Each layer is one GEMV,
// memory-bound on reading W_l, so the pass runs in one OpenMP region with one barrier
// per layer and every thread streams its own fixed block of rows (or columns) of W_l:
// two cores read about twice what one does. The power-of-two rescaling that keeps the
// vector in range is deferred to the next layer's GEMV (as its alpha, exact), so that
// it costs no second barrier.
#include "jacobian/vector_pass.hpp"

#include <algorithm>
#include <cmath>
#include <omp.h>
#include <vector>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

// Entries of the layer's output per tile: fixed, so results do not depend on threads.
constexpr int kTile = 64;

// The exponent that brings the largest of the tiles' maxima into [0.5, 1); 0 when the
// vector is zero or not finite (left as it is, as rescale_pow2 does).
int pass_exponent(const double* tile_max, int tiles) {
  double m = 0.0;
  for (int t = 0; t < tiles; ++t)
    if (!(tile_max[t] <= m)) m = tile_max[t];
  if (!std::isfinite(m) || m == 0.0) return 0;
  int e = 0;
  std::frexp(m, &e);
  return e;
}

// Whether src * 2^-e may be left to the GEMV's alpha. BLAS forms W src before it
// multiplies by alpha, so that product must stay in range: a layer that moved the vector
// by more than 2^30 (float) or 2^250 (double) has weights of that size, and W src would
// over- or underflow (weights of 1e300 made the end-to-end power iteration NaN).
template <typename T>
bool alpha_safe(int e) {
  return std::abs(e) < (sizeof(T) == sizeof(float) ? 30 : 250);
}

}  // namespace

template <typename T>
double apply_chain_to_vector(const Linearization<T>& lin, bool transpose, const T* in, T* out,
                             int n_threads) {
  const ChainView<T>& c = *lin.chain;
  const int L = lin.layers;
  if (L == 0) {
    std::copy(in, in + c.widths[0], out);
    return 0.0;
  }
  int widest = 0;
  for (int l = 0; l <= L; ++l) widest = std::max(widest, c.widths[l]);
  const int max_tiles = (widest + kTile - 1) / kTile;
  // Two buffers alternate between layers (a barrier separates writing and reading);
  // per-layer tile maxima; per-thread copies of d * u for the transposed GEMV.
  std::vector<T> buf[2] = {std::vector<T>(widest), std::vector<T>(widest)};
  std::vector<double> tile_max(static_cast<std::size_t>(L) * max_tiles, 0.0);
  std::vector<T> scaled_in(transpose ? static_cast<std::size_t>(n_threads) * widest : 0);

  TeamInterrupt interrupt;
#pragma omp parallel num_threads(n_threads)
  {
    T* private_g = transpose ? scaled_in.data() + static_cast<std::size_t>(omp_get_thread_num()) * widest
                             : nullptr;
    const T* src = in;
    int e_src = 0;  // src is to be read as src * 2^-e_src
    for (int step = 0; step < L; ++step) {
      if (interrupt.stop_at(step)) break;  // the whole team, at the same layer
      const int l = transpose ? L - 1 - step : step;
      const int n_in = c.widths[l], n_out = c.widths[l + 1];
      const int n_src = transpose ? n_out : n_in, n_dst = transpose ? n_in : n_out;
      T* dst = step == L - 1 ? out : buf[step % 2].data();
      const int tiles = (n_dst + kTile - 1) / kTile;
      double* maxima = tile_max.data() + static_cast<std::size_t>(step) * max_tiles;
      const T* d = lin.d[l].data();
      if (!alpha_safe<T>(e_src)) {
        // Rare (a layer moved the vector by more than 2^30 or 2^250): scale src in place
        // first, which needs a barrier of its own before anyone reads it.
#pragma omp single
        scale_pow2(const_cast<T*>(src), n_src, e_src);
        e_src = 0;
      }
      const T alpha = static_cast<T>(std::ldexp(1.0, -e_src));
      if (transpose) {
        for (int i = 0; i < n_out; ++i) private_g[i] = d[i] * src[i];
      }
#pragma omp for schedule(static)
      for (int t = 0; t < tiles; ++t) {
        const int r0 = t * kTile, r1 = std::min(n_dst, r0 + kTile);
        if (transpose) {
          blas::gemv(Trans::Yes, n_out, r1 - r0, alpha, c.weights[l] + r0, n_in, private_g, T(0),
                     dst + r0);
        } else {
          blas::gemv(Trans::No, r1 - r0, n_in, alpha, c.weights[l] + static_cast<std::size_t>(r0) * n_in,
                     n_in, src, T(0), dst + r0);
          for (int i = r0; i < r1; ++i) dst[i] *= d[i];  // d carries residual_scale
        }
        if (c.residual_at(l))
          for (int i = r0; i < r1; ++i) dst[i] += alpha * src[i];
        maxima[t] = max_abs(dst + r0, r1 - r0);
      }
      // Every thread derives the same exponent from the same maxima.
      e_src = pass_exponent(maxima, tiles);
      src = dst;
    }
  }
  interrupt.rethrow();
  // The per-layer exponents again, serially, for the log-scale; the last one is applied
  // to the output here.
  double log2_scale = 0.0;
  int e_last = 0;
  for (int step = 0; step < L; ++step) {
    const int l = transpose ? L - 1 - step : step;
    const int n_dst = transpose ? c.widths[l] : c.widths[l + 1];
    e_last = pass_exponent(tile_max.data() + static_cast<std::size_t>(step) * max_tiles,
                           (n_dst + kTile - 1) / kTile);
    log2_scale += e_last;
  }
  if (e_last != 0) scale_pow2(out, transpose ? c.widths[0] : c.widths[L], e_last);
  return log2_scale * 0.69314718055994530942;
}

template double apply_chain_to_vector<float>(const Linearization<float>&, bool, const float*,
                                             float*, int);
template double apply_chain_to_vector<double>(const Linearization<double>&, bool,
                                              const double*, double*, int);

}  // namespace pyjac::detail
