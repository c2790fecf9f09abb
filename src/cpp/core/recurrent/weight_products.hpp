// The two products with the recurrent weight W (G*n x n) that every time step needs,
// cut into blocks of units so that a thread can own a block across all gates:
//   forward   C[:, g*n + units] = beta C + A W[g*n + units, :]^T   (A: rows x n)
//   backward  C[:, units] = beta C + A W[k0:k1, units]             (A: rows x (k1-k0))
// Each block of units is one single-threaded BLAS call, computed by one thread, so the
// result does not depend on the thread count. Blocks are sized from the width and the
// machine's core count (never the call's thread budget): about one block per core, 64 to
// 256 units, since every call packs the shared input rows again (tanh n=256 on 2 cores:
// 128-unit blocks are 15% faster than 64).
#pragma once

#include <algorithm>
#include <cstddef>
#include <omp.h>

#include "pyjac/common/blas.hpp"
#include "common/reduce.hpp"

namespace pyjac::detail {

template <typename T>
class WeightProducts {
 public:
  WeightProducts(const T* W, int gates, int n, int n_threads)
      : W_(W), G_(gates), n_(n), nt_(n_threads) {
    const int per_core = (n + omp_get_num_procs() - 1) / omp_get_num_procs();
    block_ = std::clamp((per_core + 31) / 32 * 32, 64, 256);
  }

  int unit_block() const { return block_; }
  int blocks() const { return (n_ + unit_block() - 1) / unit_block(); }
  int n_threads() const { return nt_; }

  // Columns g*n + [64b, 64b+64) of C (row stride ldc, C pointing at column 0).
  void forward_block(int rows, const T* a, int lda, int g, int b, T beta, T* c, int ldc) const {
    const int j0 = b * unit_block(), w = std::min(unit_block(), n_ - j0);
    blas::gemm(blas::Trans::No, blas::Trans::Yes, rows, w, n_, T(1), a, lda,
               W_ + (static_cast<std::size_t>(g) * n_ + j0) * n_, n_, beta, c + g * n_ + j0, ldc);
  }

  // Columns of block b of C = beta C + alpha A W[k0:k1, :].
  void backward_block(int rows, const T* a, int lda, int k0, int k1, int b, T beta, T* c,
                      int ldc, T alpha = T(1)) const {
    const int j0 = b * unit_block(), w = std::min(unit_block(), n_ - j0);
    blas::gemm(blas::Trans::No, blas::Trans::No, rows, w, k1 - k0, alpha, a, lda,
               W_ + static_cast<std::size_t>(k0) * n_ + j0, n_, beta, c + j0, ldc);
  }

  // Whole products, parallel over (gate, block): C (rows x G*n) = beta C + A W^T.
  void times_wt(int rows, const T* a, int lda, T beta, T* c, int ldc) const {
    const int nb = blocks(), tasks = G_ * nb;
    const bool par = worth_parallel(static_cast<std::size_t>(rows) * G_ * n_ * 16);
    parallel_for(tasks, nt_, par,
                 [&](int i) { forward_block(rows, a, lda, i / nb, i % nb, beta, c, ldc); });
  }

  // C (rows x n) = beta C + A W[k0:k1, :].
  void times_w(int rows, const T* a, int lda, int k0, int k1, T beta, T* c, int ldc) const {
    const int nb = blocks();
    const bool par = worth_parallel(static_cast<std::size_t>(rows) * (k1 - k0) * 16);
    parallel_for(nb, nt_, par,
                 [&](int b) { backward_block(rows, a, lda, k0, k1, b, beta, c, ldc); });
  }

 private:
  const T* W_;
  int G_, n_, nt_;
  int block_ = 64;
};

}  // namespace pyjac::detail
