// The weight gradient summed over every step and example: C = A^T B with a very long k.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include <omp.h>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "common/tiled_blas.hpp"

namespace pyjac::detail {

// C (m x n) = A^T B for A (k x m) and B (k x n) with k much longer than m and n: the
// weight gradient summed over every step and example. Cutting C into blocks would
// pack all of A or B once per block; instead k is cut into fixed chunks, each chunk's
// product is formed with single-threaded BLAS in parallel, and the partial products are
// added in chunk order. The chunks are a function of k and the machine's core count,
// never of the call's thread budget, so the bits do not depend on it: about 4096 rows
// each, equal, and as many as a multiple of the cores, so that none waits for a last,
// longer one (k = 6400 on 2 cores: two of 3200, not 4096 and 2304).
template <typename T>
void gemm_tn_ksplit(int n_threads, int m, int n, int k, const T* a, int lda, const T* b, int ldb,
                    T* c, int ldc) {
  constexpr int kTargetChunk = 4096, kMaxChunks = 16;
  const int cores = std::max(1, omp_get_num_procs());
  const int rounds = (k + cores * kTargetChunk - 1) / (cores * kTargetChunk);
  const int wanted = k < 2 * kTargetChunk ? 1 : std::min(kMaxChunks, rounds * cores);
  const int chunk = (k + wanted - 1) / wanted;
  const int chunks = (k + chunk - 1) / chunk;
  if (chunks <= 1) {
    tiled_gemm(blas::Trans::Yes, blas::Trans::No, m, n, k, T(1), a, lda, b, ldb, T(0), c, ldc,
               n_threads);
    return;
  }
  const std::size_t mn = static_cast<std::size_t>(m) * n;
  std::vector<T> partial(mn * chunks);
  TeamInterrupt interrupt;  // a long k takes seconds: stop between chunks
#pragma omp parallel for num_threads(std::min(n_threads, chunks)) schedule(static)
  for (int i = 0; i < chunks; ++i) {
    if (interrupt.requested()) continue;
    const int k0 = i * chunk, len = std::min(chunk, k - k0);
    blas::gemm(blas::Trans::Yes, blas::Trans::No, m, n, len, T(1),
               a + static_cast<std::size_t>(k0) * lda, lda, b + static_cast<std::size_t>(k0) * ldb,
               ldb, T(0), partial.data() + i * mn, n);
  }
  interrupt.rethrow();
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
