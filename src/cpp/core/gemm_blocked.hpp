// GEMM whose result does not depend on the thread count.
//
// OpenBLAS picks different kernels and partitions for different thread counts, so the
// same product can differ in the last bits between n_threads=1 and n_threads=2. Here
// the output is cut into fixed blocks (a function of the shape only), each computed by
// a single-threaded BLAS call; OpenMP spreads the blocks over the threads. Callers
// hold BlasThreadScope(1).
#pragma once

#include <algorithm>

#include "pyjac/blas.hpp"

namespace pyjac::detail {

// At most this many blocks of at least kGemmMinBlock: every block packs the whole of
// the other operand again, so fewer, larger blocks waste less.
inline constexpr int kGemmMaxBlocks = 4;
inline constexpr int kGemmMinBlock = 64;
// Below this many multiply-adds one call is cheaper than a parallel region.
inline constexpr double kGemmParallelWork = 1 << 18;

template <typename T>
void gemm_blocked(int n_threads, blas::Trans ta, blas::Trans tb, int m, int n, int k, T alpha,
                  const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  const bool split_n = n >= m;
  const int d = split_n ? n : m;
  const double work = static_cast<double>(m) * n * k;
  int block = std::max(kGemmMinBlock, (d + kGemmMaxBlocks - 1) / kGemmMaxBlocks);
  block = (block + 15) / 16 * 16;
  const int blocks = (work < kGemmParallelWork || d < 2 * kGemmMinBlock)
                         ? 1
                         : (d + block - 1) / block;
  if (blocks == 1) {
    blas::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const int nt = std::min(n_threads, blocks);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int i = 0; i < blocks; ++i) {
    const int j0 = i * block, len = std::min(block, d - j0);
    if (split_n) {
      const T* bb = tb == blas::Trans::Yes ? b + static_cast<std::size_t>(j0) * ldb : b + j0;
      blas::gemm(ta, tb, m, len, k, alpha, a, lda, bb, ldb, beta, c + j0, ldc);
    } else {
      const T* aa = ta == blas::Trans::Yes ? a + j0 : a + static_cast<std::size_t>(j0) * lda;
      blas::gemm(ta, tb, len, n, k, alpha, aa, lda, b, ldb, beta,
                 c + static_cast<std::size_t>(j0) * ldc, ldc);
    }
  }
}

}  // namespace pyjac::detail
