// A fixed split of one layer's (m x n) output, with inner dimension k, into tiles that
// OpenMP shares out inside one parallel region per pass. It depends on the shape
// alone, never on the thread count: every entry and every partial sum is then computed
// by the same single-threaded BLAS call and loop whatever n_threads is.
#pragma once

#include <algorithm>
#include <omp.h>

namespace pyjac::detail {

struct Tile {
  int i0, i1, j0, j1;         // rows [i0, i1) and columns [j0, j1)
  int row_tile, col_tile;
  int rows() const { return i1 - i0; }
  int cols() const { return j1 - j0; }
};

struct LayerGrid {
  int m = 1, n = 1;
  int rows = 1, cols = 1;  // number of row and column tiles
  int tm = 1, tn = 1;      // their extent
  int count() const { return rows * cols; }
  Tile at(int t) const {
    const int r = t / cols, c = t % cols;
    return {r * tm, std::min(m, (r + 1) * tm), c * tn, std::min(n, (c + 1) * tn), r, c};
  }
};

// At most two tiles per core of the machine (4 to 16): every tile packs its own panels of
// both operands, which costs a quarter of the multiply-adds of a 128 x 128 tile, so big
// layers want as few tiles as keep every core busy. The machine's core count (not the
// call's thread budget) keeps the results the same at every n_threads.
inline int max_layer_tiles() {
  static const int cap = std::clamp(2 * omp_get_num_procs(), 4, 16);
  return cap;
}

// About 1M multiply-adds per tile, at most max_layer_tiles(), columns (which share the packing of
// the input rows) before rows. Small layers are still split in two when they carry 32k
// multiply-adds: a barrier inside a running team costs far less than a GEMM of that size.
// Where the operand the tiles share (n x k, the weights) is at most kSmallShared entries
// (32 KB of float32, an L1's worth), the split is by rows of at least 8: packing so small
// a matrix once per tile is cheap, while column tiles make every GEMM read the whole
// input, half of it just written by another core (a 1000-layer chain of width 64 on 16
// examples ran 10% faster, and up to 20% when the machine was loaded, in two row tiles).
inline constexpr double kSmallShared = 8192;

inline LayerGrid layer_grid(int m, int n, int k) {
  const double macs = static_cast<double>(m) * n * k;
  int wanted = static_cast<int>(std::clamp(macs / (1 << 20), 1.0, double(max_layer_tiles())));
  if (macs >= (1 << 15)) wanted = std::max(wanted, 2);
  int cols = std::max(1, std::min(wanted, n / 128));
  if (cols == 1) cols = std::max(1, std::min(wanted, n / 32));
  int rows = std::max(1, std::min((wanted + cols - 1) / cols, m / 64));
  if (static_cast<double>(n) * k <= kSmallShared && m >= 16) {
    cols = 1;
    rows = std::min(wanted, m / 8);
  }
  LayerGrid g;
  g.m = m;
  g.n = n;
  // Column tiles a multiple of 16 wide, so every tile starts on a 64-byte boundary when
  // the row does.
  g.tn = (n + cols - 1) / cols;
  if (cols > 1) g.tn = std::min(n, (g.tn + 15) / 16 * 16);
  g.cols = (n + g.tn - 1) / g.tn;
  g.tm = (m + rows - 1) / rows;
  g.rows = (m + g.tm - 1) / g.tm;
  return g;
}

}  // namespace pyjac::detail
