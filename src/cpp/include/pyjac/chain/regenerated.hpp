// Chains whose weights are never stored: layer l's parameters are drawn again from
// (seed, l) each time a pass needs them, exactly the numbers init_chain gives a stored
// chain of the same seed. A ChainView whose `source` is a RegeneratedLayers runs every
// pass (backprop, forward, the Jacobian norms, Lyapunov exponents, spectral norms) with
// one layer's parameters in memory, and the backward pass keeps activations at
// checkpoints every K layers (about sqrt(depth)) plus one segment of K layers.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/init.hpp"

namespace pyjac {

// What a chain's parameters are drawn from.
struct RegeneratedChain {
  std::vector<int> widths;   // depth + 1 entries
  InitOptions init;          // init, gain, bias_std and seed (its n_threads is not used)
  int checkpoint_every = 0;  // K; 0: automatic, see checkpoint_interval

  int depth() const { return static_cast<int>(widths.size()) - 1; }
  int widest() const;                  // the largest of the widths
  std::int64_t largest_layer() const;  // the most weights any layer has
  // K for a batch: checkpoint_every when set. Otherwise every layer (no recomputation,
  // one draw less per layer) when all the activations take no more memory than one
  // layer's weights (depth * batch * widest <= the largest layer), else about sqrt(depth),
  // which minimises the memory: either way within O(sqrt(depth) batch width + width^2).
  int checkpoint_interval(int batch) const;
  // Throws std::invalid_argument when the description is incomplete.
  void validate() const;
};

// Draws one layer at a time into buffers sized for the largest layer, or blocks of it
// where a pass uses them (weight_block); asking for the layer it holds costs nothing.
// Drawing uses n_threads threads, with the same numbers at any count.
template <typename T>
class RegeneratedLayers final : public LayerSource<T> {
 public:
  RegeneratedLayers(RegeneratedChain chain, int n_threads);
  const T* weights(int layer) override;
  const T* biases(int layer) override;
  // Every init but the orthogonal one, unless the layer is held whole already.
  bool draws_blocks(int layer) const override;
  void weight_block(int layer, int r0, int r1, int c0, int c1, T* out,
                    std::size_t ld) const override;
  int checkpoint_interval(int batch) const override;

 private:
  void hold(int layer);
  RegeneratedChain chain_;
  int n_threads_;
  std::unique_ptr<T[]> weights_, biases_;  // weights_ allocated by the first hold()
  int held_ = -1, held_biases_ = -1;
};

// Layer `layer`'s parameters into caller-owned arrays (W: widths[l+1] x widths[l]), with
// n_threads threads: exactly init_chain's numbers for that layer.
template <typename T>
void draw_layer(const RegeneratedChain& chain, int layer, T* weights, T* biases, int n_threads);

// Bytes the backward pass of such a chain allocates at its peak besides the per-layer
// records, for checks before any allocation (saturating at INT64_MAX).
std::int64_t regenerated_workspace_bytes(const std::vector<int>& widths, int batch,
                                         int dtype_size, int checkpoint_every);

}  // namespace pyjac
