// Feed-forward chains: h_0 = x, z_l = W_l h_{l-1} + b_l, h_l = phi(norm(z_l)),
// or with residual connections h_l = h_{l-1} + s * phi(norm(z_l)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pyjac/common/types.hpp"

namespace pyjac {

// Where a chain that does not store its parameters finds them: layer l's, drawn on
// demand (regenerated.hpp). One layer is held at a time: a pointer returned for layer l
// stays valid until parameters of another layer are asked for. Not thread-safe: the
// passes ask from their serial layer loops only.
template <typename T>
class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual const T* weights(int layer) = 0;
  virtual const T* biases(int layer) = 0;
  // Whether weight_block can draw a block of W_layer alone, now: a pass then draws each
  // block where it uses it and never holds the whole layer.
  virtual bool draws_blocks(int layer) const {
    (void)layer;
    return false;
  }
  // W_layer[r0:r1, c0:c1] into out, rows ld apart: the entries weights(layer) would hold.
  // Called from several threads at once.
  virtual void weight_block(int layer, int r0, int r1, int c0, int c1, T* out,
                            std::size_t ld) const {
    (void)layer, (void)r0, (void)r1, (void)c0, (void)c1, (void)out, (void)ld;
  }
  // The backward pass on a batch keeps activations every this many layers and
  // recomputes between.
  virtual int checkpoint_interval(int batch) const = 0;
};

// A non-owning view of a chain's parameters: the bindings point it at numpy
// arrays, the C++ tests and benchmarks at std::vectors; or, with a source, at nothing
// (weights and biases then hold depth null pointers and the source draws each layer).
template <typename T>
struct ChainView {
  std::vector<int> widths;             // depth + 1 entries
  std::vector<const T*> weights;       // W_l, (widths[l], widths[l-1]) row-major
  std::vector<const T*> biases;        // b_l, widths[l] entries
  std::vector<Activation> activations; // one per layer
  bool residual = false;
  double residual_scale = 1.0;
  Norm norm = Norm::None;
  LayerSource<T>* source = nullptr;    // not owned

  int depth() const { return static_cast<int>(weights.size()); }
  // Layer l's parameters, wherever they are: every pass reads them through these.
  const T* weight(int l) const { return source ? source->weights(l) : weights[l]; }
  const T* bias(int l) const { return source ? source->biases(l) : biases[l]; }
  // Whether layer l (0-based) has a skip connection: a residual chain skips every layer
  // whose input and output widths match; a layer that changes the width (a readout or
  // an embedding) is plain.
  bool residual_at(int l) const { return residual && widths[l] == widths[l + 1]; }
  // The factor on layer l's branch: residual_scale where it is skipped, else 1.
  double branch_scale(int l) const { return residual_at(l) ? residual_scale : 1.0; }
  // Throws std::invalid_argument when the pieces do not fit together.
  void validate() const;
};

struct BackpropOptions {
  Loss loss = Loss::SumSquares;
  bool keep_grads = false;  // not for a chain with a LayerSource (it stores no weights)
  int n_threads = -1;
  // Mixed-precision emulation: every propagated gradient (dL/dh_l and dL/dz_l) is rounded
  // to this format, after the loss gradient was multiplied by loss_scale. Reported norms
  // and kept gradients are divided by loss_scale again, as an optimiser would see them.
  GradFormat grad_format = GradFormat::Native;
  double loss_scale = 1.0;
  bool count_rounding = false;  // fill the counts below (always on for a 16-bit format)
  // false: only the gradient through depth (dL/dh_l and its norms): no weight or bias
  // gradients, their norms or per-example norms (left empty), no ghost-norm Grams.
  bool weight_grads = true;
};

// What one forward+backward pass measured. Arrays are float64 whatever T is.
struct BackpropStats {
  double loss = 0.0;                        // NaN when a grad_output was given
  std::vector<double> grad_norm;            // ||dL/dh_l||_F, l = 0..depth
  std::vector<double> activation_norm;      // ||h_l||_F, l = 0..depth
  std::vector<double> weight_grad_norm;     // ||dL/dW_l||_F, l = 1..depth
  std::vector<double> bias_grad_norm;       // ||dL/db_l||
  std::vector<double> per_example_weight_grad_norm;  // (depth, batch) row-major
  // Per layer, from the per-example weight gradients (empty without weight gradients
  // and for batchnorm; NaN below the pass's resolution, see gradient_noise.hpp):
  std::vector<double> gradient_noise_scale;  // tr(S) / ||mean g_i||^2 (B_simple)
  std::vector<double> gradient_snr;          // ||mean g_i||^2 / (tr(S) / batch)
  std::vector<double> derivative_mean;      // mean phi'(u_l) over batch and units
  std::vector<double> saturated_fraction;   // entries with phi' < 5% of its maximum
  std::vector<double> dead_fraction;        // units with phi' == 0 for every example
  // Entries that rounding to grad_format flushed to zero / turned into inf, and the
  // entries that are zero once stored:
  std::vector<std::int64_t> underflow_count;     // in dL/dh_l, l = 0..depth
  std::vector<std::int64_t> overflow_count;
  std::vector<std::int64_t> zero_count;
  std::vector<std::int64_t> dz_underflow_count;  // in dL/dz_l, l = 1..depth
  std::vector<std::int64_t> dz_overflow_count;
  // Natural logs of the three norms above, finite at any depth: the backward pass
  // carries a power-of-two scale where the plain values leave float64's range.
  std::vector<double> log_grad_norm;
  std::vector<double> log_weight_grad_norm;
  std::vector<double> log_bias_grad_norm;
  int first_underflow_layer = -1;           // grad_norm below float64's normal range
  int first_nonfinite_layer = -1;           // index into the (depth+1,) arrays
  int first_nonfinite_stage = 0;            // 0 none, 1 forward, 2 backward
  bool used_ghost_norm = false;
};

// Caller-owned destinations for the full gradients (keep_grads) and the output.
template <typename T>
struct BackpropOutputs {
  std::vector<T*> weight_grads;  // depth pointers, or empty
  std::vector<T*> bias_grads;    // depth pointers, or empty
  T* output = nullptr;           // (batch, widths[depth]) or null
};

// Runs the forward and backward pass once.
//   x:      (batch, widths[0]) row-major
//   target: mse -> (batch, widths[depth]) values; cross_entropy -> batch labels;
//           grad_output -> (batch, widths[depth]) dL/dh_L; otherwise unused.
template <typename T>
BackpropStats backprop(const ChainView<T>& chain, const T* x, int batch, const T* target,
                       const std::int64_t* labels, const BackpropOptions& options,
                       const BackpropOutputs<T>& outputs);

// The forward pass alone: out = h_L, (batch, widths[depth]).
template <typename T>
void forward(const ChainView<T>& chain, const T* x, int batch, T* out, int n_threads);

// Bytes the forward/backward pass allocates, so callers can refuse impossible sizes
// before touching memory.
std::int64_t backprop_workspace_bytes(const std::vector<int>& widths, int batch, int dtype_size,
                                      bool store_preactivations);

}  // namespace pyjac
