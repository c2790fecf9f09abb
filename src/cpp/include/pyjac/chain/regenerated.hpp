// Chains whose weights are never stored: layer l's parameters are drawn again from
// (seed, l) each time a pass needs them, exactly the numbers init_chain gives a stored
// chain of the same seed. Memory: the activations at checkpoints every K layers plus one
// segment of K layers and one layer's parameters, instead of every layer's weights.
#pragma once

#include <cstdint>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/common/types.hpp"

namespace pyjac {

struct RegeneratedChain {
  std::vector<int> widths;              // depth + 1 entries
  std::vector<Activation> activations;  // one per layer
  bool residual = false;
  double residual_scale = 1.0;
  Norm norm = Norm::None;
  InitOptions init;          // init, gain, bias_std and seed (its n_threads is not used)
  int checkpoint_every = 0;  // K; 0: about sqrt(depth)

  int depth() const { return static_cast<int>(widths.size()) - 1; }
  int checkpoint_interval() const;
  // Throws std::invalid_argument when the pieces do not fit together.
  void validate() const;
};

// The forward and backward pass of backprop(ChainView, ...), with the same statistics;
// only options.keep_grads is refused (it would store depth weight-sized gradients).
// `output`, when not null, receives h_L (batch, widths[depth]).
template <typename T>
BackpropStats backprop(const RegeneratedChain& chain, const T* x, int batch, const T* target,
                       const std::int64_t* labels, const BackpropOptions& options, T* output);

// h_L alone, (batch, widths[depth]), holding one layer's parameters and activations.
template <typename T>
void forward(const RegeneratedChain& chain, const T* x, int batch, T* out, int n_threads);

// Layer l's weights (widths[l+1] x widths[l]) and biases, as the passes draw them.
template <typename T>
void layer_parameters(const RegeneratedChain& chain, int layer, T* weights, T* biases,
                      int n_threads);

// Bytes backprop on a RegeneratedChain allocates at its peak, for checks before any
// allocation (saturating at INT64_MAX).
std::int64_t regenerated_workspace_bytes(const std::vector<int>& widths, int batch,
                                         int dtype_size, int checkpoint_every);

}  // namespace pyjac
