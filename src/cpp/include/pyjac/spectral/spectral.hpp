// Largest singular values by matrix-free power iteration, and spectral radii.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "pyjac/chain/chain.hpp"

namespace pyjac {

struct PowerIterationOptions {
  int iters = 1000;          // at most this many iterations (one J and one J^T each)
  double tol = 1e-6;         // relative accuracy asked for (see PowerIterationResult)
  std::uint64_t seed = 0;    // the random start vector
  int n_threads = -1;
};

// sigma_max estimated by power iteration on J^T J. The estimates
// ||J v_0|| <= ||J^T u_0|| <= ||J v_1|| <= ... increase to sigma_max (u_k, v_k unit);
// `converged` means that the last relative change was below tol and that the
// remaining error, extrapolated from the observed contraction rate (change times
// rho / (1 - rho)), was below tol too, so slow convergence is not mistaken for
// convergence. It is the largest singular value, not the largest |eigenvalue|.
struct PowerIterationResult {
  double log_value = 0.0;  // log sigma_max, finite whenever value is not 0
  double value = 0.0;      // exp(log_value); may overflow to inf for deep chains
  int iterations = 0;
  bool converged = false;
};

// out = J in (or J^T in); returns the log of the factor out must be multiplied by
// (0 for an operator that needs no rescaling; deep chains rescale on the way so
// that float32 vectors never overflow or underflow).
template <typename T>
using VectorApply = std::function<double(const T* in, T* out)>;

// Generic matrix-free power iteration for J (n_out x n_in), given J and J^T.
template <typename T>
PowerIterationResult power_iteration(int n_in, int n_out, const VectorApply<T>& forward,
                                     const VectorApply<T>& backward,
                                     const PowerIterationOptions& options,
                                     std::uint64_t stream = 0);

// A plain matrix A (rows x cols, row-major).
template <typename T>
PowerIterationResult matrix_spectral_norm(const T* a, int rows, int cols,
                                          const PowerIterationOptions& options);

// A chain at one input x: per_layer = false gives sigma_max of d h_L / d h_0 (one
// result) through JVP/VJP passes, never forming it; per_layer = true gives
// sigma_max(J_l) for l = 1..L (one result each, computed in parallel over layers).
template <typename T>
std::vector<PowerIterationResult> chain_spectral_norm(const ChainView<T>& chain, const T* x,
                                                      bool per_layer,
                                                      const PowerIterationOptions& options,
                                                      int* first_nonfinite_layer = nullptr);

// Largest |eigenvalue| of a square matrix (n x n, row-major), exact via LAPACK dgeev.
double spectral_radius(const double* a, int n);

}  // namespace pyjac
