// Storage emulation of 16-bit floating-point formats (float16, bfloat16) for the
// mixed-precision backward pass.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pyjac/common/types.hpp"

namespace pyjac {

struct RoundingCounts {
  std::int64_t underflow = 0;  // non-zero values that became zero
  std::int64_t overflow = 0;   // finite values that became inf
  std::int64_t zeros = 0;      // values that are zero afterwards
};

// Rounds n values in place to the nearest value of `format` (ties to even, subnormals
// kept, past the largest finite value to inf), stored back in T. Native only counts
// the zeros.
template <typename T>
RoundingCounts round_to_format(T* values, std::size_t n, GradFormat format, int n_threads);

}  // namespace pyjac
