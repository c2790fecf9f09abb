// The update rules of training, with PyTorch's definitions so that a run can be checked
// step by step against torch.optim: SGD (momentum, Nesterov, L2 weight decay), Adam (L2
// weight decay added to the gradient) and AdamW (decoupled weight decay), with bias
// correction and epsilon outside the square root. No dampening, no amsgrad.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pyjac/common/types.hpp"

namespace pyjac {

struct OptimizerOptions {
  Optimizer kind = Optimizer::Sgd;
  double lr = 0.01;
  double momentum = 0.0;      // SGD: v = momentum v + g; W -= lr v
  bool nesterov = false;      // SGD: W -= lr (g + momentum v)
  double weight_decay = 0.0;  // SGD, Adam: g += wd W. AdamW: W *= 1 - lr wd first
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam, AdamW
};

// Throws std::invalid_argument naming the option (lr, momentum, betas, eps, ...).
void check_optimizer(const OptimizerOptions& o);

// State arrays each parameter array needs, each of its shape: 0 (plain SGD), 1 (SGD with
// momentum: the velocity) or 2 (Adam and AdamW: the first and second moments).
int optimizer_state_arrays(const OptimizerOptions& o);

// One update of the n parameters p from their gradient g. `step` counts the updates of
// this parameter so far, this one included (Adam's bias correction). Clipping comes
// first, as torch.nn.utils.clip_grad_* before optimizer.step(): ClipKind::Value clips g
// in place and returns ||clip(g)||; otherwise g is only read, times norm_factor (the
// global-norm clipping factor, 1 without clipping), and 0 is returned. The same numbers
// at every thread count.
template <typename T>
double optimizer_step(T* p, T* state1, T* state2, T* g, std::size_t n, const OptimizerOptions& o,
                      std::int64_t step, ClipKind clip, double clip_bound, double norm_factor,
                      int n_threads);

}  // namespace pyjac
