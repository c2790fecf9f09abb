// Minibatch training (SGD, Adam, AdamW) of a feed-forward chain, with the per-layer
// records that show which layers learn: gradient norms, relative weight change, clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/train/training_options.hpp"

namespace pyjac {

struct TrainOptions : TrainingOptions {
  GradFormat grad_format = GradFormat::Native;
  double loss_scale = 1.0;
};

// The parameters the optimiser writes to, and its state: each the shape of the chain's
// matching weight or bias. The chain view reads the same weight memory. state1 is SGD's
// velocity or Adam's first moment, state2 Adam's second moment; a list the optimiser
// does not use (optimizer_state_arrays) stays empty.
template <typename T>
struct TrainParameters {
  std::vector<T*> weights, biases;
  std::vector<T*> weight_state1, bias_state1, weight_state2, bias_state2;
  std::vector<const T*> initial_weights;  // W_l(0), for the relative change
};

struct EpochStats {
  std::vector<double> step_loss;          // minibatch loss before each update
  std::vector<double> step_grad_norm;     // global gradient norm before clipping
  std::vector<double> step_clipped_norm;  // ... and after
  std::vector<double> weight_grad_norm;   // mean over steps of ||dL/dW_l||, per layer
  std::vector<double> grad_norm;          // mean over steps of ||dL/dh_l||, l = 0..depth
  // Means over steps of the natural logs of ||dL/dh_l|| and ||dL/dW_l||: finite where
  // the plain norms underflow float64 (the log of the geometric mean).
  std::vector<double> log_grad_norm, log_weight_grad_norm;
  std::vector<double> weight_change;      // ||W_l - W_l(0)|| / ||W_l(0)|| after the epoch
  // Per layer, the mean over the epoch's steps of each minibatch's gradient noise scale
  // and signal-to-noise ratio (BackpropStats), over the steps where they are finite
  // (NaN when none is; empty for batchnorm).
  std::vector<double> gradient_noise_scale, gradient_snr;
  double mean_loss = 0.0;                 // over the epoch's examples, as each step saw them
  double accuracy = 0.0;                  // of the minibatch predictions before each update
  int first_nonfinite_step = -1;          // index into the step arrays
  int skipped_steps = 0;  // 16-bit gradients that overflowed: the update was skipped
  std::int64_t applied_steps = 0;  // updates applied (steps_before grows by this)
};

// One pass over the examples in the given order (n_examples indices into x), in
// minibatches of batch_size (the last one smaller). With a 16-bit grad_format a step
// whose gradient overflowed is skipped, as mixed-precision loss scalers do; otherwise a
// non-finite gradient is applied (a diverging run is data). x is (n, widths[0]); the targets
// are values (mse, (n, widths[L])) or labels (cross_entropy), indexed like x.
template <typename T>
EpochStats train_epoch(const ChainView<T>& chain, const TrainParameters<T>& params, const T* x,
                       const T* targets, const std::int64_t* labels,
                       const std::int64_t* order, int n_examples, const TrainOptions& options);

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;  // argmax of the output against the label (or target's argmax)
};

// Examples among `count` rows of `out` whose argmax is the label (or the target's argmax).
template <typename T>
std::int64_t count_correct(const T* out, int count, int n_out, const T* targets,
                           const std::int64_t* labels);

// Loss (mean over examples) and accuracy over a data set, forward passes only, in
// chunks so memory stays bounded. Batchnorm uses each chunk's own statistics.
template <typename T>
Evaluation evaluate(const ChainView<T>& chain, const T* x, const T* targets,
                    const std::int64_t* labels, int n_examples, Loss loss, int n_threads);

}  // namespace pyjac
