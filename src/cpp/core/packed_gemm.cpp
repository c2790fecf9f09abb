#include "packed_gemm.hpp"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PYJAC_X86_KERNEL 1
#include <immintrin.h>
#endif

namespace pyjac::detail {

void pack_panels(const float* src, int ld, bool transposed, int K, int N, PackedPanels& out) {
  out.K = K;
  out.N = N;
  out.panels = (N + kPanel - 1) / kPanel;
  out.data.assign(static_cast<std::size_t>(out.panels) * K * kPanel, 0.0f);
  for (int p = 0; p < out.panels; ++p) {
    float* dst = out.data.data() + static_cast<std::size_t>(p) * K * kPanel;
    const int j0 = p * kPanel, width = std::min(kPanel, N - j0);
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < width; ++j)
        dst[static_cast<std::size_t>(k) * kPanel + j] =
            transposed ? src[static_cast<std::size_t>(j0 + j) * ld + k]
                       : src[static_cast<std::size_t>(k) * ld + j0 + j];
  }
}

#ifdef PYJAC_X86_KERNEL

bool packed_gemm_available() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

namespace {

__attribute__((target("avx2,fma"))) inline void store_row(float* cr, __m256 lo, __m256 hi,
                                                          float beta, int width) {
  if (width == kPanel) {
    if (beta != 0.0f) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
    }
    _mm256_storeu_ps(cr, lo);
    _mm256_storeu_ps(cr + 8, hi);
    return;
  }
  alignas(32) float tmp[kPanel];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  for (int j = 0; j < width; ++j) cr[j] = (beta != 0.0f ? cr[j] : 0.0f) + tmp[j];
}

// Four rows of A times one 16-column panel over k = k0..k1-1. The eight accumulators
// are named variables: arrays of __m256 end up spilled to the stack.
__attribute__((target("avx2,fma"))) void kernel_4(const float* a, int lda, const float* panel,
                                                  int k0, int k1, float beta, float* c, int ldc,
                                                  int width) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  const float* bp = panel + static_cast<std::size_t>(k0) * kPanel;
  const float* a0 = a;
  const float* a1 = a + lda;
  const float* a2 = a + 2 * static_cast<std::size_t>(lda);
  const float* a3 = a + 3 * static_cast<std::size_t>(lda);
  const int kk = k1 - k0;
  for (int k = 0; k < kk; ++k, bp += kPanel) {
    const __m256 b0 = _mm256_loadu_ps(bp);
    const __m256 b1 = _mm256_loadu_ps(bp + 8);
    __m256 av = _mm256_broadcast_ss(a0 + k);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a1 + k);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a2 + k);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a3 + k);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
  }
  store_row(c, c00, c01, beta, width);
  store_row(c + ldc, c10, c11, beta, width);
  store_row(c + 2 * static_cast<std::size_t>(ldc), c20, c21, beta, width);
  store_row(c + 3 * static_cast<std::size_t>(ldc), c30, c31, beta, width);
}

__attribute__((target("avx2,fma"))) void kernel_1(const float* a, const float* panel, int k0,
                                                  int k1, float beta, float* c, int width) {
  __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
  const float* bp = panel + static_cast<std::size_t>(k0) * kPanel;
  const int kk = k1 - k0;
  for (int k = 0; k < kk; ++k, bp += kPanel) {
    const __m256 av = _mm256_broadcast_ss(a + k);
    c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp), c0);
    c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp + 8), c1);
  }
  store_row(c, c0, c1, beta, width);
}

constexpr int kKChunk = 256;

void panel_rows(int M, const float* a, int lda, const float* panel, int k0, int k1, float beta,
                float* c, int ldc, int width) {
  int i = 0;
  for (; i + 4 <= M; i += 4)
    kernel_4(a + static_cast<std::size_t>(i) * lda, lda, panel, k0, k1, beta,
             c + static_cast<std::size_t>(i) * ldc, ldc, width);
  for (; i < M; ++i)
    kernel_1(a + static_cast<std::size_t>(i) * lda, panel, k0, k1, beta,
             c + static_cast<std::size_t>(i) * ldc, width);
}

}  // namespace

void packed_gemm_panel(int M, const float* a, int lda, const PackedPanels& b, int p, int k0,
                       int k1, float beta, float* c, int ldc) {
  const int j0 = p * kPanel, width = std::min(kPanel, b.N - j0);
  // K in chunks whose slice of the panel (16 KB) stays in L1 across the row blocks.
  for (int kc = k0; kc < k1; kc += kKChunk)
    panel_rows(M, a + (kc - k0), lda, b.panel(p), kc, std::min(k1, kc + kKChunk),
               kc == k0 ? beta : 1.0f, c + j0, ldc, width);
}

void packed_gemm(int M, const float* a, int lda, const PackedPanels& b, int k0, int k1,
                 float beta, float* c, int ldc, int n_threads) {
  // Rows of A in slices that stay in L1 while a panel is reused across them.
  const double work = static_cast<double>(M) * b.N * (k1 - k0);
  const int nt = work < (1 << 17) ? 1 : std::min(n_threads, b.panels);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int p = 0; p < b.panels; ++p) {
    packed_gemm_panel(M, a, lda, b, p, k0, k1, beta, c, ldc);
  }
}

#else  // no x86 kernel: callers use BLAS

bool packed_gemm_available() { return false; }

void packed_gemm(int, const float*, int, const PackedPanels&, int, int, float, float*, int, int) {}
void packed_gemm_panel(int, const float*, int, const PackedPanels&, int, int, int, float, float*,
                       int) {}

#endif

}  // namespace pyjac::detail
