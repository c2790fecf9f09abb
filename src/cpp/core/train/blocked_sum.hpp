// Elementwise passes over a parameter array in fixed blocks, shared out among threads.
#pragma once

#include <algorithm>
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

}  // namespace pyjac::detail
