// Repeated Jacobian products P_t = J_t ... J_1: explicit Jacobians, log norms at
// every depth, singular values and Lyapunov exponents, overflow-free at any depth.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "pyjac/chain/chain.hpp"

namespace pyjac {

// ---- the generic engine ---------------------------------------------------------
//
// A product of T steps is described by the widths n_0..n_T of the spaces between
// the steps and one callback:
//
//   apply(t, in, k, out): out = J_{t+1} applied to k vectors, for t = 0..T-1,
//     in:  k x n_t      row-major, one vector per row (the layout of a batch);
//     out: k x n_{t+1}  row-major, written (not accumulated), never aliasing in.
//   The engine calls it with t = 0, 1, ..., T-1 in order, from one thread, with the
//   BLAS thread count already set to the call's budget, so the callback may use BLAS
//   freely but must not start OpenMP regions larger than the budget. It must not
//   throw through the engine unless the whole computation should stop.
//
// A feed-forward chain passes its layer Jacobians; a recurrent network passes
// dh_t/dh_{t-1} along a trajectory (widths all equal to the state size).
template <typename T>
using BlockApply = std::function<void(int t, const T* in, int k, T* out)>;

enum class ProductMethod : int {
  // P_t itself, rescaled by an exact power of two at every step (log-scale kept in
  // double): one GEMM per step. Largest singular value and Frobenius norm are as
  // accurate as the product itself; singular values much smaller than sigma_max
  // (below ~eps * sigma_max) are lost to rounding, as in any explicit product.
  Product,
  // Benettin's method: P_t Q_0 = Q_t R_t ... R_1 with Q_t orthonormal (Householder
  // QR at every step), the triangular product kept in float64 with its own
  // log-scale. Small singular values keep their relative accuracy through the
  // product (each step is conditioned like J_t, not like P_t); one QR per step.
  Qr,
};

struct ProductOptions {
  ProductMethod method = ProductMethod::Product;
  bool norms = true;                     // log spectral and Frobenius norm at every step
  std::vector<int> singular_values_at;   // steps t (1..T) whose full spectrum is wanted
  int k = -1;                            // Qr: directions carried (-1: n_0); Product: n_0
  // Qr: k x n_0 orthonormal rows to start from; empty means the first k unit vectors.
  std::vector<double> initial_frame;
  int n_threads = -1;
  double tol = 1e-10;                    // relative residual of sigma_max^2 (see spectral)
  std::uint64_t seed = 0;                // start vectors of the sigma_max solver
};

struct ProductResult {
  // Per step t = 1..T (index t-1). Empty when norms = false.
  std::vector<double> log_spectral_norm;   // log sigma_max(P_t)
  std::vector<double> log_frobenius_norm;  // log ||P_t||_F
  std::vector<int> solver_passes;          // passes of the sigma_max solver at step t
  std::vector<unsigned char> converged;    // the solver met its tolerance at step t
  // log singular values (descending, min(n_t, n_0) of them; -inf for exact zeros),
  // one vector per entry of singular_values_at, in that order.
  std::vector<std::vector<double>> log_singular_values;
  // Qr only: sum over steps of log |diag R_t| (k entries), for Lyapunov exponents.
  std::vector<double> log_diag_sum;
  int steps = 0;
  int first_nonfinite_step = -1;  // first t whose product had a NaN/Inf; later values NaN
};

// Runs the product over widths.size() - 1 steps.
template <typename T>
ProductResult track_product(const std::vector<int>& widths, const BlockApply<T>& apply,
                            const ProductOptions& options);

// ---- feed-forward chains at one input x (widths[0] entries) ------------------------
// Batchnorm chains are refused (std::invalid_argument): batch statistics make one
// input's Jacobian undefined.

// d h_depth / d h_0, written to out (widths[depth] x widths[0], row-major). Forward
// or reverse accumulation, whichever multiplies fewer vectors.
template <typename T>
void chain_jacobian(const ChainView<T>& chain, const T* x, int depth, T* out, int n_threads);

struct ChainProductResult {
  ProductResult product;
  int first_nonfinite_layer = -1;  // first h_l of the forward pass with NaN/Inf
};

template <typename T>
ChainProductResult chain_jacobian_norms(const ChainView<T>& chain, const T* x,
                                        const ProductOptions& options);

// The k largest Lyapunov exponents (natural log per layer): the mean over layers of
// log |diag R_l| in Benettin's QR iteration, started from a seeded random k-frame
// (the first k columns of one fixed Haar-random n_0 x n_0 frame, so k = 3 gives the
// first three of k = n_0). Returned in Benettin order: entry i is the growth rate of
// the (i+1)-volume minus that of the i-volume, descending for long chains.
template <typename T>
std::vector<double> chain_lyapunov_exponents(const ChainView<T>& chain, const T* x, int k,
                                             std::uint64_t seed, int n_threads,
                                             int* first_nonfinite_layer = nullptr);

}  // namespace pyjac
