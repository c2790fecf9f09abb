// Chains that draw each layer's parameters again whenever a pass needs them.
#include "pyjac/chain/regenerated.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/sizes.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {

int RegeneratedChain::widest() const {
  return widths.empty() ? 0 : *std::max_element(widths.begin(), widths.end());
}

std::int64_t RegeneratedChain::largest_layer() const {
  std::int64_t most = 0;
  for (int l = 0; l < depth(); ++l)
    most = std::max(most, static_cast<std::int64_t>(widths[l]) * widths[l + 1]);
  return most;
}

int RegeneratedChain::checkpoint_interval(int batch) const {
  if (checkpoint_every > 0) return checkpoint_every;
  if (static_cast<double>(depth()) * batch * widest() <= static_cast<double>(largest_layer()))
    return 1;
  return std::max(1, static_cast<int>(std::lround(std::sqrt(static_cast<double>(depth())))));
}

void RegeneratedChain::validate() const {
  if (depth() < 1) throw std::invalid_argument("depth must be at least 1");
  for (int w : widths)
    if (w < 1) throw std::invalid_argument("every width must be at least 1");
  if (checkpoint_every < 0)
    throw std::invalid_argument("checkpoint_every: must be 0 (automatic) or positive");
}

template <typename T>
RegeneratedLayers<T>::RegeneratedLayers(RegeneratedChain chain, int n_threads)
    : chain_(std::move(chain)), n_threads_(resolve_threads(n_threads)) {
  chain_.validate();
  biases_.reset(new T[static_cast<std::size_t>(chain_.widest())]);
}

namespace {

void check_layer(const RegeneratedChain& chain, int layer) {
  if (layer < 0 || layer >= chain.depth())
    throw std::invalid_argument("layer " + std::to_string(layer) + " out of range for depth " +
                                std::to_string(chain.depth()));
}

}  // namespace

template <typename T>
void draw_layer(const RegeneratedChain& chain, int layer, T* weights, T* biases,
                int n_threads) {
  check_layer(chain, layer);
  init_layer(layer, chain.widths[layer], chain.widths[layer + 1], chain.init, weights, biases,
             resolve_threads(n_threads));
}

template <typename T>
void RegeneratedLayers<T>::hold(int layer) {
  if (held_ == layer) return;
  held_ = -1;  // an interrupted draw leaves nothing that looks whole
  held_biases_ = -1;
  if (!weights_) weights_.reset(new T[static_cast<std::size_t>(chain_.largest_layer())]);
  draw_layer(chain_, layer, weights_.get(), biases_.get(), n_threads_);
  held_ = held_biases_ = layer;
}

template <typename T>
const T* RegeneratedLayers<T>::weights(int layer) {
  hold(layer);
  return weights_.get();
}

template <typename T>
const T* RegeneratedLayers<T>::biases(int layer) {
  if (held_biases_ != layer) {
    check_layer(chain_, layer);
    held_biases_ = -1;
    init_biases(layer, chain_.widths[layer + 1], chain_.init, biases_.get());
    held_biases_ = layer;
  }
  return biases_.get();
}

template <typename T>
bool RegeneratedLayers<T>::draws_blocks(int layer) const {
  return held_ != layer && draws_weight_blocks(chain_.init.init);
}

template <typename T>
void RegeneratedLayers<T>::weight_block(int layer, int r0, int r1, int c0, int c1, T* out,
                                        std::size_t ld) const {
  init_weight_block(layer, chain_.widths[layer], chain_.widths[layer + 1], chain_.init, r0, r1,
                    c0, c1, out, ld);
}

template <typename T>
int RegeneratedLayers<T>::checkpoint_interval(int batch) const {
  return chain_.checkpoint_interval(batch);
}

std::int64_t regenerated_workspace_bytes(const std::vector<int>& widths, int batch,
                                         int dtype_size, int checkpoint_every) {
  using detail::sat_add;
  using detail::sat_mul;
  RegeneratedChain chain;
  chain.widths = widths;
  chain.checkpoint_every = checkpoint_every;
  const std::int64_t depth = chain.depth();
  if (depth < 1 || batch < 1) return 0;
  const std::int64_t widest = chain.widest();
  const std::int64_t k = chain.checkpoint_interval(batch);
  // Activation rows of the widest layer: the checkpoints and one segment with its
  // pre-activations (the whole tape, pre-activations included, when K is 1), and slabs
  // for dL/dh, dL/dz and the Gram inputs. Then one layer's parameters, a dW scratch of
  // the same size, and the Gram matrices.
  const std::int64_t kept =
      k > 1 ? sat_add(depth / k + 1, sat_mul(3, k)) : sat_mul(2, depth + 1);
  const std::int64_t rows = sat_add(kept, 6);
  return sat_mul(dtype_size, sat_add(sat_add(sat_mul(rows, batch, widest),
                                             sat_mul(2, chain.largest_layer())),
                                     sat_add(sat_mul(4, batch, batch), sat_mul(2, widest))));
}

template void draw_layer<float>(const RegeneratedChain&, int, float*, float*, int);
template void draw_layer<double>(const RegeneratedChain&, int, double*, double*, int);
template class RegeneratedLayers<float>;
template class RegeneratedLayers<double>;

}  // namespace pyjac
