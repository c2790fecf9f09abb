// Elementary functions for the innermost loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace pyjac::detail {

// exp, the logistic sigmoid and tanh for the activations of chains and recurrent cells.
// float32 is the dtype users time, so its versions are built on a branch-free exp that
// the compiler vectorises (libm's expf/tanhf calls are not), accurate to a few ulp;
// float64 keeps libm's.

// exp(u) for u <= 0 (every caller passes -|u| or -u^2/2): Cephes' polynomial on
// |r| <= ln2/2, and 2^n put in through the exponent bits in two halves, so that results
// in the subnormal range (u below -87) are rounded once instead of being clamped.
inline float exp_nonpositive(float u) {
  u = u < -104.0f ? -104.0f : u;  // exp(-104) rounds to 0 in float
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (u * 1.44269504088896341f + shifter) - shifter;
  const float r = (u - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t ni = static_cast<std::int32_t>(n);
  const std::int32_t n1 = ni / 2, n2 = ni - n1;  // each >= -75: normal powers of two
  const std::int32_t bits1 = (n1 + 127) << 23, bits2 = (n2 + 127) << 23;
  float scale1, scale2;
  std::memcpy(&scale1, &bits1, sizeof scale1);
  std::memcpy(&scale2, &bits2, sizeof scale2);
  return (p * scale1) * scale2;
}
inline double exp_nonpositive(double u) { return std::exp(u); }

template <typename T>
inline T sigmoid(T u) {
  const T e = exp_nonpositive(-std::abs(u));
  const T s = T(1) / (T(1) + e);
  return u >= T(0) ? s : e * s;
}

inline float tanh_fast(float u) {
  // (1 - e)/(1 + e) with e = exp(-2|u|) cancels for small |u|: the odd Taylor
  // series takes over below 1/4, where its first omitted term is < 1e-8.
  const float a = std::abs(u);
  const float a2 = u * u;
  const float series =
      u * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315 +
                                                             a2 * (62.0f / 2835 +
                                                                   a2 * (-1382.0f / 155925))))));
  const float e = exp_nonpositive(-2.0f * a);
  const float t = (1.0f - e) / (1.0f + e);
  const float big = u >= 0.0f ? t : -t;
  return a < 0.25f ? series : big;
}
inline double tanh_fast(double u) { return std::tanh(u); }

}  // namespace pyjac::detail
