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

// out = (d^2 L / dh_L^2) rh for the same losses (rh, out: batch x n): the identity for
// sum_squares, 2 / (batch n) for mse, the softmax's (diag(p) - p p^T) / batch per example
// for cross_entropy, and zero for a given grad_output (the loss is linear in h_L).
template <typename T>
void loss_hessian_product(Loss loss, const T* h, int batch, int n, const T* rh, T* out,
                          int n_threads);

}  // namespace pyjac::detail
