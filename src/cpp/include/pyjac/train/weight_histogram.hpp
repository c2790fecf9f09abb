// Histograms of every layer's weights on bins fixed for the whole run, so that epochs
// can be compared bin by bin ("if the early layers' histograms don't move, gradients
// aren't reaching them").
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace pyjac {

struct WeightHistograms {
  int bins = 0;
  std::vector<double> ranges;        // per layer: the bins split [-range, range] evenly
  std::vector<std::int64_t> counts;  // (layers, bins), row-major
  std::vector<std::int64_t> outside; // (layers, 2): below -range, above range
};

// A layer's range: twice its largest |w| (1 when every weight is 0 or one is not
// finite; the largest |w| itself when twice it overflows), so that the initial
// weights fill the middle half and later ones have room.
template <typename T>
double histogram_range(const T* w, std::size_t n, int n_threads);

// Counts layer l's n[l] weights into `bins` even bins over [-ranges[l], ranges[l]]
// (the upper edge belongs to the last bin); an empty `ranges` takes histogram_range of
// each layer. NaN weights are counted nowhere. Counts are exact at any thread count.
template <typename T>
WeightHistograms weight_histograms(const std::vector<const T*>& weights,
                                   const std::vector<std::size_t>& sizes, int bins,
                                   std::vector<double> ranges, int n_threads);

}  // namespace pyjac
