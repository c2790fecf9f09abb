// Deterministic reductions: partial sums per row in parallel, then a serial sum in
// a fixed order, so the result is the same at every thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace pyjac::detail {

// Below this many elements a parallel region costs more than it saves.
inline constexpr std::size_t kParallelThreshold = 1 << 15;

inline bool worth_parallel(std::size_t work) { return work >= kParallelThreshold; }

struct NormResult {
  double norm;
  bool finite;  // every element finite
};

// Frobenius norm of a (rows x cols) row-major block, accumulated in double. When the
// sum of squares overflows although every element is finite (float64 values beyond
// 1e154), it is recomputed with scaling so the norm stays exact.
template <typename T>
NormResult frobenius_norm(const T* a, std::size_t rows, std::size_t cols, int n_threads,
                          double* row_sq = nullptr) {
  std::vector<double> local;
  if (!row_sq) {
    local.resize(rows);
    row_sq = local.data();
  }
  const long long nrows = static_cast<long long>(rows);
#pragma omp parallel for num_threads(n_threads) if (worth_parallel(rows * cols)) schedule(static)
  for (long long i = 0; i < nrows; ++i) {
    const T* r = a + static_cast<std::size_t>(i) * cols;
    double s = 0.0;
    for (std::size_t j = 0; j < cols; ++j) s += static_cast<double>(r[j]) * r[j];
    row_sq[i] = s;
  }
  double total = 0.0;
  for (std::size_t i = 0; i < rows; ++i) total += row_sq[i];
  if (std::isfinite(total)) return {std::sqrt(total), true};
  const std::size_t n = rows * cols;
  double scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(static_cast<double>(a[i])))
      return {std::isnan(static_cast<double>(a[i])) ? NAN : INFINITY, false};
    scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  }
  double scaled = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(a[i]) / scale;
    scaled += v * v;
  }
  return {scale * std::sqrt(scaled), true};
}

}  // namespace pyjac::detail
