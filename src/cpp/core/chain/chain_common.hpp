// Pieces shared by the two implementations of the chain's forward/backward pass:
// layer at a time (chain.cpp, for the norm layers, which need whole rows or columns)
// and tile at a time (chain_tiled.cpp, everything else).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>

#include "pyjac/common/activation.hpp"
#include "pyjac/chain/chain.hpp"
#include "common/reduce.hpp"
#include "common/simd.hpp"

namespace pyjac::detail {

template <typename T>
using Buffer = std::unique_ptr<T[]>;

// new T[n] leaves memory untouched until written, so peak RSS is what is used.
template <typename T>
Buffer<T> make_buffer(std::size_t n) {
  return Buffer<T>(new T[std::max<std::size_t>(n, 1)]);
}

template <typename T>
bool needs_preactivations(const ChainView<T>& c, int layer) {
  return c.residual_at(layer) || c.norm != Norm::None || !derivative_from_output(c.activations[layer]);
}

// derivative_from_output(A) as a compile-time constant, for `if constexpr`.
template <Activation A>
inline constexpr bool kOutputForm = derivative_from_output(A);

// du = branch * g * phi'(.) over one contiguous run, and du added to column_sum when
// that is given: a plain function of restrict pointers and by-value scalars, so that
// the compiler vectorises it (inside an OpenMP region the captured scalars are re-read
// through the shared frame on every iteration, and the ReLU select becomes an
// unpredictable branch).
template <Activation A, bool kFromOutput, typename T>
PYJAC_ISA_CLONES void derivative_run(const T* __restrict g, const T* __restrict v, T* __restrict du,
                    std::size_t n, T branch, double* __restrict column_sum = nullptr) {
  auto at = [&](std::size_t k) {
    if constexpr (kFromOutput)
      return branch * g[k] * derivative_of_output(A, v[k]);
    else
      return branch * g[k] * activate<A>(v[k]).derivative;
  };
  if (column_sum) {
    for (std::size_t k = 0; k < n; ++k) {
      const T d = at(k);
      du[k] = d;
      column_sum[k] += d;
    }
  } else {
    for (std::size_t k = 0; k < n; ++k) du[k] = at(k);
  }
}

// One row of a layer's output: h = phi(u) (or h_in + scale * phi(u)), units whose phi'
// is non-zero marked in alive; returns the number of entries with phi' below sat_level
// (counted for the saturating activations only), with the row's sum of phi' and of h^2
// in dsum and hsq. u and h may be the same array: every entry is read before it is
// written, at the same index, so the loops are safe to vectorise.
template <Activation A, bool kResidual, typename T>
PYJAC_ISA_CLONES int activate_row(const T* u, T* h, const T* h_in, int n, T scale, T sat_level, T* d,
                 unsigned char* alive, double& dsum, double& hsq) {
  constexpr bool kSelect =
      A == Activation::Linear || A == Activation::Relu || A == Activation::LeakyRelu;
  if constexpr (kSelect) {
    // phi' takes one value for u > 0 and one (kBelow) otherwise, NaN included, so a
    // count of the positive entries gives its sum and the alive marks without a row of
    // phi'.
    // Thin layers have short rows, where every extra pass costs more than its
    // arithmetic.
    constexpr T kBelow = A == Activation::Relu        ? T(0)
                         : A == Activation::LeakyRelu ? static_cast<T>(kLeakySlope)
                                                      : T(1);
    int positive = 0;
    if constexpr (kResidual) {
#pragma omp simd reduction(+ : positive)
      for (int j = 0; j < n; ++j) {
        const T v = u[j];
        h[j] = h_in[j] + scale * activate<A>(v).value;
        positive += v > T(0) ? 1 : 0;
      }
      for (int j = 0; j < n; ++j) alive[j] |= (u[j] > T(0) || kBelow != T(0)) ? 1 : 0;
    } else {
#pragma omp simd reduction(+ : positive)
      for (int j = 0; j < n; ++j) {
        const T v = u[j];
        h[j] = activate<A>(v).value;
        positive += v > T(0) ? 1 : 0;
      }
      // phi(u) > 0 exactly when u > 0 for these three, and u may be gone (h overwrote it).
      for (int j = 0; j < n; ++j) alive[j] |= (h[j] > T(0) || kBelow != T(0)) ? 1 : 0;
    }
    dsum = positive + static_cast<double>(kBelow) * (n - positive);
    hsq = row_sum_squares(h, n);
    return 0;
  } else {
    // Each transcendental once per entry. GELU's erfc is a scalar libm call, which a
    // vectorised loop would only make slower.
    auto entry = [&](int j) {
      const auto r = activate<A>(u[j]);
      d[j] = r.derivative;
      if constexpr (kResidual)
        h[j] = h_in[j] + scale * r.value;
      else
        h[j] = r.value;
    };
    if constexpr (A == Activation::Gelu) {
      for (int j = 0; j < n; ++j) entry(j);
    } else {
#pragma omp simd
      for (int j = 0; j < n; ++j) entry(j);
    }
    int sat = 0;
    if constexpr (is_saturating(A))
      for (int j = 0; j < n; ++j) sat += d[j] < sat_level ? 1 : 0;
    for (int j = 0; j < n; ++j) alive[j] |= d[j] != T(0) ? 1 : 0;
    dsum = row_sum(d, n);
    hsq = row_sum_squares(h, n);
    return sat;
  }
}

// The tiled pass forms ||dz^T h||_F through the two (batch x batch) Grams, which costs
// batch^2 (n_in + n_out) / 2 multiply-adds as two SYRKs, against batch n_in n_out for
// forming dW.
inline bool ghost_norm_preferred(int batch, int n_in, int n_out) {
  return 0.5 * batch * static_cast<double>(batch) * (static_cast<double>(n_in) + n_out) <
         static_cast<double>(batch) * n_in * n_out;
}

// The first layer, in the order the backward pass meets them, whose ||dL/dh_l|| is below
// float64's normal range (zero or subnormal) while its log is finite.
inline void record_underflow(BackpropStats& s, int layer) {
  const double v = s.grad_norm[layer];
  if (s.first_underflow_layer < 0 && std::isfinite(s.log_grad_norm[layer]) &&
      v < std::numeric_limits<double>::min())
    s.first_underflow_layer = layer;
}

inline void record_nonfinite(BackpropStats& s, int layer, int stage) {
  if (s.first_nonfinite_stage == 0) {
    s.first_nonfinite_layer = layer;
    s.first_nonfinite_stage = stage;
  }
}

// ||h_l|| from hsq, the sum of its rows' squares, where that plain sum is exact; else
// decided from h itself (batch x n), which also finds a NaN/Inf entry, recorded as the
// forward pass's. row_sq, when given, receives the rows' squares again.
template <typename T>
void store_activation_norm(BackpropStats& s, int layer, const T* h, int batch, int n,
                           double hsq, int nt, double* row_sq = nullptr) {
  if (plain_sum_is_exact<T>(hsq)) {
    s.activation_norm[layer] = std::sqrt(hsq);
    return;
  }
  const auto hn = frobenius_norm(h, batch, n, nt, row_sq);
  s.activation_norm[layer] = hn.norm;
  if (!hn.finite) record_nonfinite(s, layer, 1);
}

// Shapes, labels, loss scale and destinations, before anything is allocated.
template <typename T>
void check_backprop_arguments(const ChainView<T>& c, int batch, const T* target,
                              const std::int64_t* labels, const BackpropOptions& o,
                              const BackpropOutputs<T>& out);

BackpropStats empty_stats(int depth, int batch);

// The loss and dL/dh_L into g (times the loss scale, rounded to the gradient format), with
// its norm and counts in the stats; returns ||g|| as stored (loss scale included), from
// which the backward pass decides its first power-of-two step.
template <typename T>
double start_backward(const BackpropOptions& o, const T* h_last, int batch, int n_last,
                    const T* target, const std::int64_t* labels, T* g, BackpropStats& s,
                    int n_threads);

// The tile-at-a-time pass (chain_tiled.cpp), for chains without norm layers; arguments
// already checked, n_threads resolved.
template <typename T>
BackpropStats backprop_tiled(const ChainView<T>& c, const T* x, int batch, const T* target,
                             const std::int64_t* labels, const BackpropOptions& o,
                             const BackpropOutputs<T>& out, int n_threads);
template <typename T>
void forward_tiled(const ChainView<T>& c, const T* x, int batch, T* out, int n_threads);

}  // namespace pyjac::detail
