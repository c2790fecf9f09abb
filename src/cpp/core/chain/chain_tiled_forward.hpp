// The forward pass of chains without norm layers, tile at a time (see chain_tiled.cpp):
// one OpenMP region, one barrier per layer; each tile of u = W h + b is one
// single-threaded GEMM that the same thread then activates and measures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/layer_grid.hpp"
#include "pyjac/chain/chain.hpp"

namespace pyjac::detail {

// What the forward pass measured in one layer's output (batch x n), tile by tile.
struct ForwardParts {
  LayerGrid grid;
  std::vector<double> derivative_sum;   // per tile
  std::vector<std::int64_t> saturated;  // per tile
  std::vector<unsigned char> alive;     // per row tile and unit: phi' was non-zero
  std::vector<double> row_sq;           // per column tile and example: ||h[i, tile]||^2
  void reset(const LayerGrid& g, int batch) {
    grid = g;
    derivative_sum.assign(g.count(), 0.0);
    saturated.assign(g.count(), 0);
    alive.assign(static_cast<std::size_t>(g.rows) * g.n, 0);
    row_sq.assign(static_cast<std::size_t>(g.cols) * batch, 0.0);
  }
  // ||h[i]||^2 for one example, summed over the column tiles in order.
  double example_sq(int i, int batch) const {
    double s = 0.0;
    for (int c = 0; c < grid.cols; ++c) s += row_sq[static_cast<std::size_t>(c) * batch + i];
    return s;
  }
};

void reset_forward_parts(const std::vector<int>& widths, int batch,
                         std::vector<ForwardParts>& parts);

// Share `part` of `parts` of a layer's weights, prefetched towards this core's caches
// while the current layer computes: thin layers are otherwise bound by the latency of
// streaming W from memory in the next GEMM's packing.
template <typename T>
void prefetch_weights(const ChainView<T>& c, int layer, int part, int parts) {
  const std::size_t bytes =
      sizeof(T) * static_cast<std::size_t>(c.widths[layer]) * c.widths[layer + 1];
  if (bytes > (std::size_t(1) << 20)) return;  // big layers are compute-bound
  const char* w = reinterpret_cast<const char*>(c.weights[layer]);
  const std::size_t lo = bytes * part / parts, hi = bytes * (part + 1) / parts;
  for (std::size_t off = lo & ~std::size_t(63); off < hi; off += 64)
    __builtin_prefetch(w + off, 0, 2);
}

// Runs the forward pass; layer l reads in[l] and writes pre[l] (u) and out[l] (h);
// `scratch` holds n_threads rows of `widest` entries.
template <typename T>
void forward_region(const ChainView<T>& c, int batch, const std::vector<const T*>& in,
                    const std::vector<T*>& pre, const std::vector<T*>& out,
                    std::vector<ForwardParts>& parts, T* scratch, int widest, int nt);

}  // namespace pyjac::detail
