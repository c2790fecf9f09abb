// Thin, type-generic wrappers over the prefixed CBLAS/LAPACKE symbols of
// scipy-openblas32. Row-major everywhere, matching numpy's C order.
#pragma once

#include <cstdint>

namespace pyjac::blas {

enum class Trans : int { No, Yes };

// C (m x n) = alpha * op(A) * op(B) + beta * C, all row-major.
void gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc);
void gemm(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a, int lda,
          const double* b, int ldb, double beta, double* c, int ldc);

// The same product, computed as a grid of tiles fixed by the shape alone, each by a
// single-threaded GEMM, the tiles shared out over n_threads OpenMP threads. OpenBLAS's
// own threading does not reproduce its single-threaded sums bit for bit; this does, at
// every thread count, for the cost of packing the operands once per tile.
void gemm_reproducible(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a,
                       int lda, const float* b, int ldb, float beta, float* c, int ldc,
                       int n_threads);
void gemm_reproducible(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a,
                       int lda, const double* b, int ldb, double beta, double* c, int ldc,
                       int n_threads);

// C (n x n, lower triangle) = alpha * A * A^T + beta * C for A (n x k).
void syrk_lower(int n, int k, float alpha, const float* a, int lda, float beta, float* c,
                int ldc);
void syrk_lower(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                int ldc);

// y = alpha * op(A) x + beta * y for A (m x n).
void gemv(Trans ta, int m, int n, float alpha, const float* a, int lda, const float* x,
          float beta, float* y);
void gemv(Trans ta, int m, int n, double alpha, const double* a, int lda, const double* x,
          double beta, double* y);

// Householder QR of A (m x n, row-major) in place; tau has min(m, n) entries.
// Returns LAPACK's info (0 on success).
int geqrf(int m, int n, float* a, int lda, float* tau);
int geqrf(int m, int n, double* a, int lda, double* tau);
// Forms the first k columns of Q (m x k) from geqrf's output.
int orgqr(int m, int k, float* a, int lda, const float* tau);
int orgqr(int m, int k, double* a, int lda, const double* tau);
// Singular values only (descending) of A (m x n), destroying A.
int singular_values(int m, int n, float* a, int lda, float* s);
int singular_values(int m, int n, double* a, int lda, double* s);
// Eigenvalues of a general square matrix (real and imaginary parts), destroying A.
int eigenvalues(int n, double* a, int lda, double* wr, double* wi);

void set_num_threads(int n);
int get_num_threads();

}  // namespace pyjac::blas
