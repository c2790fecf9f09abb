// GEMM whose result does not depend on the thread count.
//
// OpenBLAS picks different kernels and partitions for different thread counts, so the
// same product can differ in the last bits between n_threads=1 and n_threads=2. Here
// the output is cut into fixed blocks (a function of the shape only), each computed by
// a single-threaded BLAS call; OpenMP spreads the blocks over the threads. Callers
// hold BlasThreadScope(1).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

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

namespace pyjac::detail {

// C (m x n) = A^T B for A (k x m) and B (k x n) with k much longer than m and n: the
// weight gradient summed over every step and example. Cutting C into blocks would
// pack all of A or B once per block; instead k is cut into fixed chunks (a function of
// k only), each chunk's product is formed with single-threaded BLAS in parallel, and
// the partial products are added in chunk order, so the bits do not depend on the
// thread count.
template <typename T>
void gemm_tn_ksplit(int n_threads, int m, int n, int k, const T* a, int lda, const T* b, int ldb,
                    T* c, int ldc) {
  constexpr int kMinChunk = 4096, kMaxChunks = 16;
  int chunk = std::max(kMinChunk, (k + kMaxChunks - 1) / kMaxChunks);
  const int chunks = (k + chunk - 1) / chunk;
  if (chunks <= 1) {
    gemm_blocked(n_threads, blas::Trans::Yes, blas::Trans::No, m, n, k, T(1), a, lda, b, ldb,
                 T(0), c, ldc);
    return;
  }
  const std::size_t mn = static_cast<std::size_t>(m) * n;
  std::vector<T> partial(mn * chunks);
#pragma omp parallel for num_threads(std::min(n_threads, chunks)) schedule(static)
  for (int i = 0; i < chunks; ++i) {
    const int k0 = i * chunk, len = std::min(chunk, k - k0);
    blas::gemm(blas::Trans::Yes, blas::Trans::No, m, n, len, T(1),
               a + static_cast<std::size_t>(k0) * lda, lda, b + static_cast<std::size_t>(k0) * ldb,
               ldb, T(0), partial.data() + i * mn, n);
  }
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int r = 0; r < m; ++r) {
    T* cr = c + static_cast<std::size_t>(r) * ldc;
    const T* p0 = partial.data() + static_cast<std::size_t>(r) * n;
    for (int j = 0; j < n; ++j) cr[j] = p0[j];
    for (int i = 1; i < chunks; ++i) {
      const T* pi = p0 + i * mn;
      for (int j = 0; j < n; ++j) cr[j] += pi[j];
    }
  }
}

}  // namespace pyjac::detail
