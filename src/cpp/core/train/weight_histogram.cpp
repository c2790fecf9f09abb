#include "pyjac/train/weight_histogram.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/reduce.hpp"
#include "pyjac/common/threads.hpp"
#include "train/parameter_passes.hpp"

namespace pyjac {
namespace {

constexpr std::size_t kHistogramBlock = std::size_t(1) << 16;

// One block's counts: bins, then below and above.
template <typename T>
void count_block(const T* w, std::size_t len, int bins, double range,
                 std::int64_t* __restrict counts) {
  // v / range lies in [-1, 1]: no overflow for ranges near the dtype's largest value, and
  // subnormal ranges divide exactly enough.
  const double half_bins = 0.5 * bins;
  for (std::size_t k = 0; k < len; ++k) {
    const double v = static_cast<double>(w[k]);
    if (v < -range) {
      ++counts[bins];
    } else if (v > range) {
      ++counts[bins + 1];
    } else if (v == v) {
      const auto bin = static_cast<int>((v / range + 1.0) * half_bins);
      ++counts[std::min(bin, bins - 1)];
    }
  }
}

}  // namespace

template <typename T>
double histogram_range(const T* w, std::size_t n, int n_threads) {
  // The largest |w| of each block, combined with max: exact at any thread count. A
  // non-finite weight gives NaN or inf, and the range falls back to 1.
  std::vector<double> block_max((n + detail::kUpdateBlock - 1) / detail::kUpdateBlock, 0.0);
  detail::parallel_for(static_cast<long long>(block_max.size()), n_threads,
                       detail::worth_parallel(n), [&](long long b) {
                         const std::size_t k0 = static_cast<std::size_t>(b) * detail::kUpdateBlock;
                         const std::size_t k1 = std::min(n, k0 + detail::kUpdateBlock);
                         double m = 0.0;
                         for (std::size_t k = k0; k < k1; ++k) {
                           const double a = std::fabs(static_cast<double>(w[k]));
                           m = (a > m || a != a) ? a : m;
                         }
                         block_max[b] = m;
                       });
  double largest = 0.0;
  for (double m : block_max) largest = (m > largest || m != m) ? m : largest;
  if (!(largest > 0.0) || !std::isfinite(largest)) return 1.0;
  const double range = 2.0 * largest;
  return std::isfinite(range) ? range : largest;
}

template <typename T>
WeightHistograms weight_histograms(const std::vector<const T*>& weights,
                                   const std::vector<std::size_t>& sizes, int bins,
                                   std::vector<double> ranges, int n_threads) {
  const std::size_t L = weights.size();
  if (bins < 1 || bins > 100000) throw std::invalid_argument("bins: must lie in [1, 100000]");
  if (sizes.size() != L) throw std::invalid_argument("weights: one size per layer is required");
  if (!ranges.empty() && ranges.size() != L)
    throw std::invalid_argument("ranges: one per layer is required");
  for (double r : ranges)
    if (!(r > 0.0) || !std::isfinite(r))
      throw std::invalid_argument("ranges: each must be a positive finite number");
  const int nt = resolve_threads(n_threads);
  if (ranges.empty())
    for (std::size_t l = 0; l < L; ++l) ranges.push_back(histogram_range(weights[l], sizes[l], nt));

  // Every (layer, block) item counts into its own row; rows are summed per layer.
  std::vector<std::size_t> first_item(L + 1, 0);
  for (std::size_t l = 0; l < L; ++l)
    first_item[l + 1] = first_item[l] + (sizes[l] + kHistogramBlock - 1) / kHistogramBlock;
  const std::size_t items = first_item[L];
  const std::size_t row = static_cast<std::size_t>(bins) + 2;
  std::vector<std::int64_t> partial(items * row, 0);
  std::size_t total = 0;
  for (std::size_t n : sizes) total += n;
  detail::parallel_for(static_cast<long long>(items), nt, detail::worth_parallel(total),
                       [&](long long item) {
                         const auto i = static_cast<std::size_t>(item);
                         const std::size_t l = static_cast<std::size_t>(
                             std::upper_bound(first_item.begin(), first_item.end(), i) -
                             first_item.begin() - 1);
                         const std::size_t k0 = (i - first_item[l]) * kHistogramBlock;
                         count_block(weights[l] + k0, std::min(kHistogramBlock, sizes[l] - k0),
                                     bins, ranges[l], partial.data() + i * row);
                       });
  WeightHistograms h;
  h.bins = bins;
  h.ranges = ranges;
  h.counts.assign(L * bins, 0);
  h.outside.assign(L * 2, 0);
  for (std::size_t l = 0; l < L; ++l)
    for (std::size_t i = first_item[l]; i < first_item[l + 1]; ++i) {
      const std::int64_t* p = partial.data() + i * row;
      for (int b = 0; b < bins; ++b) h.counts[l * bins + b] += p[b];
      h.outside[2 * l] += p[bins];
      h.outside[2 * l + 1] += p[bins + 1];
    }
  return h;
}

#define PYJAC_INSTANTIATE(T)                                                              \
  template double histogram_range<T>(const T*, std::size_t, int);                         \
  template WeightHistograms weight_histograms<T>(const std::vector<const T*>&,            \
                                                 const std::vector<std::size_t>&, int,    \
                                                 std::vector<double>, int);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac
