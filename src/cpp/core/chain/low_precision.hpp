// The scalar rounding behind pyjac/precision.hpp, inline so that loops vectorise it.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "pyjac/common/types.hpp"

namespace pyjac::detail {

struct FormatSpec {
  int fraction_bits;   // explicit mantissa bits
  int min_exponent;    // exponent of the smallest normal number
  double max_finite;   // largest finite value
};

inline FormatSpec format_spec(GradFormat f) {
  switch (f) {
    case GradFormat::Float16:
      return {10, -14, 65504.0};
    case GradFormat::BFloat16:
      return {7, -126, std::ldexp(255.0, 120)};  // (2 - 2^-7) 2^127
    case GradFormat::Native:
      break;
  }
  return {0, 0, 0.0};
}

// Exact: scaling by powers of two is exact in double, so the only rounding is
// nearbyint's, in the default round-to-nearest-even mode; below the smallest normal
// the quantum stays fixed, which gives the format's subnormals.
inline double round_to_format(double x, const FormatSpec& f) {
  if (x == 0.0 || !std::isfinite(x)) return x;
  int e = 0;
  std::frexp(x, &e);  // |x| = m 2^e with m in [0.5, 1)
  const int quantum_exp = std::max(e - 1, f.min_exponent) - f.fraction_bits;
  const double r = std::ldexp(std::nearbyint(std::ldexp(x, -quantum_exp)), quantum_exp);
  if (std::fabs(r) > f.max_finite) return std::copysign(std::numeric_limits<double>::infinity(), x);
  return r;
}

}  // namespace pyjac::detail
