// Gradient noise from the per-example weight-gradient norms the backward pass already
// has: no extra products.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace pyjac::detail {

// For each layer (row l of per_example, (depth, batch), holding ||c_i|| for the
// example shares c_i of the batch gradient G = sum_i c_i, and total[l] = ||G||): with
// g_i the per-example gradients (c_i up to one factor common to the batch, which the
// ratios do not see), g_bar their mean and S their sample covariance,
//   noise scale   tr(S) / ||g_bar||^2  (McCandlish et al. 2018's B_simple, from this batch)
//   SNR           ||g_bar||^2 / (tr(S) / B)  (the batch gradient's signal to its noise)
// where B tr(S) (B - 1) / B^2 = sum ||c_i||^2 - ||G||^2 / B, up to that factor. When
// that difference is within the rounding of ||G|| (computed in T), the examples agree
// to within what the pass resolves, and both are NaN; so are layers whose norms left
// float64's range.
template <typename T>
void gradient_noise(const std::vector<double>& per_example, const std::vector<double>& total,
                    int batch, std::vector<double>& scale, std::vector<double>& snr) {
  const std::size_t depth = total.size();
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  scale.assign(depth, kNaN);
  snr.assign(depth, kNaN);
  if (batch < 2 || per_example.size() != depth * static_cast<std::size_t>(batch)) return;
  const double b = batch;
  const double resolution =
      8.0 * std::sqrt(b) * static_cast<double>(std::numeric_limits<T>::epsilon());
  for (std::size_t l = 0; l < depth; ++l) {
    const double* c = per_example.data() + l * batch;
    double largest = 0.0;
    for (int i = 0; i < batch; ++i) largest = std::max(largest, c[i]);
    if (!(largest > 0.0) || !std::isfinite(largest) || !std::isfinite(total[l])) continue;
    // Relative to the largest share, so that no square leaves the range.
    double sum_sq = 0.0;
    for (int i = 0; i < batch; ++i) sum_sq += (c[i] / largest) * (c[i] / largest);
    const double g = total[l] / largest;
    const double spread = b * sum_sq - g * g;  // = B^2 (B-1)/B tr(S) / (B^2 factor^2)
    if (!(spread > resolution * b * sum_sq)) continue;
    scale[l] = b * spread / ((b - 1.0) * g * g);
    snr[l] = (b - 1.0) * g * g / spread;
  }
}

}  // namespace pyjac::detail
