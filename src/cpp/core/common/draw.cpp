// Compiled with -ffp-contract=off (CMakeLists.txt): a fused multiply-add would round
// differently from the separate operations, and the vector clones would then disagree
// with the scalar code and with other machines.
#include "pyjac/common/draw.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/simd.hpp"
#include "pyjac/common/rng.hpp"

namespace pyjac {
namespace {

inline double from_bits(std::uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

inline std::uint64_t to_bits(double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return bits;
}

// A signed integer |i| < 2^51 as a double, exactly, without an int-to-double instruction
// (SSE2 and AVX2 have none for 64-bit lanes): 1.5 * 2^52 + i has i in its low mantissa bits.
inline double small_int(std::int64_t i) {
  return from_bits(0x4338000000000000ULL + static_cast<std::uint64_t>(i)) -
         6755399441055744.0;
}

// ln(u) for u in (0, 1], as fdlibm's __ieee754_log evaluates it (|error| < 1 ulp).
inline double log_unit(double u) {
  const std::uint64_t bits = to_bits(u);
  std::int64_t k = static_cast<std::int64_t>(bits >> 52) - 1023;
  double m = from_bits((bits & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL);  // [1, 2)
  const bool high = m > 1.4142135623730951;  // reduce to [sqrt(2)/2, sqrt(2))
  m = high ? 0.5 * m : m;
  k = high ? k + 1 : k;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double r =
      z * (6.666666666666735130e-01 +
           z * (3.999999999940941908e-01 +
                z * (2.857142874366239149e-01 +
                     z * (2.222219843214978396e-01 +
                          z * (1.818357216161805012e-01 +
                               z * (1.531383769920937332e-01 + z * 1.479819860511658591e-01))))));
  const double hfsq = 0.5 * f * f;
  const double dk = small_int(k);
  return dk * 6.93147180369123816490e-01 -
         ((hfsq - (s * (hfsq + r) + dk * 1.90821492927058770002e-10)) - f);
}

// sin and cos on [-pi/4, pi/4] (fdlibm's kernel polynomials).
inline double sin_kernel(double x) {
  const double z = x * x;
  return x + x * z *
                 (-1.66666666666666324348e-01 +
                  z * (8.33333333332248946124e-03 +
                       z * (-1.98412698298579493134e-04 +
                            z * (2.75573137070700676789e-06 +
                                 z * (-2.50507602534068634195e-08 +
                                      z * 1.58969099521155010221e-10)))));
}

inline double cos_kernel(double x) {
  const double z = x * x;
  return 1.0 - 0.5 * z +
         z * z *
             (4.16666666666666019037e-02 +
              z * (-1.38888888888741095749e-03 +
                   z * (2.48015872894767294178e-05 +
                        z * (-2.75573143513906633035e-07 +
                             z * (2.08757232129817482790e-09 +
                                  z * -1.13596475577881948265e-11)))));
}

inline void box_muller(std::uint64_t x1, std::uint64_t x2, double& first, double& second) {
  // u1 = (2m + 1) 2^-53 with m the top 52 bits: exact, and never 0.
  const double u1 =
      (from_bits((x1 >> 12) | 0x3FF0000000000000ULL) - 1.0) + 1.1102230246251565e-16;
  const double r = std::sqrt(-2.0 * log_unit(u1));
  // t = m2 2^-52 turns; 4t = q + d 2^-50 with q the nearest quarter turn, |d| <= 2^49:
  // the angle within the quadrant is d (pi/2) 2^-50, in [-pi/4, pi/4].
  const std::uint64_t m2 = x2 >> 12;
  const std::uint64_t q = (m2 + (1ULL << 49)) >> 50;
  const std::int64_t d = static_cast<std::int64_t>(m2 - (q << 50));
  const double a = small_int(d) * 1.3951473992034527e-15;  // (pi / 2) 2^-50
  const double s = sin_kernel(a), c = cos_kernel(a);
  const bool swap = (q & 1) != 0;
  const double sin_t = ((q & 2) != 0 ? -1.0 : 1.0) * (swap ? c : s);
  const double cos_t = (((q + 1) & 2) != 0 ? -1.0 : 1.0) * (swap ? s : c);
  first = r * cos_t;
  second = r * sin_t;
}

// Pairs [p0, p0 + n) into two arrays; the vector unit the machine has does the work.
PYJAC_ISA_CLONES
void pairs(std::uint64_t state, std::uint64_t p0, int n, double* first, double* second) {
  PYJAC_SIMD
  for (int i = 0; i < n; ++i) {
    const std::uint64_t k = 2 * (p0 + static_cast<std::uint64_t>(i));
    box_muller(splitmix_mix(state + (k + 1) * kSplitmixIncrement),
               splitmix_mix(state + (k + 2) * kSplitmixIncrement), first[i],
               second[i]);
  }
}

// Interleaves a block of pairs into out: a[i] to entry 2i, b[i] to 2i + 1, both scaled.
template <typename T>
void interleave(const double* a, const double* b, int n, double scale, T* out) {
  PYJAC_SIMD
  for (int i = 0; i < n; ++i) {
    out[2 * i] = static_cast<T>(scale * a[i]);
    out[2 * i + 1] = static_cast<T>(scale * b[i]);
  }
}

template <typename T>
void fill(std::uint64_t state, std::uint64_t first, std::size_t count, double scale, T* out) {
  constexpr int kBlock = 256;
  double a[kBlock], b[kBlock];
  const std::uint64_t p_begin = first / 2;
  const std::size_t full_pairs = count / 2;
  for (std::size_t done = 0; done < full_pairs; done += kBlock) {
    const int n = static_cast<int>(std::min<std::size_t>(kBlock, full_pairs - done));
    pairs(state, p_begin + done, n, a, b);
    interleave(a, b, n, scale, out + 2 * done);
  }
  if (count % 2 == 1) {  // the last entry alone: the first of its pair
    pairs(state, p_begin + full_pairs, 1, a, b);
    out[count - 1] = static_cast<T>(scale * a[0]);
  }
}

}  // namespace

void normal_pair(std::uint64_t x1, std::uint64_t x2, double& first, double& second) {
  box_muller(x1, x2, first, second);
}

void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  float* out) {
  fill(state, first, count, scale, out);
}

void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  double* out) {
  fill(state, first, count, scale, out);
}

}  // namespace pyjac
