// C = A * B for a B that stays the same over many calls: the recurrent weight W,
// multiplied once per time step by a thin A (batch x K).
//
// BLAS packs B again on every call, which for a (32 x 256) x (256 x 256) product
// costs about as much as the arithmetic. Here B is packed once per pass into panels
// of 16 columns and an AVX2/FMA micro-kernel streams A through them. Each entry of
// C is one FMA chain over k in ascending order, whichever thread computes it, so the
// result does not depend on the thread count. float32 only; callers fall back to
// BLAS where packed_gemm_available() is false (no AVX2/FMA, or float64).
#pragma once

#include <cstddef>
#include <vector>

namespace pyjac::detail {

inline constexpr int kPanel = 16;

struct PackedPanels {
  int K = 0, N = 0, panels = 0;
  std::vector<float> data;  // panels * K * kPanel, zero-padded past column N
  const float* panel(int p) const { return data.data() + static_cast<std::size_t>(p) * K * kPanel; }
};

// True when this CPU runs the AVX2/FMA kernel.
bool packed_gemm_available();

// Packs B (K x N): B[k][j] = src[k * ld + j], or src[j * ld + k] when transposed.
void pack_panels(const float* src, int ld, bool transposed, int K, int N, PackedPanels& out);

// C (M x N) = beta * C + A (M x (k1 - k0)) * B[k0:k1, :], beta 0 or 1. A's column
// c multiplies row k0 + c of B.
void packed_gemm(int M, const float* a, int lda, const PackedPanels& b, int k0, int k1,
                 float beta, float* c, int ldc, int n_threads);

// One panel p only (columns 16p .. 16p+15 of C), on the calling thread.
void packed_gemm_panel(int M, const float* a, int lda, const PackedPanels& b, int p, int k0,
                       int k1, float beta, float* c, int ldc);

}  // namespace pyjac::detail
