// A chain linearised at one input: everything needed to apply the layer Jacobians
// J_l = diag(phi'(u_l)) N_l W_l (or I + s diag(phi'(u_l)) N_l W_l with residual
// connections) and their transposes to blocks of vectors, without forming them.
// N_l is the LayerNorm Jacobian (identity without normalisation).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "pyjac/chain/chain.hpp"

namespace pyjac::detail {

template <typename T>
struct Linearization {
  const ChainView<T>* chain = nullptr;
  int layers = 0;                       // layers linearised: 1..layers
  std::vector<std::vector<T>> d;        // phi'(u_l), times residual_scale when residual
  std::vector<std::vector<T>> u;        // normalised pre-activations (layernorm only)
  std::vector<T> inv_std;               // LayerNorm 1/sqrt(var + eps), one per layer
  int first_nonfinite_layer = -1;       // first h_l (l = 1..layers) with NaN/Inf, or -1

  int n_in(int l) const { return chain->widths[l]; }       // layer l+1's input width
  int n_out(int l) const { return chain->widths[l + 1]; }  // layer l+1's output width
};

// Runs the forward pass of the first `layers` layers at the single input x
// (widths[0] entries). Throws std::invalid_argument for batchnorm: it normalises
// over a batch, so one input has no well-defined Jacobian.
template <typename T>
Linearization<T> linearize(const ChainView<T>& chain, const T* x, int layers, int n_threads);

// Vectors are the rows of row-major blocks, the layout of a batch. The caller holds
// a BlasThreadScope(1): n_threads are OpenMP threads over fixed tiles, so results do
// not depend on them.
// out (k x n_out(l)) = rows of in (k x n_in(l)) mapped by J_{l+1}: out_i = J in_i.
template <typename T>
void apply_layer(const Linearization<T>& lin, int l, const T* in, int k, T* out, int n_threads);
// out (k x n_in(l)) = rows of in (k x n_out(l)) mapped by J_{l+1}^T.
template <typename T>
void apply_layer_transpose(const Linearization<T>& lin, int l, const T* in, int k, T* out,
                           int n_threads);

struct Rescaled {
  double log_scale;  // the block was multiplied by exp(-log_scale)
  double norm;       // its Frobenius norm afterwards: in [0.5, sqrt(n)), 0, or NaN
};

// Largest |entry| of a block; NaN when one is NaN.
template <typename T>
double max_abs(const T* a, std::size_t n) {
  double m = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = std::abs(static_cast<double>(a[i]));
    if (!(v <= m)) m = v;  // also catches NaN
  }
  return m;
}

// a *= 2^-e, in two steps when 2^-e itself is outside T's normal range (|e| > 125 in
// float32); exact, a power of two.
template <typename T>
void scale_pow2(T* a, std::size_t n, int e) {
  const int e1 = e / 2, e2 = e - e1;
  const T f1 = static_cast<T>(std::ldexp(1.0, -e1)), f2 = static_cast<T>(std::ldexp(1.0, -e2));
  for (std::size_t i = 0; i < n; ++i) a[i] = a[i] * f1 * f2;
}

// Multiplies the block (n entries) by 2^-e so that its largest |entry| lies in
// [0.5, 1). Scaling by a power of two is exact, so carrying the log-scale separately
// adds no rounding error; an all-zero or non-finite block is left as it is.
template <typename T>
Rescaled rescale_pow2(T* a, std::size_t n, int n_threads);

}  // namespace pyjac::detail
