// The two products with the recurrent weight that every time step needs:
// forward  C = A W^T  (A: rows x width, C: rows x G*width)
// backward C = A W[k0:k1]  (A: rows x (k1-k0), C: rows x width).
// float32 on AVX2/FMA uses W packed once (packed_gemm.hpp); otherwise BLAS through
// gemm_blocked. Either way the result does not depend on the thread count.
#pragma once

#include <type_traits>

#include "gemm_blocked.hpp"
#include "packed_gemm.hpp"

namespace pyjac::detail {

template <typename T>
class WeightProducts {
 public:
  // W is (gn x n). Packs only the directions asked for.
  WeightProducts(const T* W, int gn, int n, int n_threads, bool forward, bool backward)
      : W_(W), gn_(gn), n_(n), nt_(n_threads) {
    if constexpr (std::is_same_v<T, float>) {
      packed_ = packed_gemm_available();
      if (packed_ && forward) pack_panels(W, n, true, n, gn, wt_);
      if (packed_ && backward) pack_panels(W, n, false, gn, n, w_);
      has_wt_ = packed_ && forward;
      has_w_ = packed_ && backward;
    }
  }

  // C = beta C + A W^T.
  void times_wt(int rows, const T* a, int lda, T beta, T* c, int ldc) const {
    if constexpr (std::is_same_v<T, float>) {
      if (has_wt_) {
        packed_gemm(rows, a, lda, wt_, 0, n_, beta, c, ldc, nt_);
        return;
      }
    }
    gemm_blocked(nt_, blas::Trans::No, blas::Trans::Yes, rows, gn_, n_, T(1), a, lda, W_, n_,
                 beta, c, ldc);
  }

  // C = beta C + A W[k0:k1, :].
  void times_w(int rows, const T* a, int lda, int k0, int k1, T beta, T* c, int ldc) const {
    if constexpr (std::is_same_v<T, float>) {
      if (has_w_) {
        packed_gemm(rows, a, lda, w_, k0, k1, beta, c, ldc, nt_);
        return;
      }
    }
    gemm_blocked(nt_, blas::Trans::No, blas::Trans::No, rows, n_, k1 - k0, T(1), a, lda,
                 W_ + static_cast<std::size_t>(k0) * n_, n_, beta, c, ldc);
  }

 private:
  const T* W_;
  int gn_, n_, nt_;
  bool packed_ = false, has_wt_ = false, has_w_ = false;
  PackedPanels wt_, w_;
};

}  // namespace pyjac::detail
