// Elementwise parts of the recurrent cells: the forward step after its GEMM, the
// vector-Jacobian product (backprop through one step) and the Jacobian-vector
// product (tangent propagation for Lyapunov exponents). The GEMMs with W live in
// the drivers; these kernels see rows only.
//
// Every kernel works on one row. Gated kernels handle the units [j0, j1) of it (n is
// the gate stride), so that a thread can own a block of units across all gates. The
// caller chooses where the saved values (gates, states) come from: the row's own
// example in backprop through time, or the single trajectory's row 0 for every probe
// vector in the Jacobian computations.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "pyjac/common/activation.hpp"
#include "pyjac/common/fast_math.hpp"
#include "pyjac/recurrent/recurrent.hpp"
#include "common/reduce.hpp"
#include "common/simd.hpp"

namespace pyjac::detail {

inline Activation cell_activation(Cell c) {
  switch (c) {
    case Cell::Linear:
      return Activation::Linear;
    case Cell::Relu:
      return Activation::Relu;
    case Cell::Sigmoid:
      return Activation::Sigmoid;
    default:
      return Activation::Tanh;
  }
}

inline bool is_plain(Cell c) { return c != Cell::Lstm && c != Cell::Gru; }

// Frobenius norm of a contiguous block, accumulated in double. The simd reduction
// fixes the order of the partial sums by the code alone, so it is the same at every
// thread count; an overflowing sum goes to frobenius_norm's scaled path.
template <typename T>
inline NormResult slab_norm(const T* a, std::size_t count) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (std::size_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(a[i]);
    s += v * v;
  }
  if (plain_sum_is_exact<T>(s)) return {std::sqrt(s), true};
  return frobenius_norm(a, 1, count, 1);
}

// A sum of squares taken at three scales at once (1, 2^-600, 2^600), for values that
// are gone by the time a rescaled sum could be taken: float64 squares past 1e308 or
// below 1e-308 are then read from the scaled sums.
struct CellSquares {
  static constexpr double kDown = 0x1p-600, kUp = 0x1p600;
  double plain = 0.0, big = 0.0, small = 0.0;

  template <typename T>
  BlockSquares block() const {
    BlockSquares b;
    b.sum = plain;
    // float32 squares stay in double's range: only a non-finite entry makes `plain`
    // non-finite, and it stands as it is (the scaled sums are not taken).
    if (sizeof(T) != sizeof(double) || plain_sum_is_exact<T>(plain) || std::isnan(plain) ||
        std::isnan(big))
      return b;
    if (std::isinf(big)) {  // an infinite entry: the norm is inf
      b.inf = true;
      return b;
    }
    if (std::isinf(plain)) {
      b.scale = kUp;  // sum of (dc 2^-600)^2 = ||dc||^2 / 2^1200
      b.sum = big;
    } else {
      b.scale = kDown;
      b.sum = small;
    }
    return b;
  }
};

// ---- plain cells -------------------------------------------------------------------

// h = phi(z) in place over n entries of one row.
template <typename T>
PYJAC_ISA_CLONES inline void plain_forward_row(Activation act, T* h, int n) {
  switch (act) {
    case Activation::Tanh:
      PYJAC_SIMD for (int j = 0; j < n; ++j) h[j] = tanh_fast(h[j]);
      break;
    case Activation::Sigmoid:
      PYJAC_SIMD for (int j = 0; j < n; ++j) h[j] = sigmoid(h[j]);
      break;
    case Activation::Relu:
      PYJAC_SIMD for (int j = 0; j < n; ++j) h[j] = h[j] < T(0) ? T(0) : h[j];  // NaN stays NaN
      break;
    default:
      break;
  }
}

// dz = g * phi'(z), phi' read off h = phi(z).
template <typename T>
PYJAC_ISA_CLONES inline void plain_vjp_row(Activation act, const T* g, const T* h, T* dz, int n) {
  // One loop per activation: a switch inside the loop would stop vectorisation.
  switch (act) {
    case Activation::Tanh:
      PYJAC_SIMD for (int j = 0; j < n; ++j) dz[j] = g[j] * (T(1) - h[j] * h[j]);
      break;
    case Activation::Sigmoid:
      PYJAC_SIMD for (int j = 0; j < n; ++j) dz[j] = g[j] * h[j] * (T(1) - h[j]);
      break;
    case Activation::Relu:
      PYJAC_SIMD for (int j = 0; j < n; ++j) dz[j] = h[j] > T(0) ? g[j] : T(0);
      break;
    default:
      PYJAC_SIMD for (int j = 0; j < n; ++j) dz[j] = g[j];
  }
}

// ---- LSTM ----------------------------------------------------------------------------
// gates row: [i f g o], 4n entries.

// Pre-activations in `gates` become activations; writes c and h (and tanh(c)).
template <typename T>
PYJAC_ISA_CLONES inline void lstm_forward_row(T* gates, const T* c_prev, T* c, T* tc, T* h, int n, int j0, int j1) {
  T* gi = gates;
  T* gf = gates + n;
  T* gg = gates + 2 * n;
  T* go = gates + 3 * n;
  PYJAC_SIMD
  for (int j = j0; j < j1; ++j) {
    const T i = sigmoid(gi[j]), f = sigmoid(gf[j]), g = tanh_fast(gg[j]), o = sigmoid(go[j]);
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    const T cn = f * c_prev[j] + i * g;
    const T t = tanh_fast(cn);
    c[j] = cn;
    tc[j] = t;
    h[j] = o * t;
  }
}

// Backprop through one LSTM step for one row.
//   gh: dL/dh_t (total); gc: dL/dc_t through c_{t+1} only (in), then dL/dc_{t-1} (out).
//   dz: the 4n pre-activation gradients; may alias `gates` (each entry is read first).
// Adds ||dL/dc_t||^2 of this row to `dc_squares`, dL/dc_t being the total derivative.
template <typename T>
PYJAC_ISA_CLONES inline void lstm_vjp_row(const T* gates, const T* c_prev, const T* tc, const T* gh, T* gc,
                         T* dz, int n, int j0, int j1, CellSquares& dc_squares) {
  // dL/dc_t is not kept (gc becomes dL/dc_{t-1}), so float64 squares that may leave the
  // range are also summed at two fixed power-of-two scales, in the same pass.
  constexpr bool kScaled = sizeof(T) == sizeof(double);
  double plain = 0.0, big = 0.0, small = 0.0;
  _Pragma("omp simd reduction(+ : plain, big, small)")
  for (int j = j0; j < j1; ++j) {
    const T i = gates[j], f = gates[n + j], g = gates[2 * n + j], o = gates[3 * n + j];
    const T t = tc[j];
    const T dc = gc[j] + gh[j] * o * (T(1) - t * t);
    plain += static_cast<double>(dc) * dc;
    if constexpr (kScaled) {
      const double down = static_cast<double>(dc) * CellSquares::kDown;
      const double up = static_cast<double>(dc) * CellSquares::kUp;
      big += down * down;
      small += up * up;
    }
    const T cp = c_prev[j];
    dz[j] = dc * g * i * (T(1) - i);
    dz[n + j] = dc * cp * f * (T(1) - f);
    dz[2 * n + j] = dc * i * (T(1) - g * g);
    dz[3 * n + j] = gh[j] * t * o * (T(1) - o);
    gc[j] = dc * f;
  }
  dc_squares.plain += plain;
  dc_squares.big += big;
  dc_squares.small += small;
}

// Tangent of one LSTM step: given A = W v_h (4n entries, [A_i A_f A_g A_o]) and v_c,
// writes the new tangent (out_h, out_c).
template <typename T>
PYJAC_ISA_CLONES inline void lstm_jvp_row(const T* gates, const T* c_prev, const T* tc, const T* a, const T* vc,
                         T* out_h, T* out_c, int n, int j0, int j1) {
  PYJAC_SIMD
  for (int j = j0; j < j1; ++j) {
    const T i = gates[j], f = gates[n + j], g = gates[2 * n + j], o = gates[3 * n + j];
    const T t = tc[j];
    const T dcq = c_prev[j] * f * (T(1) - f) * a[n + j] + g * i * (T(1) - i) * a[j] +
                  i * (T(1) - g * g) * a[2 * n + j] + f * vc[j];
    out_c[j] = dcq;
    out_h[j] = t * o * (T(1) - o) * a[3 * n + j] + o * (T(1) - t * t) * dcq;
  }
}

// ---- GRU -----------------------------------------------------------------------------
// gates row: [r z n], 3n entries; hn = W_n h_{t-1} (kept for backprop).

// `gates` holds U x + b on entry and the activations [r z n] on exit; hw = W h_{t-1}.
template <typename T>
PYJAC_ISA_CLONES inline void gru_forward_row(T* gates, const T* hw, const T* h_prev, T* hn, T* h, int n, int j0,
                            int j1) {
  PYJAC_SIMD
  for (int j = j0; j < j1; ++j) {
    const T r = sigmoid(gates[j] + hw[j]);
    const T z = sigmoid(gates[n + j] + hw[n + j]);
    const T hnj = hw[2 * n + j];
    const T nn = tanh_fast(gates[2 * n + j] + r * hnj);
    gates[j] = r;
    gates[n + j] = z;
    gates[2 * n + j] = nn;
    hn[j] = hnj;
    h[j] = (T(1) - z) * nn + z * h_prev[j];
  }
}

// Backprop through one GRU step for one row.
//   dxu: gradients of the input-side pre-activations [r z n] (3n; may alias gates);
//   dhn: gradient of W_n h_{t-1} (may alias hn); gdirect: the part z * g of dL/dh_{t-1}
//   that bypasses W. The W-side pre-activation gradients are [dxu_r dxu_z dhn].
template <typename T>
PYJAC_ISA_CLONES inline void gru_vjp_row(const T* gates, const T* hn, const T* h_prev, const T* g, T* dxu, T* dhn,
                        T* gdirect, int n, int j0, int j1) {
  PYJAC_SIMD
  for (int j = j0; j < j1; ++j) {
    const T r = gates[j], z = gates[n + j], nn = gates[2 * n + j];
    const T hnj = hn[j];
    const T gj = g[j];
    const T dan = gj * (T(1) - z) * (T(1) - nn * nn);
    const T dar = dan * hnj * r * (T(1) - r);
    const T daz = gj * (h_prev[j] - nn) * z * (T(1) - z);
    gdirect[j] = gj * z;
    dxu[j] = dar;
    dxu[n + j] = daz;
    dxu[2 * n + j] = dan;
    dhn[j] = dan * r;
  }
}

// Tangent of one GRU step: a = W v (3n entries), v the incoming tangent.
template <typename T>
PYJAC_ISA_CLONES inline void gru_jvp_row(const T* gates, const T* hn, const T* h_prev, const T* a, const T* v,
                        T* out, int n, int j0, int j1) {
  PYJAC_SIMD
  for (int j = j0; j < j1; ++j) {
    const T r = gates[j], z = gates[n + j], nn = gates[2 * n + j];
    out[j] = z * v[j] + (h_prev[j] - nn) * z * (T(1) - z) * a[n + j] +
             (T(1) - z) * (T(1) - nn * nn) * (hn[j] * r * (T(1) - r) * a[j] + r * a[2 * n + j]);
  }
}

}  // namespace pyjac::detail
