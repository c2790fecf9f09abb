// Forward and backward pass through a feed-forward chain in one call: the entry points,
// and the layer-at-a-time pass that the norm layers need (they normalise over whole rows
// or whole columns); chains without norm layers go through chain_tiled.cpp.
#include "pyjac/chain/chain.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <omp.h>
#include <string>

#include "chain/chain_common.hpp"
#include "chain/gradient_noise.hpp"
#include "chain/loss.hpp"
#include "chain/layerwise_backprop.hpp"
#include "chain/norm_layers.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/chain/precision.hpp"
#include "pyjac/common/threads.hpp"
#include "common/reduce.hpp"
#include "common/sizes.hpp"
#include "common/tiled_blas.hpp"

namespace pyjac {
namespace {

using layerwise::Buffer;
using layerwise::forward_layer;
using layerwise::LayerwiseBackprop;
using layerwise::make_buffer;
using layerwise::needs_preactivations;
using layerwise::Scratch;


template <typename T>
void check_chain_and_batch(const ChainView<T>& c, int batch) {
  c.validate();
  if (batch < 1) throw std::invalid_argument("x: batch must be at least 1");
  if (c.norm == Norm::BatchNorm && batch < 2)
    throw std::invalid_argument("x: norm='batchnorm' needs a batch of at least 2 examples");
}

}  // namespace

template <typename T>
void ChainView<T>::validate() const {
  const int d = depth();
  if (d < 1) throw std::invalid_argument("depth must be at least 1");
  if (static_cast<int>(widths.size()) != d + 1)
    throw std::invalid_argument("widths must have depth + 1 entries");
  if (static_cast<int>(biases.size()) != d || static_cast<int>(activations.size()) != d)
    throw std::invalid_argument("biases and activations need one entry per layer");
  for (int w : widths)
    if (w < 1) throw std::invalid_argument("every width must be at least 1");
  if (source) return;
  for (int l = 0; l < d; ++l)
    if (!weights[l] || !biases[l]) throw std::invalid_argument("weights: missing layer");
}

std::int64_t backprop_workspace_bytes(const std::vector<int>& widths, int batch, int dtype_size,
                                      bool store_preactivations) {
  using detail::sat_add;
  using detail::sat_mul;
  std::int64_t per_example = 0, widest = 0;
  for (std::size_t l = 1; l < widths.size(); ++l) {
    per_example = sat_add(per_example, sat_mul(widths[l], store_preactivations ? 2 : 1));
    widest = std::max<std::int64_t>(widest, widths[l]);
  }
  widest = std::max<std::int64_t>(widest, widths[0]);
  // Two slabs each for dL/dh and dL/dz; where some layer takes the ghost norm, two more
  // for prescaled Gram inputs and four Gram matrices (chain_tiled.cpp; the layer-at-a-time
  // pass takes it in fewer cases and needs fewer). A big batch through narrow layers
  // forms dW instead and needs no batch x batch memory.
  bool ghost = false;
  for (std::size_t l = 1; l < widths.size(); ++l)
    ghost |= detail::ghost_norm_preferred(batch, widths[l - 1], widths[l]);
  const std::int64_t slabs = ghost ? 6 : 4;
  const std::int64_t grams = ghost ? sat_mul(4, batch, batch) : 0;
  return sat_mul(dtype_size,
                 sat_add(sat_mul(batch, sat_add(per_example, sat_mul(slabs, widest))), grams));
}

namespace detail {

template <typename T>
void check_backprop_arguments(const ChainView<T>& c, int batch, const T* target,
                              const std::int64_t* labels, const BackpropOptions& o,
                              const BackpropOutputs<T>& out) {
  check_chain_and_batch(c, batch);
  if ((o.loss == Loss::Mse || o.loss == Loss::GradOutput) && !target)
    throw std::invalid_argument("target: required by this loss");
  const int L = c.depth();
  const int n_last = c.widths[L];
  if (o.loss == Loss::CrossEntropy) {
    if (!labels) throw std::invalid_argument("target: cross_entropy needs integer labels");
    for (int i = 0; i < batch; ++i)
      if (labels[i] < 0 || labels[i] >= n_last)
        throw std::invalid_argument("target: label " + std::to_string(labels[i]) +
                                    " out of range [0, " + std::to_string(n_last) + ")");
  }
  // The loss gradient is multiplied by loss_scale in T, and every norm by its inverse:
  // both must be normal numbers of T, or the scaling itself rounds.
  constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
  constexpr double hi = static_cast<double>(std::numeric_limits<T>::max());
  if (!(o.loss_scale >= lo && o.loss_scale <= hi && 1.0 / o.loss_scale >= lo &&
        1.0 / o.loss_scale <= hi)) {
    char msg[200];
    std::snprintf(msg, sizeof msg,
                  "loss_scale: must lie in [%.3g, %.3g] (it and its inverse normal in the "
                  "chain's dtype), got %.3g",
                  std::max(lo, 1.0 / hi), std::min(hi, 1.0 / lo), o.loss_scale);
    throw std::invalid_argument(msg);
  }
  if (o.keep_grads && (static_cast<int>(out.weight_grads.size()) != L ||
                       static_cast<int>(out.bias_grads.size()) != L))
    throw std::invalid_argument("keep_grads: one destination per layer is required");
  if (o.keep_grads && c.source)
    throw std::invalid_argument("keep_grads: a chain that does not store its weights does not "
                                "keep their gradients either (depth weight-sized arrays)");
  if (o.keep_grads && !o.weight_grads)
    throw std::invalid_argument("keep_grads: keeps the weight gradients, which "
                                "weight_grads=false skips");
}

BackpropStats empty_stats(int L, int batch) {
  BackpropStats s;
  s.grad_norm.assign(L + 1, 0.0);
  s.activation_norm.assign(L + 1, 0.0);
  s.weight_grad_norm.assign(L, 0.0);
  s.bias_grad_norm.assign(L, 0.0);
  s.log_grad_norm.assign(L + 1, -std::numeric_limits<double>::infinity());
  s.log_weight_grad_norm.assign(L, -std::numeric_limits<double>::infinity());
  s.log_bias_grad_norm.assign(L, -std::numeric_limits<double>::infinity());
  s.per_example_weight_grad_norm.assign(static_cast<std::size_t>(L) * batch, 0.0);
  s.derivative_mean.assign(L, 0.0);
  s.saturated_fraction.assign(L, 0.0);
  s.dead_fraction.assign(L, 0.0);
  s.underflow_count.assign(L + 1, 0);
  s.overflow_count.assign(L + 1, 0);
  s.zero_count.assign(L + 1, 0);
  s.dz_underflow_count.assign(L, 0);
  s.dz_overflow_count.assign(L, 0);
  return s;
}

template <typename T>
double start_backward(const BackpropOptions& o, const T* h_last, int batch, int n_last,
                      const T* target, const std::int64_t* labels, T* g, BackpropStats& s,
                      int nt) {
  const int L = static_cast<int>(s.grad_norm.size()) - 1;
  const std::size_t n = static_cast<std::size_t>(batch) * n_last;
  s.loss = loss_and_gradient(o.loss, h_last, batch, n_last, target, labels, g, nt);
  // Everything backwards carries the loss scale; norms are divided by it when stored.
  if (o.loss_scale != 1.0) {
    const T factor = static_cast<T>(o.loss_scale);
    for (std::size_t k = 0; k < n; ++k) g[k] *= factor;
  }
  if (o.count_rounding || o.grad_format != GradFormat::Native) {
    const auto counts = round_to_format(g, n, o.grad_format, nt);
    s.underflow_count[L] = counts.underflow;
    s.overflow_count[L] = counts.overflow;
    s.zero_count[L] = counts.zeros;
  }
  const auto gn = frobenius_norm(g, batch, n_last, nt);
  store_norm(gn.norm, 0, 1.0 / o.loss_scale, s.grad_norm[L], s.log_grad_norm[L]);
  if (!std::isfinite(s.grad_norm[L])) record_nonfinite(s, L, 2);
  record_underflow(s, L);
  return gn.norm;
}

}  // namespace detail

template <typename T>
BackpropStats backprop(const ChainView<T>& c, const T* x, int batch, const T* target,
                       const std::int64_t* labels, const BackpropOptions& o,
                       const BackpropOutputs<T>& out) {
  detail::check_backprop_arguments(c, batch, target, labels, o, out);
  // Layers below ~98k float32 multiply-adds finish in a few microseconds, less than the
  // barrier that a second thread adds to each of them. 1000 layers of width 64 on 2 cores:
  // batch 8 (33k) 6.6-7.9 ms on one thread, 13-14 on two; batch 16 (66k) 11-12 vs 13-15;
  // batch 24 (98k) even; batch 31 (127k) 26-28 vs 21-23. The tiles are fixed by the
  // shapes, so the numbers are the same either way.
  double widest_layer = 0.0;
  for (int l = 0; l < c.depth(); ++l)
    widest_layer = std::max(widest_layer, static_cast<double>(batch) * c.widths[l] *
                                              c.widths[l + 1] * sizeof(T) / 4.0);
  const int asked = resolve_threads(o.n_threads);  // checked even when not used
  const int nt = widest_layer < (3 << 15) ? 1 : asked;
  BackpropStats s;
  if (c.source) {
    // Drawn layer by layer: the layer-at-a-time pass, with checkpoints.
    BlasThreadScope blas_scope(1);
    s = LayerwiseBackprop<T>(c, x, batch, o, out, nt, c.source->checkpoint_interval(batch))
            .run(target, labels);
  } else if (c.norm == Norm::None) {
    s = detail::backprop_tiled(c, x, batch, target, labels, o, out, nt);
  } else {
    // Every GEMM below runs as fixed single-threaded tiles shared out by OpenMP (see
    // tiled_blas.hpp), so BLAS stays at one thread for the whole pass.
    BlasThreadScope blas_scope(1);
    s = LayerwiseBackprop<T>(c, x, batch, o, out, nt).run(target, labels);
  }
  if (!o.weight_grads) {
    for (auto* v : {&s.weight_grad_norm, &s.bias_grad_norm, &s.log_weight_grad_norm,
                    &s.log_bias_grad_norm, &s.per_example_weight_grad_norm})
      v->clear();
  } else if (c.norm != Norm::BatchNorm) {
    // Batch statistics tie the examples together: no per-example gradients there.
    detail::gradient_noise<T>(s.per_example_weight_grad_norm, s.weight_grad_norm, batch,
                              s.gradient_noise_scale, s.gradient_snr);
  }
  return s;
}

template <typename T>
void forward(const ChainView<T>& c, const T* x, int batch, T* out, int n_threads) {
  check_chain_and_batch(c, batch);
  const int nt = resolve_threads(n_threads);
  if (c.norm == Norm::None && !c.source) return detail::forward_tiled(c, x, batch, out, nt);
  BlasThreadScope blas_scope(1);
  int widest = 0;
  for (int w : c.widths) widest = std::max(widest, w);
  const std::size_t slab = static_cast<std::size_t>(batch) * widest;
  // Two slabs alternate as input and output; a third holds pre-activations where the
  // output cannot overwrite them in place.
  Buffer<T> a = make_buffer<T>(slab), b = make_buffer<T>(slab), u = make_buffer<T>(slab);
  Buffer<T> inv_std = make_buffer<T>(static_cast<std::size_t>(std::max(batch, widest)));
  std::vector<double> row_sq(batch);
  Scratch ws(batch, widest);
  const T* h_in = x;
  for (int l = 0; l < c.depth(); ++l) {
    check_interrupt();
    T* h_out = (l % 2 == 0) ? a.get() : b.get();
    T* pre = needs_preactivations(c, l) ? u.get() : h_out;
    forward_layer(c, l, batch, h_in, pre, h_out, inv_std.get(), row_sq.data(), ws, nt);
    h_in = h_out;
  }
  std::memcpy(out, h_in, sizeof(T) * static_cast<std::size_t>(batch) * c.widths.back());
}

template struct ChainView<float>;
template struct ChainView<double>;
namespace detail {
template void check_backprop_arguments<float>(const ChainView<float>&, int, const float*,
                                              const std::int64_t*, const BackpropOptions&,
                                              const BackpropOutputs<float>&);
template void check_backprop_arguments<double>(const ChainView<double>&, int, const double*,
                                               const std::int64_t*, const BackpropOptions&,
                                               const BackpropOutputs<double>&);
template double start_backward<float>(const BackpropOptions&, const float*, int, int,
                                      const float*, const std::int64_t*, float*, BackpropStats&,
                                      int);
template double start_backward<double>(const BackpropOptions&, const double*, int, int,
                                       const double*, const std::int64_t*, double*,
                                       BackpropStats&, int);
}  // namespace detail
template BackpropStats backprop<float>(const ChainView<float>&, const float*, int, const float*,
                                       const std::int64_t*, const BackpropOptions&,
                                       const BackpropOutputs<float>&);
template void forward<float>(const ChainView<float>&, const float*, int, float*, int);
template void forward<double>(const ChainView<double>&, const double*, int, double*, int);
template BackpropStats backprop<double>(const ChainView<double>&, const double*, int,
                                        const double*, const std::int64_t*,
                                        const BackpropOptions&, const BackpropOutputs<double>&);

}  // namespace pyjac
