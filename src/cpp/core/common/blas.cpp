#include "pyjac/common/blas.hpp"

#include <algorithm>
#include <vector>

#include <cblas.h>
#include <lapacke.h>

namespace pyjac::blas {
namespace {

CBLAS_TRANSPOSE to_cblas(Trans t) { return t == Trans::Yes ? CblasTrans : CblasNoTrans; }

}  // namespace

void gemm(Trans ta, Trans tb, int m, int n, int k, float alpha, const float* a, int lda,
          const float* b, int ldb, float beta, float* c, int ldc) {
  scipy_cblas_sgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), m, n, k, alpha, a, lda, b, ldb,
                    beta, c, ldc);
}
void gemm(Trans ta, Trans tb, int m, int n, int k, double alpha, const double* a, int lda,
          const double* b, int ldb, double beta, double* c, int ldc) {
  scipy_cblas_dgemm(CblasRowMajor, to_cblas(ta), to_cblas(tb), m, n, k, alpha, a, lda, b, ldb,
                    beta, c, ldc);
}

void syrk_lower(int n, int k, float alpha, const float* a, int lda, float beta, float* c,
                int ldc) {
  scipy_cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_lower(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                int ldc) {
  scipy_cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}

void gemv(Trans ta, int m, int n, float alpha, const float* a, int lda, const float* x,
          float beta, float* y) {
  scipy_cblas_sgemv(CblasRowMajor, to_cblas(ta), m, n, alpha, a, lda, x, 1, beta, y, 1);
}
void gemv(Trans ta, int m, int n, double alpha, const double* a, int lda, const double* x,
          double beta, double* y) {
  scipy_cblas_dgemv(CblasRowMajor, to_cblas(ta), m, n, alpha, a, lda, x, 1, beta, y, 1);
}

int geqrf(int m, int n, float* a, int lda, float* tau) {
  return scipy_LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, m, n, a, lda, tau);
}
int geqrf(int m, int n, double* a, int lda, double* tau) {
  return scipy_LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, m, n, a, lda, tau);
}
int orgqr(int m, int k, float* a, int lda, const float* tau) {
  return scipy_LAPACKE_sorgqr(LAPACK_ROW_MAJOR, m, k, k, a, lda, tau);
}
int orgqr(int m, int k, double* a, int lda, const double* tau) {
  return scipy_LAPACKE_dorgqr(LAPACK_ROW_MAJOR, m, k, k, a, lda, tau);
}

int singular_values(int m, int n, float* a, int lda, float* s) {
  return scipy_LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1);
}
int singular_values(int m, int n, double* a, int lda, double* s) {
  return scipy_LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', m, n, a, lda, s, nullptr, 1, nullptr, 1);
}

int eigenvalues(int n, double* a, int lda, double* wr, double* wi) {
  return scipy_LAPACKE_dgeev(LAPACK_ROW_MAJOR, 'N', 'N', n, a, lda, wr, wi, nullptr, 1, nullptr,
                             1);
}

void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
int get_num_threads() { return scipy_openblas_get_num_threads(); }
const char* kernel_name() { return scipy_openblas_get_corename(); }
const char* build_config() { return scipy_openblas_get_config(); }

// ---- additions for Jacobian products and spectral norms -------------------------
int geqrf_colmajor(int m, int n, float* a, int lda, float* tau) {
  return scipy_LAPACKE_sgeqrf(LAPACK_COL_MAJOR, m, n, a, lda, tau);
}
int geqrf_colmajor(int m, int n, double* a, int lda, double* tau) {
  return scipy_LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, a, lda, tau);
}
int orgqr_colmajor(int m, int k, float* a, int lda, const float* tau) {
  return scipy_LAPACKE_sorgqr(LAPACK_COL_MAJOR, m, k, k, a, lda, tau);
}
int orgqr_colmajor(int m, int k, double* a, int lda, const double* tau) {
  return scipy_LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, k, k, a, lda, tau);
}

void trmm_right_upper(Trans ta, int m, int n, double alpha, const double* a, int lda, double* b,
                      int ldb) {
  scipy_cblas_dtrmm(CblasRowMajor, CblasRight, CblasUpper, to_cblas(ta), CblasNonUnit, m, n,
                    alpha, a, lda, b, ldb);
}

int tridiagonal_eigen(int n, double* d, double* e, double* z) {
  return scipy_LAPACKE_dstev(LAPACK_ROW_MAJOR, 'V', n, d, e, z, n);
}

int symmetric_eigen(int n, double* a, int lda, double* w) {
  return scipy_LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', n, a, lda, w);
}

int singular_values_jacobi(int m, int n, double* a, int lda, double* s) {
  double stat[6] = {1.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  // V is not referenced with jobv = 'N', but LAPACKE's row-major wrapper checks ldv >= n.
  std::vector<double> v_unused(static_cast<std::size_t>(std::max(n, 1)));
  const int info = scipy_LAPACKE_dgesvj(LAPACK_ROW_MAJOR, 'G', 'N', 'N', m, n, a, lda, s, 0,
                                        v_unused.data(), std::max(n, 1), stat);
  // dgesvj returns SCALE * SVA when the values would over/underflow otherwise.
  if (info == 0 && stat[0] != 1.0)
    for (int i = 0; i < n; ++i) s[i] *= stat[0];
  std::sort(s, s + n, [](double x, double y) { return x > y; });
  return info;
}

int tridiagonal_top_eigenpair(int n, const double* d, const double* e, double* w, double* z) {
  std::vector<double> dd(d, d + n), ee(static_cast<std::size_t>(std::max(n, 1)), 0.0), ws(n);
  std::copy(e, e + std::max(n - 1, 0), ee.begin());
  std::vector<lapack_int> iblock(n), isplit(n), ifail(1);
  lapack_int found = 0, nsplit = 0;
  int info = scipy_LAPACKE_dstebz('I', 'B', n, 0.0, 0.0, n, n, 0.0, dd.data(), ee.data(), &found,
                                  &nsplit, ws.data(), iblock.data(), isplit.data());
  if (info != 0 || found != 1) return info != 0 ? info : -100;
  *w = ws[0];
  info = scipy_LAPACKE_dstein(LAPACK_COL_MAJOR, n, dd.data(), ee.data(), 1, ws.data(),
                              iblock.data(), isplit.data(), z, n, ifail.data());
  return info;
}

}  // namespace pyjac::blas
