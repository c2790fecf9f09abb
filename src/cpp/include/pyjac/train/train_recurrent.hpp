// Training of a recurrent cell with a linear readout by backprop through time: the
// long-range tasks (adding, copy) that show what vanishing gradients cost, with the same
// optimisers as the chains and the records that show where the gradient goes.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "pyjac/recurrent/recurrent.hpp"
#include "pyjac/train/training_options.hpp"

namespace pyjac {

struct RecurrentTrainOptions : TrainingOptions {
  bool every_step = false;  // predict at every step (copy task), else at the last
};

// The parameters in the order W, U, b (the cell's) and V, c (the readout y = V h + c,
// V (n_out, width)); the optimiser's state for each (null where it keeps none); and W,
// U, V as they were before training, for the relative change.
template <typename T>
struct RecurrentTrainParameters {
  static constexpr int kCount = 5;
  std::array<T*, kCount> params{};
  std::array<T*, kCount> state1{}, state2{};
  std::array<const T*, 3> initial{};
};

// Parameter groups, in this order: W's gate blocks, U's gate blocks, V.
struct RecurrentEpochStats {
  std::vector<double> step_loss, step_grad_norm, step_clipped_norm;
  std::vector<double> group_grad_norm;  // mean over steps of ||dL/dP|| per group
  std::vector<double> group_change;     // ||P - P(0)|| / ||P(0)|| per group, after the epoch
  std::vector<double> grad_norm;        // mean over steps of ||dL/dh_t||, t = 0..T
  std::vector<double> log_grad_norm;    // mean over steps of its natural log, finite at any T
  std::vector<double> last_grad_norm;   // ||dL/dh_t|| of the epoch's last minibatch ...
  std::vector<double> last_log_grad_norm;  // ... and its natural log, finite at any T
  double mean_loss = 0.0;  // over the epoch's examples, as each step saw them
  double accuracy = 0.0;   // of the predictions before each update (NaN for mse)
  int first_nonfinite_step = -1;
  std::int64_t applied_steps = 0;
};

// One pass over n_examples sequences in the given order, in minibatches. x is (n,
// steps, input_size) (batch first, as PyTorch's batch_first=True); targets are values
// (n, n_out) or, with every_step, (n, steps, n_out) for mse; labels (n) or (n, steps)
// for cross_entropy. The cell view's W, U and b point at params[0..2].
template <typename T>
RecurrentEpochStats train_recurrent_epoch(const RecurrentView<T>& cell, int n_out,
                                          const RecurrentTrainParameters<T>& params, const T* x,
                                          int steps, const T* targets,
                                          const std::int64_t* labels, const std::int64_t* order,
                                          int n_examples, const RecurrentTrainOptions& options);

// Loss (mean as in training) and accuracy over a data set, forward passes only.
template <typename T>
std::array<double, 2> evaluate_recurrent(const RecurrentView<T>& cell, int n_out, const T* V,
                                         const T* c, const T* x, int steps, const T* targets,
                                         const std::int64_t* labels, int n_examples, Loss loss,
                                         bool every_step, int n_threads);

}  // namespace pyjac
