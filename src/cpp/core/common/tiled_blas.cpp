#include "common/tiled_blas.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <vector>

#include "common/reduce.hpp"
#include "pyjac/common/interrupt.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

// Rows of a GEMV per tile, and the least work (multiply-adds) worth a parallel region;
// neither depends on the thread count. The threshold is high on purpose: on a shared
// machine every fork-join can wait a scheduler tick for a descheduled thread, so regions
// must carry tens of microseconds of work (a 256 x 256 GEMV in power iteration stays
// serial).
constexpr int kGemvTile = 128;
constexpr double kParallelWork = 1 << 18;

struct TileGrid {
  int rows, cols;  // number of row and column tiles of C
};

// Depends on the shape only, never on the thread count: that is what makes the sums
// reproducible. About 1M multiply-adds per tile at least, columns at least 128 wide and
// rows at least 64 tall where the matrix allows, at most 16 tiles.
TileGrid gemm_grid(int m, int n, int k, double min_tile_macs) {
  const double macs = static_cast<double>(m) * n * k;
  const int wanted = static_cast<int>(std::clamp(macs / min_tile_macs, 1.0, 16.0));
  const int cols = std::max(1, std::min(wanted, n / 128));
  const int rows = std::max(1, std::min((wanted + cols - 1) / cols, m / 64));
  return {rows, cols};
}

// The tile of C at rows i0.. (mi) and columns j0.. (nj): rows i0.. of op(A), wherever they
// sit in memory, times b_tile, op(B)'s columns j0.. (rows ldb apart).
template <typename T>
void gemm_tile(Trans ta, Trans tb, int i0, int mi, int j0, int nj, int k, T alpha, const T* a,
               int lda, const T* b_tile, int ldb, T beta, T* c, int ldc) {
  const T* a_tile = ta == Trans::No ? a + std::size_t(i0) * lda : a + i0;
  blas::gemm(ta, tb, mi, nj, k, alpha, a_tile, lda, b_tile, ldb, beta,
             c + std::size_t(i0) * ldc + j0, ldc);
}

}  // namespace

template <typename T>
void tiled_gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda,
                const T* b, int ldb, T beta, T* c, int ldc, int nt, double min_tile_macs) {
  const TileGrid grid = gemm_grid(m, n, k, min_tile_macs);
  const int tiles = grid.rows * grid.cols;
  if (tiles == 1) {
    blas::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int tm = (m + grid.rows - 1) / grid.rows, tn = (n + grid.cols - 1) / grid.cols;
  auto tile = [&](int t) {
    const int i0 = (t / grid.cols) * tm, j0 = (t % grid.cols) * tn;
    const int mi = std::min(tm, m - i0), nj = std::min(tn, n - j0);
    if (mi <= 0 || nj <= 0) return;
    const T* b_tile = tb == Trans::No ? b + j0 : b + std::size_t(j0) * ldb;
    gemm_tile(ta, tb, i0, mi, j0, nj, k, alpha, a, lda, b_tile, ldb, beta, c, ldc);
  };
  // Not an if-clause: a region with a false one still costs a team start (see
  // parallel_for in reduce.hpp).
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int t = 0; t < tiles; ++t) tile(t);
  } else {
    for (int t = 0; t < tiles; ++t) tile(t);
  }
}

template <typename T>
void tiled_gemm_drawn_b(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda,
                        const std::function<void(int, int, T*)>& draw_b, T beta, T* c, int ldc,
                        int nt, double min_tile_macs) {
  const TileGrid grid = gemm_grid(m, n, k, min_tile_macs);
  const int tn = (n + grid.cols - 1) / grid.cols, tm = (m + grid.rows - 1) / grid.rows;
  // One buffer per thread, kept between calls while it is small (a fresh one would cost
  // its page faults on every layer); a large one goes when the call ends (release_large
  // on every thread of the team), so that no thread holds a wide layer's worth of memory
  // once the call returns.
  constexpr std::size_t kKeptBytes = std::size_t(4) << 20;
  auto buffer = []() -> std::vector<T>& {
    thread_local std::vector<T> tile_b;
    return tile_b;
  };
  auto drawn = [&](int j0, int nj) {
    std::vector<T>& tile_b = buffer();
    tile_b.resize(std::size_t(nj) * k);
    draw_b(j0, nj, tile_b.data());
    return tile_b.data();
  };
  auto release_large = [&] {
    std::vector<T>& tile_b = buffer();
    if (tile_b.capacity() * sizeof(T) > kKeptBytes) std::vector<T>().swap(tile_b);
  };
  auto tile = [&](int i, int j0, int nj, const T* b) {
    const int i0 = i * tm, mi = std::min(tm, m - i0);
    if (mi <= 0) return;
    gemm_tile(ta, tb, i0, mi, j0, nj, k, alpha, a, lda, b, tb == Trans::No ? nj : k, beta, c,
              ldc);
  };
  if (grid.cols == 1) {  // B drawn whole, here; its row tiles as tiled_gemm runs them
    check_interrupt();
    const T* b = drawn(0, n);
    parallel_for(grid.rows, nt, nt > 1 && grid.rows > 1, [&](int i) { tile(i, 0, n, b); });
    release_large();
    return;
  }
  std::exception_ptr error;  // a buffer that cannot grow must not escape the region
  TeamInterrupt interrupt;   // a wide layer's columns take long: Ctrl-C between them
  parallel_for(grid.cols, nt, nt > 1, [&](int j) {
    const int j0 = j * tn, nj = std::min(tn, n - j0);
    if (nj <= 0 || interrupt.requested()) return;
    try {
      const T* b = drawn(j0, nj);
      for (int i = 0; i < grid.rows; ++i) tile(i, j0, nj, b);
    } catch (...) {
#pragma omp critical(pyjac_tiled_gemm_drawn_error)
      if (!error) error = std::current_exception();
    }
  });
  parallel_for(nt, nt, nt > 1, [&](int) { release_large(); });  // one item per thread
  if (error) std::rethrow_exception(error);
  interrupt.rethrow();
}

template <typename T>
void tiled_gemv(Trans ta, int m, int n, T alpha, const T* a, int lda, const T* x, T beta, T* y,
                int nt) {
  const int extent = ta == Trans::No ? m : n;
  const int tiles = (extent + kGemvTile - 1) / kGemvTile;
  const bool parallel = tiles > 1 && double(m) * n >= kParallelWork;
  parallel_for(tiles, nt, parallel, [&](int t) {
    const int lo = t * kGemvTile, len = std::min(kGemvTile, extent - lo);
    if (ta == Trans::No)
      blas::gemv(ta, len, n, alpha, a + std::size_t(lo) * lda, lda, x, beta, y + lo);
    else
      blas::gemv(ta, m, len, alpha, a + lo, lda, x, beta, y + lo);
  });
}

template void tiled_gemm<float>(Trans, Trans, int, int, int, float, const float*, int,
                                const float*, int, float, float*, int, int, double);
template void tiled_gemm<double>(Trans, Trans, int, int, int, double, const double*, int,
                                 const double*, int, double, double*, int, int, double);
template void tiled_gemm_drawn_b<float>(Trans, Trans, int, int, int, float, const float*, int,
                                        const std::function<void(int, int, float*)>&, float,
                                        float*, int, int, double);
template void tiled_gemm_drawn_b<double>(Trans, Trans, int, int, int, double, const double*,
                                         int, const std::function<void(int, int, double*)>&,
                                         double, double*, int, int, double);
template void tiled_gemv<float>(Trans, int, int, float, const float*, int, const float*, float,
                                float*, int);
template void tiled_gemv<double>(Trans, int, int, double, const double*, int, const double*,
                                 double, double*, int);

}  // namespace pyjac::detail
