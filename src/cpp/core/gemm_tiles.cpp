#include <algorithm>
#include <cstddef>

#include "pyjac/blas.hpp"
#include "pyjac/threads.hpp"

namespace pyjac::blas {
namespace {

struct TileGrid {
  int rows, cols;  // number of row and column tiles
};

// Depends on the shape only, never on the thread count: that is what makes the sums
// reproducible. About 1M multiply-adds per tile at least, columns at least 128 wide and
// rows at least 64 tall where the matrix allows, at most 16 tiles.
TileGrid tile_grid(int m, int n, int k) {
  const double macs = static_cast<double>(m) * n * k;
  const int wanted = static_cast<int>(std::clamp(macs / (1 << 20), 1.0, 16.0));
  const int cols = std::max(1, std::min(wanted, n / 128));
  const int rows = std::max(1, std::min((wanted + cols - 1) / cols, m / 64));
  return {rows, cols};
}

template <typename T>
void tiled(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
           int ldb, T beta, T* c, int ldc, int n_threads) {
  const TileGrid grid = tile_grid(m, n, k);
  const int tiles = grid.rows * grid.cols;
  BlasThreadScope single(1);
  if (tiles == 1) {
    gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int tm = (m + grid.rows - 1) / grid.rows, tn = (n + grid.cols - 1) / grid.cols;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int t = 0; t < tiles; ++t) {
    const int i0 = (t / grid.cols) * tm, j0 = (t % grid.cols) * tn;
    const int mi = std::min(tm, m - i0), nj = std::min(tn, n - j0);
    if (mi <= 0 || nj <= 0) continue;
    // Rows i0.. of op(A) and columns j0.. of op(B), wherever they sit in memory.
    const T* a_tile = ta == Trans::No ? a + static_cast<std::size_t>(i0) * lda : a + i0;
    const T* b_tile = tb == Trans::No ? b + j0 : b + static_cast<std::size_t>(j0) * ldb;
    gemm(ta, tb, mi, nj, k, alpha, a_tile, lda, b_tile, ldb, beta,
         c + static_cast<std::size_t>(i0) * ldc + j0, ldc);
  }
}

}  // namespace

void gemm_reproducible(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a,
                       int lda, const float* b, int ldb, float beta, float* c, int ldc,
                       int n_threads) {
  tiled(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads);
}
void gemm_reproducible(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a,
                       int lda, const double* b, int ldb, double beta, double* c, int ldc,
                       int n_threads) {
  tiled(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, n_threads);
}

}  // namespace pyjac::blas
