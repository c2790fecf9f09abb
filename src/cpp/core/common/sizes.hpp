// Byte counts of workspaces, in 64 bits with saturation: a size past int64 reads as its
// maximum, which every memory check then refuses, instead of wrapping to a small or
// negative number that one would accept.
#pragma once

#include <cstdint>
#include <limits>

namespace pyjac::detail {

inline constexpr std::int64_t kSizeMax = std::numeric_limits<std::int64_t>::max();

inline std::int64_t sat_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? kSizeMax : r;
}

inline std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? kSizeMax : r;
}

template <typename... Rest>
std::int64_t sat_mul(std::int64_t a, std::int64_t b, Rest... rest) {
  return sat_mul(sat_mul(a, b), static_cast<std::int64_t>(rest)...);
}

}  // namespace pyjac::detail
