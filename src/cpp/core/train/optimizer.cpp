// SGD, Adam and AdamW as torch.optim defines them (its single-tensor code path), each
// step one pass over a parameter array: clipping, weight decay, the state update and the
// parameter update fused, in the order PyTorch rounds them.
#include "pyjac/train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "common/reduce.hpp"
#include "train/parameter_passes.hpp"

namespace pyjac {
namespace {

// Everything a block needs, in the parameters' dtype (PyTorch also casts its scalars).
template <typename T>
struct Coefficients {
  T lr, momentum, weight_decay, factor, bound;
  T beta1_weight, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps, decay;
};

// The clipped gradient entry: clip(g) written back (its norm is reported), or factor g.
template <bool kByValue, typename T>
inline T clipped(T* __restrict g, std::size_t k, const Coefficients<T>& c) {
  if constexpr (kByValue) {
    g[k] = std::min(std::max(g[k], -c.bound), c.bound);
    return g[k];
  } else {
    return c.factor * g[k];
  }
}

// torch.optim.SGD: g += wd p; v = momentum v + g; p -= lr (nesterov ? g + momentum v : v).
template <bool kByValue, bool kDecay, bool kMomentum, bool kNesterov, typename T>
void sgd_block(T* __restrict p, T* __restrict v, T* __restrict g, std::size_t n,
               const Coefficients<T>& c) {
  for (std::size_t k = 0; k < n; ++k) {
    T d = clipped<kByValue>(g, k, c);
    if constexpr (kDecay) d = d + c.weight_decay * p[k];
    if constexpr (kMomentum) {
      v[k] = c.momentum * v[k] + d;
      d = kNesterov ? d + c.momentum * v[k] : v[k];
    }
    p[k] = p[k] - c.lr * d;
  }
}

// torch.optim.Adam / AdamW: m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). Adam adds wd p to g first (kL2);
// AdamW multiplies p by 1 - lr wd first (kDecoupled).
template <bool kByValue, bool kL2, bool kDecoupled, typename T>
void adam_block(T* __restrict p, T* __restrict m, T* __restrict v, T* __restrict g,
                std::size_t n, const Coefficients<T>& c) {
  for (std::size_t k = 0; k < n; ++k) {
    T d = clipped<kByValue>(g, k, c);
    if constexpr (kDecoupled) p[k] = p[k] * c.decay;
    if constexpr (kL2) d = d + c.weight_decay * p[k];
    m[k] = m[k] + c.beta1_weight * (d - m[k]);
    v[k] = v[k] * c.beta2 + c.one_minus_beta2 * (d * d);
    const T denom = std::sqrt(v[k]) / c.bias_correction2_sqrt + c.eps;
    p[k] = p[k] - c.step_size * (m[k] / denom);
  }
}

template <typename T>
Coefficients<T> coefficients(const OptimizerOptions& o, std::int64_t step, double clip_bound,
                             double norm_factor) {
  const double t = static_cast<double>(step);
  Coefficients<T> c{};
  c.lr = static_cast<T>(o.lr);
  c.momentum = static_cast<T>(o.momentum);
  c.weight_decay = static_cast<T>(o.weight_decay);
  c.factor = static_cast<T>(norm_factor);
  c.bound = static_cast<T>(clip_bound);
  c.beta1_weight = static_cast<T>(1.0 - o.beta1);
  c.beta2 = static_cast<T>(o.beta2);
  c.one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
  c.step_size = static_cast<T>(o.lr / (1.0 - std::pow(o.beta1, t)));
  c.bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(o.beta2, t)));
  c.eps = static_cast<T>(o.eps);
  c.decay = static_cast<T>(1.0 - o.lr * o.weight_decay);
  return c;
}

// The block kernel for these options, its branches made compile-time flags, applied to
// one block [k0, k0 + len).
template <bool kByValue, typename T>
void update_block(T* p, T* s1, T* s2, T* g, std::size_t len, const OptimizerOptions& o,
                  const Coefficients<T>& c) {
  const bool decay = o.weight_decay != 0.0;
  auto both = [](bool a, bool b, auto&& call) {
    if (a && b) call(std::true_type{}, std::true_type{});
    else if (a) call(std::true_type{}, std::false_type{});
    else if (b) call(std::false_type{}, std::true_type{});
    else call(std::false_type{}, std::false_type{});
  };
  if (o.kind == Optimizer::Sgd) {
    if (o.momentum == 0.0) {
      if (decay) sgd_block<kByValue, true, false, false>(p, s1, g, len, c);
      else sgd_block<kByValue, false, false, false>(p, s1, g, len, c);
      return;
    }
    both(decay, o.nesterov, [&](auto d, auto nesterov) {
      sgd_block<kByValue, decltype(d)::value, true, decltype(nesterov)::value>(p, s1, g, len, c);
    });
    return;
  }
  const bool l2 = decay && o.kind == Optimizer::Adam;
  const bool decoupled = decay && o.kind == Optimizer::AdamW;
  both(l2, decoupled, [&](auto a, auto b) {
    adam_block<kByValue, decltype(a)::value, decltype(b)::value>(p, s1, s2, g, len, c);
  });
}

}  // namespace

void check_optimizer(const OptimizerOptions& o) {
  if (!(o.lr > 0.0) || !std::isfinite(o.lr))
    throw std::invalid_argument("lr: must be a positive finite number");
  if (!(o.weight_decay >= 0.0) || !std::isfinite(o.weight_decay))
    throw std::invalid_argument("weight_decay: must be a non-negative finite number");
  if (o.kind == Optimizer::Sgd) {
    if (!(o.momentum >= 0.0 && o.momentum < 1.0))
      throw std::invalid_argument("momentum: must lie in [0, 1)");
    if (o.nesterov && o.momentum == 0.0)
      throw std::invalid_argument("nesterov: needs a momentum above 0");
    return;
  }
  if (o.momentum != 0.0 || o.nesterov)
    throw std::invalid_argument("momentum: only for optimizer 'sgd' (Adam's betas play its part)");
  if (!(o.beta1 >= 0.0 && o.beta1 < 1.0) || !(o.beta2 >= 0.0 && o.beta2 < 1.0))
    throw std::invalid_argument("betas: each must lie in [0, 1)");
  if (!(o.eps >= 0.0) || !std::isfinite(o.eps))
    throw std::invalid_argument("eps: must be a non-negative finite number");
}

int optimizer_state_arrays(const OptimizerOptions& o) {
  if (o.kind != Optimizer::Sgd) return 2;
  return o.momentum > 0.0 ? 1 : 0;
}

template <typename T>
double optimizer_step(T* p, T* state1, T* state2, T* g, std::size_t n, const OptimizerOptions& o,
                      std::int64_t step, ClipKind clip, double clip_bound, double norm_factor,
                      int n_threads) {
  if (step < 1) throw std::invalid_argument("step: counts from 1");
  const int needed = optimizer_state_arrays(o);
  if ((needed >= 1 && !state1) || (needed >= 2 && !state2))
    throw std::invalid_argument("optimizer state: missing for this optimizer");
  const bool by_value = clip == ClipKind::Value;
  const auto c = coefficients<T>(o, step, by_value ? clip_bound : 0.0,
                                 clip == ClipKind::Norm ? norm_factor : 1.0);
  const double sum_squares = detail::blocked_sum(n, n_threads, [&](std::size_t k0,
                                                                  std::size_t len) {
    T* s1 = state1 ? state1 + k0 : nullptr;
    T* s2 = state2 ? state2 + k0 : nullptr;
    if (by_value) {
      update_block<true>(p + k0, s1, s2, g + k0, len, o, c);
      return detail::row_sum_squares(g + k0, len);  // of the clipped entries
    }
    update_block<false>(p + k0, s1, s2, g + k0, len, o, c);
    return 0.0;
  });
  return by_value ? detail::row_norm(g, n, sum_squares) : 0.0;
}

template double optimizer_step<float>(float*, float*, float*, float*, std::size_t,
                                      const OptimizerOptions&, std::int64_t, ClipKind, double,
                                      double, int);
template double optimizer_step<double>(double*, double*, double*, double*, std::size_t,
                                       const OptimizerOptions&, std::int64_t, ClipKind, double,
                                       double, int);

}  // namespace pyjac
