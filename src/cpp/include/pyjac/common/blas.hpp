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
// The kernel family OpenBLAS chose at load time (e.g. "Haswell", "SkylakeX"): the
// OPENBLAS_CORETYPE environment variable overrides its own CPU detection, and
// benchmarks name it beside every peak they report.
const char* kernel_name();
// OpenBLAS's build configuration line (version, threading, target).
const char* build_config();

// ---- additions for Jacobian products and spectral norms -------------------------
// Column-major Householder QR, for blocks of k vectors stored as the rows of a
// (k x m) row-major array, which is the (m x k) column-major matrix LAPACK wants:
// no transposition copies.
int geqrf_colmajor(int m, int n, float* a, int lda, float* tau);
int geqrf_colmajor(int m, int n, double* a, int lda, double* tau);
// Forms the first k columns of Q (m x k, column-major) from geqrf_colmajor's output.
int orgqr_colmajor(int m, int k, float* a, int lda, const float* tau);
int orgqr_colmajor(int m, int k, double* a, int lda, const double* tau);
// B (m x n, row-major) = alpha * B * op(A) for A (n x n) upper triangular.
void trmm_right_upper(Trans ta, int m, int n, double alpha, const double* a, int lda, double* b,
                      int ldb);
// Eigenvalues (ascending) of a symmetric matrix (n x n, row-major, upper triangle used);
// on return the columns of A are the orthonormal eigenvectors.
int symmetric_eigen(int n, double* a, int lda, double* w);
// Every eigenvalue (ascending, into d) and eigenvector of the symmetric tridiagonal
// matrix with diagonal d (n) and off-diagonal e (n - 1, destroyed): z (n x n, row-major)
// holds the eigenvectors in its columns (LAPACK dstev).
int tridiagonal_eigen(int n, double* d, double* e, double* z);
// Singular values (descending) of A (m x n, row-major, m >= n) by one-sided Jacobi,
// destroying A. Jacobi is accurate to high relative precision for column-graded
// matrices, which the triangular factors of long products are.
int singular_values_jacobi(int m, int n, double* a, int lda, double* s);
// Largest eigenvalue w and its unit eigenvector z (n entries) of the symmetric
// tridiagonal matrix with diagonal d (n) and off-diagonal e (n - 1), by bisection
// and inverse iteration (O(n) work, LAPACK dstebz + dstein).
int tridiagonal_top_eigenpair(int n, const double* d, const double* e, double* w, double* z);

}  // namespace pyjac::blas
