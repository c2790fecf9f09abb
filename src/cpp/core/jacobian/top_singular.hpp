// Largest singular value of a dense matrix by Lanczos on M M^T with full
// reorthogonalisation, warm-started from the previous call's Ritz vector(s): single-
// vector Lanczos (tridiagonal projection, O(m) eigen-solve per step) for small M,
// block Lanczos (Rayleigh-Ritz on a block Krylov space, thick restarts; one pass over
// M serves `block` vectors) once M no longer fits in cache.
//
// Why not an SVD per depth: the carried product changes little from one depth to the
// next, and its top right singular vector converges with depth (Oseledets), so a
// warm-started Krylov solver needs a handful of passes over M where an SVD costs
// ~10 n^3 flops.
//
// Accuracy: the solver stops when the top Ritz pair (theta, y) of M M^T has residual
// ||M M^T y - theta y|| <= tol * theta. Then theta is within tol * theta of an
// eigenvalue of M M^T, so sqrt(theta) is within tol/2 (relative) of a singular value
// of M; Rayleigh-Ritz also makes sqrt(theta) <= sigma_max. The start vectors mix the
// previous Ritz vectors with fresh pseudo-random ones, so the value found is
// sigma_max unless the random part is orthogonal to the top singular vector
// (probability zero).
#pragma once

#include <cstdint>
#include <vector>

namespace pyjac::detail {

struct TopSingularOptions {
  int block = 4;            // vectors per Krylov block (large matrices)
  long long block_from = 1 << 18;  // rows * cols from which the block method is used
  double tol = 1e-10;       // relative residual of theta = sigma^2
  int max_basis = 48;       // basis size that triggers a restart
  int max_passes = 400;     // passes over M (one M^T Z and one M Y each)
  std::uint64_t seed = 0;
  int n_threads = 1;        // OpenMP threads for the passes over M (BLAS held at 1)
};

struct TopSingularResult {
  double sigma = 0.0;
  int passes = 0;
  bool converged = false;
};

class TopSingular {
 public:
  // rows: the length of the vectors (M has `rows` rows at every call).
  TopSingular(int rows, const TopSingularOptions& options);
  // sigma_max(M) for M (rows x cols, row-major, finite). call_index keys the
  // pseudo-random start vector, so results do not depend on thread counts. A float
  // M is multiplied in float (half the memory traffic of the passes, which are
  // memory-bound); the basis and the Rayleigh-Ritz step stay in double.
  TopSingularResult solve(const double* m, int cols, std::uint64_t call_index);
  TopSingularResult solve(const float* m, int cols, std::uint64_t call_index);

 private:
  template <typename TM>
  TopSingularResult dispatch(const TM* m, int cols, std::uint64_t call_index);
  template <typename TM>
  TopSingularResult solve_single(const TM* m, int cols, std::uint64_t call_index);
  template <typename TM>
  TopSingularResult solve_block(const TM* m, int cols, std::uint64_t call_index);
  template <typename TM>
  void add_block(const TM* m, int cols, const double* x, int c);
  void ritz(int count);
  int orthonormalise_new(double* x, int c);

  int n_;
  TopSingularOptions o_;
  int basis_ = 0;             // vectors in Z
  std::vector<double> z_;     // basis, max_basis x n
  std::vector<double> y_;     // Z M, max_basis x cols
  std::vector<double> bz_;    // Z M M^T, max_basis x n
  std::vector<double> gram_;  // H = (Z M)(Z M)^T, max_basis x max_basis
  std::vector<double> h_;     // a copy of H, then its eigenvectors
  std::vector<double> st_;    // top eigenvectors of H as rows
  std::vector<double> theta_; // Ritz values, ascending
  std::vector<double> xr_, bxr_, yr_;  // top Ritz vectors and their images
  std::vector<double> warm_;  // Ritz vectors carried to the next call
  int n_warm_ = 0;
  std::vector<double> alpha_, beta_, s_, w_;  // single-vector Lanczos
  std::vector<float> xf_, yf_, bzf_;          // float copies for float matrices
  std::vector<double> mt_;                     // M^T q (double matrices)
};

}  // namespace pyjac::detail
