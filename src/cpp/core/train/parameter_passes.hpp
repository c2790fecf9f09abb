// Passes over a parameter array in fixed blocks, shared out among threads: the same
// numbers at every thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "common/reduce.hpp"

namespace pyjac::detail {

inline constexpr std::size_t kUpdateBlock = 4096;

// f(first, length) over blocks of kUpdateBlock entries, its results summed in block
// order: the same at every thread count.
template <typename PerBlock>
double blocked_sum(std::size_t n, int n_threads, PerBlock&& f) {
  const std::size_t blocks = (n + kUpdateBlock - 1) / kUpdateBlock;
  std::vector<double> partial(blocks, 0.0);
  parallel_for(static_cast<long long>(blocks), n_threads, worth_parallel(n), [&](long long blk) {
    const std::size_t k0 = static_cast<std::size_t>(blk) * kUpdateBlock;
    partial[blk] = f(k0, std::min(kUpdateBlock, n - k0));
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

// ||w - w0|| / ||w0|| (or ||w - w0|| when w0 is 0), exact over the dtype's range.
template <typename T>
double relative_change(const T* w, const T* w0, std::size_t n, int nt) {
  const double diff_sq = blocked_sum(n, nt, [&](std::size_t k0, std::size_t len) {
    double s = 0.0;
    for (std::size_t k = k0; k < k0 + len; ++k) {
      const double d = static_cast<double>(w[k]) - w0[k];
      s += d * d;
    }
    return s;
  });
  double diff = std::sqrt(diff_sq);
  if (!plain_sum_is_exact<double>(diff_sq)) {
    ScaledNorm acc;
    for (std::size_t k = 0; k < n; ++k) acc.add(static_cast<double>(w[k]) - w0[k]);
    diff = acc.value();
  }
  const double base_sq = blocked_sum(n, nt, [&](std::size_t k0, std::size_t len) {
    return row_sum_squares(w0 + k0, len);
  });
  const double base = row_norm(w0, n, base_sq);
  return base > 0.0 ? diff / base : diff;
}

}  // namespace pyjac::detail
