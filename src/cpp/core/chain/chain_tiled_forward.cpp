// Forward pass of chains without norm layers, tile at a time (chain_tiled_forward.hpp).
#include "chain/chain_tiled_forward.hpp"

#include <cstring>
#include <omp.h>

#include "chain/chain_common.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/threads.hpp"
#include "common/reduce.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

template <Activation A, bool kResidual, typename T>
void activate_tile(const T* u, T* h, const T* h_in, std::size_t ld, const Tile& tile, T scale,
                   T sat_level, T* d, unsigned char* alive, double* row_sq, double& dsum,
                   std::int64_t& saturated) {
  const int n = tile.cols();
  for (int i = tile.i0; i < tile.i1; ++i) {
    const std::size_t off = static_cast<std::size_t>(i) * ld + tile.j0;
    double row_dsum = 0.0;
    const T* hin = kResidual ? h_in + off : nullptr;
    saturated += activate_row<A, kResidual>(u + off, h + off, hin, n, scale, sat_level, d, alive,
                                            row_dsum, row_sq[i]);
    dsum += row_dsum;
  }
}

// u = W h + b over one tile, then h = phi(u) (or h_in + s phi(u)) and its statistics.
template <typename T>
void forward_tile(const ChainView<T>& c, int l, int batch, int t, const T* h_in, T* u, T* h_out,
                  ForwardParts& p, T* d) {
  const Tile tile = p.grid.at(t);
  const int n_in = c.widths[l], n_out = c.widths[l + 1];
  for (int i = tile.i0; i < tile.i1; ++i)
    std::memcpy(u + static_cast<std::size_t>(i) * n_out + tile.j0, c.biases[l] + tile.j0,
                sizeof(T) * tile.cols());
  blas::gemm(Trans::No, Trans::Yes, tile.rows(), tile.cols(), n_in, T(1),
             h_in + static_cast<std::size_t>(tile.i0) * n_in, n_in,
             c.weights[l] + static_cast<std::size_t>(tile.j0) * n_in, n_in, T(1),
             u + static_cast<std::size_t>(tile.i0) * n_out + tile.j0, n_out);
  const Activation act = c.activations[l];
  const T sat_level = static_cast<T>(kSaturationFraction * max_derivative(act));
  const T scale = static_cast<T>(c.residual_scale);
  unsigned char* alive = p.alive.data() + static_cast<std::size_t>(tile.row_tile) * n_out + tile.j0;
  double* row_sq = p.row_sq.data() + static_cast<std::size_t>(tile.col_tile) * batch;
  double dsum = 0.0;
  std::int64_t sat = 0;
  dispatch_activation(act, [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    if (c.residual_at(l))
      activate_tile<A, true>(u, h_out, h_in, n_out, tile, scale, sat_level, d, alive, row_sq,
                             dsum, sat);
    else
      activate_tile<A, false>(u, h_out, h_in, n_out, tile, scale, sat_level, d, alive, row_sq,
                              dsum, sat);
  });
  p.derivative_sum[t] = dsum;
  p.saturated[t] = is_saturating(act) ? sat : 0;
}

}  // namespace

template <typename T>
void forward_region(const ChainView<T>& c, int batch, const std::vector<const T*>& in,
                    const std::vector<T*>& pre, const std::vector<T*>& out,
                    std::vector<ForwardParts>& parts, T* scratch, int widest, int nt) {
  const int L = c.depth();
  TeamInterrupt interrupt;
  run_team(nt, true, [&] {
    T* d = scratch + static_cast<std::size_t>(omp_get_thread_num()) * widest;
    for (int l = 0; l < L; ++l) {
      if (interrupt.stop_at(l)) break;  // the whole team, at the same layer
      const int tiles = parts[l].grid.count();
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < tiles; ++t) {
        if (l + 1 < L) prefetch_weights(c, l + 1, t, tiles);
        forward_tile(c, l, batch, t, in[l], pre[l], out[l], parts[l], d);
      }
    }
  });
  interrupt.rethrow();
}

void reset_forward_parts(const std::vector<int>& widths, int batch,
                         std::vector<ForwardParts>& parts) {
  parts.resize(widths.size() - 1);
  for (std::size_t l = 0; l + 1 < widths.size(); ++l)
    parts[l].reset(layer_grid(batch, widths[l + 1], widths[l]), batch);
}


template <typename T>
void forward_tiled(const ChainView<T>& c, const T* x, int batch, T* out, int nt) {
  const int L = c.depth();
  int widest = 0;
  for (int w : c.widths) widest = std::max(widest, w);
  const std::size_t slab = static_cast<std::size_t>(batch) * widest;
  // Two slabs alternate as input and output (a barrier separates the layers); a third
  // holds pre-activations where the output cannot overwrite them in place.
  Buffer<T> a = make_buffer<T>(slab), b = make_buffer<T>(slab), u = make_buffer<T>(slab);
  std::vector<const T*> in(L);
  std::vector<T*> pre(L), h_out(L);
  for (int l = 0; l < L; ++l) {
    h_out[l] = l % 2 == 0 ? a.get() : b.get();
    pre[l] = needs_preactivations(c, l) ? u.get() : h_out[l];
    in[l] = l == 0 ? x : h_out[l - 1];
  }
  std::vector<ForwardParts> parts;
  reset_forward_parts(c.widths, batch, parts);
  std::vector<T> thread_rows(static_cast<std::size_t>(nt) * widest);
  {
    BlasThreadScope single(1);
    forward_region(c, batch, in, pre, h_out, parts, thread_rows.data(), widest, nt);
  }
  std::memcpy(out, h_out[L - 1], sizeof(T) * static_cast<std::size_t>(batch) * c.widths.back());
}

template void forward_region<float>(const ChainView<float>&, int, const std::vector<const float*>&,
                                    const std::vector<float*>&, const std::vector<float*>&,
                                    std::vector<ForwardParts>&, float*, int, int);
template void forward_region<double>(const ChainView<double>&, int,
                                     const std::vector<const double*>&,
                                     const std::vector<double*>&, const std::vector<double*>&,
                                     std::vector<ForwardParts>&, double*, int, int);
template void forward_tiled<float>(const ChainView<float>&, const float*, int, float*, int);
template void forward_tiled<double>(const ChainView<double>&, const double*, int, double*,
                                    int);

}  // namespace pyjac::detail
