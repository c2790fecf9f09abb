// Elementary functions for the innermost loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace pyjac::detail {

// exp, the logistic sigmoid and tanh for the activations of chains and recurrent cells,
// built on a branch-free exp that the compiler vectorises (libm's exp/tanh calls are not,
// and dominated small recurrent steps): within ~2 ulp in float32 and float64 alike.
// Built with -fno-trapping-math (see src/cpp/core/CMakeLists.txt), both sides of every
// select below are computed and blended.

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

// float64: u = n ln2 + r with |r| <= ln2/2 (Cody-Waite, two parts of ln2), and Cephes'
// Pade form exp(r) = (Q(r^2) + r P(r^2)) / (Q(r^2) - r P(r^2)). 2^n enters as two
// normal powers of two (n >= -1076), built from a double's exponent bits.
struct ExpParts {
  double rp, q;           // r P(r^2) and Q(r^2): exp(r) = (q + rp) / (q - rp)
  double scale1, scale2;  // 2^n = scale1 * scale2
  double num() const { return q + rp; }
  double den() const { return q - rp; }
};
inline ExpParts exp_parts_nonpositive(double u) {
  u = u < -745.5 ? -745.5 : u;  // exp(-745.5) rounds to 0
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double n = (u * 1.4426950408889634074 + shifter) - shifter;
  const double r = (u - n * 6.93145751953125E-1) - n * 1.42860682030941723212E-6;
  const double rr = r * r;
  const double px = r * ((1.26177193074810590878E-4 * rr + 3.02994407707441961300E-2) * rr +
                         9.99999999999999999910E-1);
  const double qx = ((3.00198505138664455042E-6 * rr + 2.52448340349684104192E-3) * rr +
                     2.27265548208155028766E-1) * rr + 2.00000000000000000009E0;
  const double n1 = (n * 0.5 + shifter) - shifter;  // each half >= -538
  const double k1 = (n1 + 1023.0) + shifter, k2 = ((n - n1) + 1023.0) + shifter;
  std::uint64_t b1, b2;  // the biased exponents sit in the low mantissa bits of k1, k2
  std::memcpy(&b1, &k1, sizeof b1);
  std::memcpy(&b2, &k2, sizeof b2);
  b1 = (b1 & 0x7ffULL) << 52;
  b2 = (b2 & 0x7ffULL) << 52;
  ExpParts e;
  std::memcpy(&e.scale1, &b1, sizeof b1);
  std::memcpy(&e.scale2, &b2, sizeof b2);
  e.rp = px;
  e.q = qx;
  return e;
}
inline double exp_nonpositive(double u) {
  const ExpParts e = exp_parts_nonpositive(u);
  // 1 + 2 r P / (Q - r P): more accurate than num / den, near 1.
  const double m = 1.0 + 2.0 * e.rp / e.den();
  return (m * e.scale1) * e.scale2;
}

template <typename T>
inline T sigmoid(T u) {
  const T e = exp_nonpositive(-std::abs(u));
  const T s = T(1) / (T(1) + e);
  return u >= T(0) ? s : e * s;
}
// One division: 1/(1+e) = den/(den + e') and e/(1+e) = e'/(den + e'), e' = num 2^n.
template <>
inline double sigmoid(double u) {
  const ExpParts e = exp_parts_nonpositive(-std::abs(u));
  const double scaled = (e.num() * e.scale1) * e.scale2;
  const double den = e.den();
  return (u >= 0.0 ? den : scaled) / (den + scaled);
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
inline double tanh_fast(double u) {
  // Below 0.625, Cephes' rational function of u^2 (where (1 - e)/(1 + e) would cancel):
  // u + u s P(s)/Q(s) = u (Q + s P) / Q. Above, (1 - e)/(1 + e) with e = exp(-2|u|) as
  // num 2^n / den. Numerator and denominator are selected first: one division.
  const double a = std::abs(u);
  const double s = u * u;
  const double p = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s -
                   1.61468768441708447952E3;
  const double q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s +
                   4.84406305325125486048E3;
  const ExpParts e = exp_parts_nonpositive(-2.0 * a);
  const double scaled = (e.num() * e.scale1) * e.scale2;
  const double den = e.den();
  const double big = den - scaled;
  const bool small = a < 0.625;
  const double num = small ? u * (q + s * p) : (u >= 0.0 ? big : -big);
  return num / (small ? q : den + scaled);
}

}  // namespace pyjac::detail
