// Minibatch training of a recurrent cell and its linear readout: each step is one
// forward pass with a tape, the readout's loss on those states (StateLoss, so the tape
// serves both), backprop through time, then clipping over every parameter and the
// optimiser's update (optimizer.cpp).
#include "pyjac/train/train_recurrent.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "chain/loss.hpp"
#include "common/gemm_ksplit.hpp"
#include "common/reduce.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/threads.hpp"
#include "pyjac/train/train.hpp"
#include "recurrent/recurrent_tape.hpp"
#include "train/parameter_passes.hpp"

namespace pyjac {
namespace {

// Rows `rows[0..count)` of batch-first data (n, steps, cols) into time-major
// (steps, count, cols): the layout the recurrence reads.
template <typename V>
void gather_time_major(const V* src, int steps, int cols, const std::int64_t* rows, int count,
                       V* dst) {
  const std::size_t width = static_cast<std::size_t>(cols);
  for (int t = 0; t < steps; ++t)
    for (int i = 0; i < count; ++i)
      std::memcpy(dst + (static_cast<std::size_t>(t) * count + i) * width,
                  src + (static_cast<std::size_t>(rows[i]) * steps + t) * width,
                  sizeof(V) * width);
}

// The linear readout y = V h + c on `rows` states, its loss and gradients.
template <typename T>
struct Readout {
  const T* V;
  const T* c;
  int n_out, width, n_threads;
  Loss loss;

  // out (rows x n_out) = states V^T + c.
  void forward(const T* states, int rows, T* out) const {
    for (int i = 0; i < rows; ++i)
      std::memcpy(out + static_cast<std::size_t>(i) * n_out, c, sizeof(T) * n_out);
    detail::tiled_gemm(blas::Trans::No, blas::Trans::Yes, rows, n_out, width, T(1), states, width,
                       V, width, T(1), out, n_out, n_threads);
  }

  // From dL/dout: dL/dstates = dout V, dV = dout^T states, dc = the column sums of dout
  // (in double, in row order).
  void backward(const T* states, int rows, const T* dout, T* grad_states, T* dV, T* dc) const {
    detail::tiled_gemm(blas::Trans::No, blas::Trans::No, rows, width, n_out, T(1), dout, n_out,
                       V, width, T(0), grad_states, width, n_threads);
    detail::gemm_tn_ksplit(n_threads, n_out, width, rows, dout, n_out, states, width, dV, width);
    std::vector<double> sums(n_out, 0.0);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < n_out; ++j) sums[j] += dout[static_cast<std::size_t>(i) * n_out + j];
    for (int j = 0; j < n_out; ++j) dc[j] = static_cast<T>(sums[j]);
  }
};

void check_data(const void* targets, const std::int64_t* labels, Loss loss, int steps, int n,
                int n_out) {
  check_targets(loss, targets, labels);
  if (steps < 1) throw std::invalid_argument("x: sequences need at least one step");
  if (n < 1) throw std::invalid_argument("x: at least one sequence is needed");
  if (n_out < 1) throw std::invalid_argument("readout: needs at least one output");
}

// Everything one epoch keeps between its minibatches.
template <typename T>
class RecurrentEpoch {
 public:
  RecurrentEpoch(const RecurrentView<T>& cell, int n_out, const RecurrentTrainParameters<T>& p,
                 int steps, const RecurrentTrainOptions& o, int nt)
      : cell_(cell), p_(p), o_(o), nt_(nt), n_(cell.width), m_(cell.input_size),
        G_(cell.gates()), steps_(steps), w_block_(static_cast<std::size_t>(n_) * n_),
        u_block_(static_cast<std::size_t>(n_) * m_),
        readout_{p.params[3], p.params[4], n_out, cell.width, nt, o.loss},
        grads_{std::vector<T>(G_ * w_block_), std::vector<T>(G_ * u_block_),
               std::vector<T>(static_cast<std::size_t>(G_) * n_),
               std::vector<T>(static_cast<std::size_t>(n_out) * n_),
               std::vector<T>(n_out)} {
    s_.group_grad_norm.assign(2 * G_ + 1, 0.0);
    s_.grad_norm.assign(steps + 1, 0.0);
    s_.log_grad_norm.assign(steps + 1, 0.0);
  }

  // One minibatch, time-major: loss, gradients, records, the update.
  void step(int index, const T* xb, int count, const T* tb, const std::int64_t* lb) {
    const int rows = o_.every_step ? steps_ * count : count;
    out_.resize(static_cast<std::size_t>(rows) * readout_.n_out);
    dout_.resize(out_.size());
    std::int64_t correct = 0;
    const StateLoss<T> loss = [&](const T* states, T* grad_states) {
      const T* read = o_.every_step
                          ? states
                          : states + static_cast<std::size_t>(steps_ - 1) * count * n_;
      readout_.forward(read, rows, out_.data());
      const double value = detail::loss_and_gradient(o_.loss, out_.data(), rows, readout_.n_out,
                                                     tb, lb, dout_.data(), nt_);
      if (lb) correct = count_correct<T>(out_.data(), rows, readout_.n_out, nullptr, lb);
      readout_.backward(read, rows, dout_.data(), grad_states, grads_[3].data(),
                        grads_[4].data());
      return value;
    };
    RecurrentInputs<T> in;
    in.xs = xb;
    in.steps = steps_;
    in.batch = count;
    RecurrentBackpropOptions bo;
    bo.loss = o_.every_step ? RecurrentLoss::GradAll : RecurrentLoss::GradLast;
    bo.n_threads = nt_;
    bo.step_shares = false;
    RecurrentOutputs<T> outs;
    outs.dW = grads_[0].data();
    outs.dU = grads_[1].data();
    outs.db = grads_[2].data();
    const RecurrentBackpropStats b = recurrent_backprop<T>(cell_, in, loss, bo, outs);
    record(index, b, rows, correct);
  }

  RecurrentEpochStats finish() {
    const double taken = static_cast<double>(std::max<std::size_t>(s_.step_loss.size(), 1));
    for (double& v : s_.group_grad_norm) v /= taken;
    for (double& v : s_.grad_norm) v /= taken;
    for (double& v : s_.log_grad_norm) v /= taken;
    s_.mean_loss = rows_seen_ ? loss_sum_ / static_cast<double>(rows_seen_) : std::nan("");
    s_.accuracy = o_.loss == Loss::CrossEntropy && rows_seen_
                      ? static_cast<double>(correct_) / static_cast<double>(rows_seen_)
                      : std::nan("");
    for (int g = 0; g < G_; ++g)
      s_.group_change.push_back(detail::relative_change(
          p_.params[0] + g * w_block_, p_.initial[0] + g * w_block_, w_block_, nt_));
    for (int g = 0; g < G_; ++g)
      s_.group_change.push_back(detail::relative_change(
          p_.params[1] + g * u_block_, p_.initial[1] + g * u_block_, u_block_, nt_));
    s_.group_change.push_back(detail::relative_change(
        p_.params[3], p_.initial[2], static_cast<std::size_t>(readout_.n_out) * n_, nt_));
    return std::move(s_);
  }

 private:
  // The step's records, then clipping and the update of all five parameter arrays.
  void record(int index, const RecurrentBackpropStats& b, int rows, std::int64_t correct) {
    // Every gradient norm before the update: value clipping writes the clipped entries
    // back. BPTT has measured dW, dU and db as a whole already.
    for (int g = 0; g < G_; ++g) {
      s_.group_grad_norm[g] += detail::vector_norm(grads_[0].data() + g * w_block_, w_block_);
      s_.group_grad_norm[G_ + g] += detail::vector_norm(grads_[1].data() + g * u_block_, u_block_);
    }
    const double readout_norm = detail::vector_norm(grads_[3].data(), grads_[3].size());
    s_.group_grad_norm[2 * G_] += readout_norm;
    const double norm = detail::norm_of_norms(
        {b.W_grad_norm, b.U_grad_norm, b.b_grad_norm, readout_norm,
         detail::vector_norm(grads_[4].data(), grads_[4].size())});
    // PyTorch's clip_grad_norm_: scale by bound / (norm + 1e-6) when that is below 1.
    double factor = 1.0;
    if (o_.clip == ClipKind::Norm && std::isfinite(norm))
      factor = std::min(1.0, o_.clip_value / (norm + 1e-6));
    const std::int64_t update = o_.steps_before + ++s_.applied_steps;
    detail::ScaledNorm clipped;
    for (int k = 0; k < RecurrentTrainParameters<T>::kCount; ++k)
      clipped.add(optimizer_step(p_.params[k], p_.state1[k], p_.state2[k], grads_[k].data(),
                                 grads_[k].size(), o_.optimizer, update, o_.clip, o_.clip_value,
                                 factor, nt_));
    for (int t = 0; t <= steps_; ++t) {
      s_.grad_norm[t] += b.grad_norm[t];
      s_.log_grad_norm[t] += b.log_grad_norm[t];
    }
    s_.last_grad_norm = b.grad_norm;
    s_.last_log_grad_norm = b.log_grad_norm;
    s_.step_loss.push_back(b.loss);
    s_.step_grad_norm.push_back(norm);
    s_.step_clipped_norm.push_back(o_.clip == ClipKind::Value ? clipped.value() : factor * norm);
    if (s_.first_nonfinite_step < 0 && !(std::isfinite(b.loss) && std::isfinite(norm)))
      s_.first_nonfinite_step = index;
    // Minibatch losses are means over their rows (mse: over every entry, in proportion).
    loss_sum_ += b.loss * rows;
    correct_ += correct;
    rows_seen_ += rows;
  }

  const RecurrentView<T>& cell_;
  const RecurrentTrainParameters<T>& p_;
  const RecurrentTrainOptions& o_;
  const int nt_, n_, m_, G_, steps_;
  const std::size_t w_block_, u_block_;  // entries of one gate's block of W, of U
  const Readout<T> readout_;
  std::array<std::vector<T>, RecurrentTrainParameters<T>::kCount> grads_;  // dW dU db dV dc
  std::vector<T> out_, dout_;
  RecurrentEpochStats s_;
  double loss_sum_ = 0.0;
  std::int64_t correct_ = 0, rows_seen_ = 0;
};

template <typename T>
void check_parameters(const RecurrentView<T>& cell, const RecurrentTrainParameters<T>& p,
                      const OptimizerOptions& optimizer) {
  if (p.params[0] != cell.W || p.params[1] != cell.U || p.params[2] != cell.b)
    throw std::invalid_argument("params: W, U and b must be the cell view's own arrays");
  for (int k = 0; k < RecurrentTrainParameters<T>::kCount; ++k)
    if (!p.params[k]) throw std::invalid_argument("params: every parameter array is required");
  const int arrays = optimizer_state_arrays(optimizer);
  for (int k = 0; k < RecurrentTrainParameters<T>::kCount; ++k)
    if ((arrays >= 1) != (p.state1[k] != nullptr) || (arrays >= 2) != (p.state2[k] != nullptr))
      throw std::invalid_argument("state: one array per parameter for this optimizer, no more");
  for (const T* a : p.initial)
    if (!a) throw std::invalid_argument("initial: W, U and V at the start are required");
}

}  // namespace

template <typename T>
RecurrentEpochStats train_recurrent_epoch(const RecurrentView<T>& cell, int n_out,
                                          const RecurrentTrainParameters<T>& params, const T* x,
                                          int steps, const T* targets,
                                          const std::int64_t* labels, const std::int64_t* order,
                                          int n, const RecurrentTrainOptions& o) {
  cell.validate();
  check_training_options(o);
  check_data(targets, labels, o.loss, steps, n, n_out);
  if (cell.input_size < 1) throw std::invalid_argument("x: training needs inputs");
  check_parameters(cell, params, o.optimizer);
  const int nt = resolve_threads(o.n_threads);
  const int bs = std::min(o.batch_size, n);
  const int target_steps = o.every_step ? steps : 1;
  std::vector<T> xb(static_cast<std::size_t>(steps) * bs * cell.input_size);
  std::vector<T> tb(targets ? static_cast<std::size_t>(target_steps) * bs * n_out : 0);
  std::vector<std::int64_t> lb(labels ? static_cast<std::size_t>(target_steps) * bs : 0);
  RecurrentEpoch<T> epoch(cell, n_out, params, steps, o, nt);
  BlasThreadScope blas_scope(1);  // the readout's products: fixed tiles, as in BPTT
  const detail::BufferReuse reuse;  // every minibatch's tape in the last one's memory
  for (int first = 0, index = 0; first < n; first += bs, ++index) {
    check_interrupt();  // between steps: the parameters hold whole updates only
    const int count = std::min(bs, n - first);
    const std::int64_t* rows = order + first;
    gather_time_major(x, steps, cell.input_size, rows, count, xb.data());
    if (targets) gather_time_major(targets, target_steps, n_out, rows, count, tb.data());
    if (labels) gather_time_major(labels, target_steps, 1, rows, count, lb.data());
    epoch.step(index, xb.data(), count, targets ? tb.data() : nullptr,
               labels ? lb.data() : nullptr);
  }
  return epoch.finish();
}

template <typename T>
std::array<double, 2> evaluate_recurrent(const RecurrentView<T>& cell, int n_out, const T* V,
                                         const T* c, const T* x, int steps, const T* targets,
                                         const std::int64_t* labels, int n, Loss loss,
                                         bool every_step, int n_threads) {
  cell.validate();
  check_data(targets, labels, loss, steps, n, n_out);
  if (loss != Loss::CrossEntropy && loss != Loss::Mse)
    throw std::invalid_argument("loss: evaluation needs 'cross_entropy' or 'mse'");
  if (cell.input_size < 1) throw std::invalid_argument("x: evaluation needs inputs");
  const int nt = resolve_threads(n_threads);
  BlasThreadScope blas_scope(1);
  const detail::WeightProducts<T> wp(cell.W, cell.gates(), cell.width, nt);
  const detail::BufferReuse reuse;
  const Readout<T> readout{V, c, n_out, cell.width, nt, loss};
  constexpr int kChunk = 256;
  const int target_steps = every_step ? steps : 1;
  std::vector<T> xb(static_cast<std::size_t>(steps) * std::min(kChunk, n) * cell.input_size);
  std::vector<T> tb(targets ? static_cast<std::size_t>(target_steps) * std::min(kChunk, n) * n_out
                            : 0);
  std::vector<std::int64_t> lb(labels ? static_cast<std::size_t>(target_steps) * std::min(kChunk, n)
                                      : 0);
  std::vector<std::int64_t> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  double loss_sum = 0.0, rows_sum = 0.0;
  std::int64_t correct = 0;
  for (int first = 0; first < n; first += kChunk) {
    check_interrupt();
    const int count = std::min(kChunk, n - first);
    gather_time_major(x, steps, cell.input_size, order.data() + first, count, xb.data());
    if (targets)
      gather_time_major(targets, target_steps, n_out, order.data() + first, count, tb.data());
    if (labels) gather_time_major(labels, target_steps, 1, order.data() + first, count, lb.data());
    RecurrentInputs<T> in;
    in.xs = xb.data();
    in.steps = steps;
    in.batch = count;
    detail::validate_inputs(cell, in);
    detail::RecurrentTape<T> tape;
    detail::recurrent_forward(cell, in, wp, tape, nt);
    const int rows = every_step ? steps * count : count;
    const T* states = every_step ? tape.h_at(1) : tape.h_at(steps);
    std::vector<T> out(static_cast<std::size_t>(rows) * n_out), grad(out.size());
    readout.forward(states, rows, out.data());
    const double value = detail::loss_and_gradient(loss, out.data(), rows, n_out,
                                                   targets ? tb.data() : nullptr,
                                                   labels ? lb.data() : nullptr, grad.data(), nt);
    loss_sum += value * rows;
    rows_sum += rows;
    if (labels) correct += count_correct<T>(out.data(), rows, n_out, nullptr, lb.data());
  }
  const double accuracy = labels ? static_cast<double>(correct) / rows_sum : std::nan("");
  return {loss_sum / rows_sum, accuracy};
}

#define PYJAC_INSTANTIATE(T)                                                                    \
  template RecurrentEpochStats train_recurrent_epoch<T>(                                        \
      const RecurrentView<T>&, int, const RecurrentTrainParameters<T>&, const T*, int, const T*, \
      const std::int64_t*, const std::int64_t*, int, const RecurrentTrainOptions&);             \
  template std::array<double, 2> evaluate_recurrent<T>(const RecurrentView<T>&, int, const T*,  \
                                                       const T*, const T*, int, const T*,       \
                                                       const std::int64_t*, int, Loss, bool,    \
                                                       int);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac
