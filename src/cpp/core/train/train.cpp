// Minibatch training of a chain: every step is one backprop call (exact gradients), then
// clipping and the optimiser's update, fused into one pass over each parameter array
// (optimizer.cpp).
#include "pyjac/train/train.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "chain/loss.hpp"
#include "common/reduce.hpp"
#include "train/parameter_passes.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

template <typename T>
void gather_rows(const T* src, int cols, const std::int64_t* rows, int count, T* dst) {
  for (int i = 0; i < count; ++i)
    std::memcpy(dst + static_cast<std::size_t>(i) * cols,
                src + static_cast<std::size_t>(rows[i]) * cols, sizeof(T) * cols);
}

// Each state list holds one array per layer when the optimiser uses it, none otherwise.
template <typename T>
void check_state(const TrainParameters<T>& p, int L, int arrays) {
  auto sized = [&](const std::vector<T*>& list, bool used, const char* name) {
    if (list.size() != (used ? static_cast<std::size_t>(L) : 0u))
      throw std::invalid_argument(std::string(name) +
                                  (used ? ": one writable array per layer is required"
                                        : ": this optimizer keeps no such state"));
  };
  sized(p.weight_state1, arrays >= 1, "weight_state1");
  sized(p.bias_state1, arrays >= 1, "bias_state1");
  sized(p.weight_state2, arrays >= 2, "weight_state2");
  sized(p.bias_state2, arrays >= 2, "bias_state2");
}

}  // namespace

template <typename T>
EpochStats train_epoch(const ChainView<T>& c, const TrainParameters<T>& params, const T* x,
                       const T* targets, const std::int64_t* labels,
                       const std::int64_t* order, int n, const TrainOptions& o) {
  c.validate();
  check_training_options(o);
  check_targets(o.loss, targets, labels);
  const int L = c.depth();
  if (n < 1) throw std::invalid_argument("x: at least one example is needed");
  if (static_cast<int>(params.weights.size()) != L || static_cast<int>(params.biases.size()) != L ||
      static_cast<int>(params.initial_weights.size()) != L)
    throw std::invalid_argument("weights: one writable array per layer is required");
  check_state(params, L, optimizer_state_arrays(o.optimizer));
  const int nt = resolve_threads(o.n_threads);
  const int n_in = c.widths[0], n_out = c.widths[L];
  const int bs = std::min(o.batch_size, n);
  const int steps = (n + bs - 1) / bs;

  std::vector<T> xb(static_cast<std::size_t>(bs) * n_in);
  std::vector<T> tb(targets ? static_cast<std::size_t>(bs) * n_out : 0);
  std::vector<std::int64_t> lb(labels ? bs : 0);
  std::vector<std::vector<T>> gw(L), gb(L);
  std::vector<T> predictions(static_cast<std::size_t>(bs) * n_out);
  BackpropOutputs<T> outputs;
  outputs.output = predictions.data();
  for (int l = 0; l < L; ++l) {
    gw[l].resize(static_cast<std::size_t>(c.widths[l + 1]) * c.widths[l]);
    gb[l].resize(c.widths[l + 1]);
    outputs.weight_grads.push_back(gw[l].data());
    outputs.bias_grads.push_back(gb[l].data());
  }
  BackpropOptions bo;
  bo.loss = o.loss;
  bo.keep_grads = true;
  bo.n_threads = nt;
  bo.grad_format = o.grad_format;
  bo.loss_scale = o.loss_scale;

  EpochStats s;
  s.step_loss.reserve(steps);
  s.step_grad_norm.reserve(steps);
  s.step_clipped_norm.reserve(steps);
  s.weight_grad_norm.assign(L, 0.0);
  s.grad_norm.assign(L + 1, 0.0);
  s.log_weight_grad_norm.assign(L, 0.0);
  s.log_grad_norm.assign(L + 1, 0.0);
  // Sums and counts of the finite per-step noise measurements, per layer.
  std::vector<double> noise_sum(L, 0.0), snr_sum(L, 0.0);
  std::vector<int> noise_count(L, 0), snr_count(L, 0);
  double loss_sum = 0.0;
  std::int64_t seen = 0, correct = 0;
  for (int step = 0; step < steps; ++step) {
    check_interrupt();  // between steps: the parameters hold whole updates only
    const int first = step * bs;
    const int count = std::min(bs, n - first);
    if (c.norm == Norm::BatchNorm && count < 2) break;  // a lone last example has no statistics
    const std::int64_t* rows = order + first;
    gather_rows(x, n_in, rows, count, xb.data());
    if (targets) gather_rows(targets, n_out, rows, count, tb.data());
    if (labels)
      for (int i = 0; i < count; ++i) lb[i] = labels[rows[i]];
    const BackpropStats b = backprop<T>(c, xb.data(), count, targets ? tb.data() : nullptr,
                                        labels ? lb.data() : nullptr, bo, outputs);
    // The minibatch losses are means over their examples (mse: over every entry),
    // so weighting by the example count gives the epoch's mean.
    loss_sum += b.loss * count;
    seen += count;
    correct += count_correct(predictions.data(), count, n_out, targets ? tb.data() : nullptr,
                             labels ? lb.data() : nullptr);
    detail::ScaledNorm total;
    for (int l = 0; l < L; ++l) {
      total.add(b.weight_grad_norm[l]);
      total.add(b.bias_grad_norm[l]);
    }
    const double norm = total.value();
    if (o.grad_format != GradFormat::Native && !std::isfinite(norm)) {
      ++s.skipped_steps;
      s.step_loss.push_back(b.loss);
      s.step_grad_norm.push_back(norm);
      s.step_clipped_norm.push_back(0.0);
      if (s.first_nonfinite_step < 0) s.first_nonfinite_step = step;
      continue;
    }
    // PyTorch's clip_grad_norm_: scale by bound / (norm + 1e-6) when that is below 1.
    double factor = 1.0;
    if (o.clip == ClipKind::Norm && std::isfinite(norm))
      factor = std::min(1.0, o.clip_value / (norm + 1e-6));
    const std::int64_t update = o.steps_before + ++s.applied_steps;
    auto state = [](const std::vector<T*>& arrays, int l) {
      return arrays.empty() ? nullptr : arrays[l];
    };
    detail::ScaledNorm clipped;
    for (int l = 0; l < L; ++l) {
      clipped.add(optimizer_step(params.weights[l], state(params.weight_state1, l),
                                 state(params.weight_state2, l), gw[l].data(), gw[l].size(),
                                 o.optimizer, update, o.clip, o.clip_value, factor, nt));
      clipped.add(optimizer_step(params.biases[l], state(params.bias_state1, l),
                                 state(params.bias_state2, l), gb[l].data(), gb[l].size(),
                                 o.optimizer, update, o.clip, o.clip_value, factor, nt));
      s.weight_grad_norm[l] += b.weight_grad_norm[l];
      s.log_weight_grad_norm[l] += b.log_weight_grad_norm[l];
    }
    for (int l = 0; l <= L; ++l) {
      s.grad_norm[l] += b.grad_norm[l];
      s.log_grad_norm[l] += b.log_grad_norm[l];
    }
    for (std::size_t l = 0; l < b.gradient_noise_scale.size(); ++l) {
      if (std::isfinite(b.gradient_noise_scale[l])) {
        noise_sum[l] += b.gradient_noise_scale[l];
        ++noise_count[l];
      }
      if (std::isfinite(b.gradient_snr[l])) {
        snr_sum[l] += b.gradient_snr[l];
        ++snr_count[l];
      }
    }
    s.step_loss.push_back(b.loss);
    s.step_grad_norm.push_back(norm);
    // Value clipping measured the clipped entries; scaling by the factor scales the norm.
    s.step_clipped_norm.push_back(o.clip == ClipKind::Value ? clipped.value() : factor * norm);
    if (s.first_nonfinite_step < 0 && !(std::isfinite(b.loss) && std::isfinite(norm)))
      s.first_nonfinite_step = step;
  }
  s.mean_loss = seen ? loss_sum / static_cast<double>(seen) : std::nan("");
  s.accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : std::nan("");
  const double taken = static_cast<double>(std::max<std::size_t>(s.step_loss.size(), 1));
  for (double& v : s.weight_grad_norm) v /= taken;
  for (double& v : s.grad_norm) v /= taken;
  for (double& v : s.log_weight_grad_norm) v /= taken;
  for (double& v : s.log_grad_norm) v /= taken;
  if (c.norm != Norm::BatchNorm) {
    s.gradient_noise_scale.resize(L);
    s.gradient_snr.resize(L);
    for (int l = 0; l < L; ++l) {
      s.gradient_noise_scale[l] = noise_count[l] ? noise_sum[l] / noise_count[l] : std::nan("");
      s.gradient_snr[l] = snr_count[l] ? snr_sum[l] / snr_count[l] : std::nan("");
    }
  }
  s.weight_change.resize(L);
  for (int l = 0; l < L; ++l)
    s.weight_change[l] = detail::relative_change(
        params.weights[l], params.initial_weights[l],
        static_cast<std::size_t>(c.widths[l + 1]) * c.widths[l], nt);
  return s;
}

template <typename T>
std::int64_t count_correct(const T* out, int count, int n_out, const T* targets,
                           const std::int64_t* labels) {
  std::int64_t correct = 0;
  for (int i = 0; i < count; ++i) {
    const T* row = out + static_cast<std::size_t>(i) * n_out;
    const auto predicted = std::max_element(row, row + n_out) - row;
    std::int64_t truth = 0;
    if (labels) {
      truth = labels[i];
    } else {
      const T* t = targets + static_cast<std::size_t>(i) * n_out;
      truth = std::max_element(t, t + n_out) - t;
    }
    correct += predicted == truth ? 1 : 0;
  }
  return correct;
}

template <typename T>
Evaluation evaluate(const ChainView<T>& c, const T* x, const T* targets,
                    const std::int64_t* labels, int n, Loss loss, int n_threads) {
  c.validate();
  if (n < 1) throw std::invalid_argument("x: at least one example is needed");
  if (loss != Loss::CrossEntropy && loss != Loss::Mse)
    throw std::invalid_argument("loss: evaluation needs 'cross_entropy' or 'mse'");
  check_targets(loss, targets, labels);
  const int nt = resolve_threads(n_threads);
  const int n_in = c.widths[0], n_out = c.widths.back();
  // Balanced chunks of at most kChunk examples: never a lone last example, which
  // batchnorm could not normalise.
  constexpr int kChunk = 2048;
  const int n_chunks = (n + kChunk - 1) / kChunk;
  const int chunk = (n + n_chunks - 1) / n_chunks;
  std::vector<T> out(static_cast<std::size_t>(chunk) * n_out), grad(out.size());
  double loss_sum = 0.0;
  std::int64_t correct = 0;
  for (int k = 0, first = 0; k < n_chunks; ++k) {
    const int count = n / n_chunks + (k < n % n_chunks ? 1 : 0);
    const T* xc = x + static_cast<std::size_t>(first) * n_in;
    forward<T>(c, xc, count, out.data(), nt);
    const T* tc = targets ? targets + static_cast<std::size_t>(first) * n_out : nullptr;
    const std::int64_t* lc = labels ? labels + first : nullptr;
    const double chunk_loss =
        detail::loss_and_gradient(loss, out.data(), count, n_out, tc, lc, grad.data(), nt);
    loss_sum += chunk_loss * count;
    correct += count_correct(out.data(), count, n_out, tc, lc);
    first += count;
  }
  Evaluation e;
  e.loss = loss_sum / n;
  e.accuracy = static_cast<double>(correct) / n;
  return e;
}

#define PYJAC_INSTANTIATE(T)                                                                  \
  template EpochStats train_epoch<T>(const ChainView<T>&, const TrainParameters<T>&, const T*, \
                                     const T*, const std::int64_t*, const std::int64_t*, int,  \
                                     const TrainOptions&);                                     \
  template Evaluation evaluate<T>(const ChainView<T>&, const T*, const T*,                     \
                                  const std::int64_t*, int, Loss, int);                        \
  template std::int64_t count_correct<T>(const T*, int, int, const T*, const std::int64_t*);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac
