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

inline float from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline std::uint32_t to_bits(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// -2 ln u for u = (n + 1/2) 2^-31, 0 <= n < 2^31, as fdlibm's logf evaluates ln (within
// 2.5 ulp). The 2^-31 goes into the exponent, so u keeps its relative precision down to
// 2^-32 and the radius reaches sqrt(64 ln 2) = 6.66.
inline float minus_two_log_unit(std::int32_t n) {
  const float v = static_cast<float>(n) + 0.5f;  // rounded to 24 bits from here on
  // The mantissa moved into [sqrt(2)/2, sqrt(2)) by integer arithmetic alone (as musl's
  // logf does), which spares a compare and a select per lane.
  const std::uint32_t shifted = to_bits(v) + (0x3F800000u - 0x3F3504F3u);
  const float k = static_cast<float>(static_cast<std::int32_t>(shifted >> 23) - 127 - 31);
  // For u >= sqrt(2)/2 (k = 0), f = u - 1 = -(2^31 - 1/2 - n) 2^-31 straight from the
  // integer: the rounded v would leave a small f (a small radius) no correct bits.
  const float f = k == 0.0f
                      ? (static_cast<float>(0x7FFFFFFF - n) + 0.5f) * -0x1.0p-31f
                      : from_bits((shifted & 0x007FFFFFu) + 0x3F3504F3u) - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float w = z * z;
  const float odd = w * (0.40000972152f + w * 0.24279078841f);
  const float even = z * (0.66666662693f + w * 0.28498786688f);
  const float half_f2 = 0.5f * f * f;
  // ln 2 = 6.9313812256e-01 + 9.0580006145e-06, the first part exact times any k here.
  const float ln = k * 6.9313812256e-01f -
                   ((half_f2 - (s * (half_f2 + (even + odd)) + k * 9.0580006145e-06f)) - f);
  return -2.0f * ln;
}

inline void box_muller(std::uint64_t x, float& first, float& second) {
  const float r = std::sqrt(minus_two_log_unit(static_cast<std::int32_t>(x >> 33)));
  // t = m 2^-32 turns; 4t = q + d 2^-30 with q the nearest quarter turn, |d| <= 2^29:
  // the angle within the quadrant is d (pi/2) 2^-30, in [-pi/4, pi/4].
  const std::uint32_t m = static_cast<std::uint32_t>(x);
  const std::uint32_t q = (m + (1u << 29)) >> 30;
  const std::int32_t d = static_cast<std::int32_t>(m - (q << 30));
  const float a = static_cast<float>(d) * 1.46291808e-9f;  // (pi / 2) 2^-30
  const float a2 = a * a;
  // Cephes' sinf and cosf polynomials on [-pi/4, pi/4].
  const float s =
      ((-1.9515295891e-4f * a2 + 8.3321608736e-3f) * a2 - 1.6666654611e-1f) * a2 * a + a;
  const float c = ((2.443315711809948e-5f * a2 - 1.388731625493765e-3f) * a2 +
                   4.166664568298827e-2f) * a2 * a2 - 0.5f * a2 + 1.0f;
  // Quadrant q: sin t = +-(s or c), cos t = +-(c or s); the signs go in as bits.
  const bool swap = (q & 1u) != 0;
  const float sin_t = from_bits(to_bits(swap ? c : s) ^ ((q & 2u) << 30));
  const float cos_t = from_bits(to_bits(swap ? s : c) ^ (((q + 1u) & 2u) << 30));
  first = r * cos_t;
  second = r * sin_t;
}

// Pairs [p0, p0 + n) into two arrays; the vector unit the machine has does the work.
PYJAC_ISA_CLONES
void pairs(std::uint64_t state, std::uint64_t p0, int n, float* first, float* second) {
  // The counter of pair p0 + i is state + (p0 + i + 1) * increment: an induction variable
  // (linear), so the vector loop adds to it instead of multiplying 64-bit lanes again.
  std::uint64_t counter = state + (p0 + 1) * kSplitmixIncrement;
#pragma omp simd linear(counter : kSplitmixIncrement)
  for (int i = 0; i < n; ++i) {
    box_muller(splitmix_mix(counter), first[i], second[i]);
    counter += kSplitmixIncrement;
  }
}

// Interleaves a block of pairs into out: a[i] to entry 2i, b[i] to 2i + 1, both scaled
// in double and rounded once to T.
template <typename T>
PYJAC_ISA_CLONES void interleave(const float* a, const float* b, int n, double scale, T* out) {
  PYJAC_SIMD
  for (int i = 0; i < n; ++i) {
    out[2 * i] = static_cast<T>(scale * static_cast<double>(a[i]));
    out[2 * i + 1] = static_cast<T>(scale * static_cast<double>(b[i]));
  }
}

template <typename T>
void fill(std::uint64_t state, std::uint64_t first, std::size_t count, double scale, T* out) {
  constexpr int kBlock = 512;
  alignas(64) float a[kBlock], b[kBlock];
  if (count > 0 && first % 2 == 1) {  // the second of a pair first
    pairs(state, first / 2, 1, a, b);
    *out++ = static_cast<T>(scale * static_cast<double>(b[0]));
    ++first;
    --count;
  }
  const std::uint64_t p_begin = first / 2;
  const std::size_t full_pairs = count / 2;
  for (std::size_t done = 0; done < full_pairs; done += kBlock) {
    const int n = static_cast<int>(std::min<std::size_t>(kBlock, full_pairs - done));
    pairs(state, p_begin + done, n, a, b);
    interleave(a, b, n, scale, out + 2 * done);
  }
  if (count % 2 == 1) {  // the last entry alone: the first of its pair
    pairs(state, p_begin + full_pairs, 1, a, b);
    out[count - 1] = static_cast<T>(scale * static_cast<double>(a[0]));
  }
}

}  // namespace

void normal_pair(std::uint64_t x, double& first, double& second) {
  float a, b;
  box_muller(x, a, b);
  first = a;
  second = b;
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
