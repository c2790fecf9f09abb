#include "tiled_blas.hpp"

#include <algorithm>
#include <cstddef>

namespace pyjac::detail {
namespace {

using blas::Trans;

// Output entries per tile, and the least work (multiply-adds) worth a parallel
// region; neither depends on the thread count. The threshold is high on purpose:
// on a shared machine every fork-join can wait a scheduler tick for a descheduled
// thread, so regions must carry tens of microseconds of work (a 256 x 256 GEMV in
// power iteration stays serial).
constexpr int kGemmTile = 128;
constexpr int kGemvTile = 128;
constexpr double kParallelWork = 1 << 18;

}  // namespace

template <typename T>
void tiled_gemm(Trans ta, Trans tb, int m, int n, int k, T alpha, const T* a, int lda,
                const T* b, int ldb, T beta, T* c, int ldc, int nt) {
  const bool by_rows = m >= n;
  const int extent = by_rows ? m : n;
  const int tiles = (extent + kGemmTile - 1) / kGemmTile;
  const bool parallel = nt > 1 && tiles > 1 && double(m) * n * k >= kParallelWork;
#pragma omp parallel for num_threads(nt) if (parallel) schedule(static)
  for (int t = 0; t < tiles; ++t) {
    const int lo = t * kGemmTile, len = std::min(kGemmTile, extent - lo);
    if (by_rows) {
      // Rows lo.. of op(A): rows of A, or columns of A when transposed.
      const T* a_t = ta == Trans::No ? a + std::size_t(lo) * lda : a + lo;
      blas::gemm(ta, tb, len, n, k, alpha, a_t, lda, b, ldb, beta, c + std::size_t(lo) * ldc,
                 ldc);
    } else {
      // Columns lo.. of op(B): columns of B, or rows of B when transposed.
      const T* b_t = tb == Trans::No ? b + lo : b + std::size_t(lo) * ldb;
      blas::gemm(ta, tb, m, len, k, alpha, a, lda, b_t, ldb, beta, c + lo, ldc);
    }
  }
}

template <typename T>
void tiled_gemv(Trans ta, int m, int n, T alpha, const T* a, int lda, const T* x, T beta, T* y,
                int nt) {
  const int extent = ta == Trans::No ? m : n;
  const int tiles = (extent + kGemvTile - 1) / kGemvTile;
  const bool parallel = nt > 1 && tiles > 1 && double(m) * n >= kParallelWork;
#pragma omp parallel for num_threads(nt) if (parallel) schedule(static)
  for (int t = 0; t < tiles; ++t) {
    const int lo = t * kGemvTile, len = std::min(kGemvTile, extent - lo);
    if (ta == Trans::No)
      blas::gemv(ta, len, n, alpha, a + std::size_t(lo) * lda, lda, x, beta, y + lo);
    else
      blas::gemv(ta, m, len, alpha, a + lo, lda, x, beta, y + lo);
  }
}

template void tiled_gemm<float>(Trans, Trans, int, int, int, float, const float*, int,
                                const float*, int, float, float*, int, int);
template void tiled_gemm<double>(Trans, Trans, int, int, int, double, const double*, int,
                                 const double*, int, double, double*, int, int);
template void tiled_gemv<float>(Trans, int, int, float, const float*, int, const float*, float,
                                float*, int);
template void tiled_gemv<double>(Trans, int, int, double, const double*, int, const double*,
                                 double, double*, int);

}  // namespace pyjac::detail
