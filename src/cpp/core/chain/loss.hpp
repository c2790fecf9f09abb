// Output losses and their gradient dL/dh_L.
#pragma once

#include <cstdint>

#include "pyjac/common/types.hpp"

namespace pyjac::detail {

// Writes dL/dh_L (batch x n) to grad and returns the loss (NaN for GradOutput).
//   sum_squares: 0.5 * sum h^2
//   mse:         mean over every entry of (h - target)^2 (PyTorch's reduction="mean")
//   cross_entropy: mean over the batch of -log softmax(h)[label]
template <typename T>
double loss_and_gradient(Loss loss, const T* h, int batch, int n, const T* target,
                         const std::int64_t* labels, T* grad, int n_threads);

}  // namespace pyjac::detail
