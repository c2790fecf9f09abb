// Chains that draw each layer's parameters again whenever a pass needs them: the
// layer-at-a-time pass of layerwise_backprop.hpp with a preparer that refills one layer's
// buffers from the seed, and checkpoints every K layers.
#include "pyjac/chain/regenerated.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "chain/layerwise_backprop.hpp"
#include "common/sizes.hpp"

namespace pyjac {
namespace {

// Layer l's parameters in one pair of buffers, drawn only when another layer is there.
template <typename T>
class LayerDrawer {
 public:
  LayerDrawer(const RegeneratedChain& chain, int n_threads) : chain_(chain), nt_(n_threads) {
    std::size_t most_weights = 0;
    int widest = 0;
    for (int l = 0; l < chain.depth(); ++l) {
      most_weights = std::max(most_weights,
                              static_cast<std::size_t>(chain.widths[l]) * chain.widths[l + 1]);
      widest = std::max(widest, chain.widths[l + 1]);
    }
    weights_ = layerwise::make_buffer<T>(most_weights);
    biases_ = layerwise::make_buffer<T>(static_cast<std::size_t>(widest));
  }

  void operator()(int l, ChainView<T>& view) {
    if (held_ != l) {
      held_ = -1;  // an interrupted draw leaves nothing that looks whole
      layer_parameters(chain_, l, weights_.get(), biases_.get(), nt_);
      held_ = l;
    }
    view.weights[l] = weights_.get();
    view.biases[l] = biases_.get();
  }

 private:
  const RegeneratedChain& chain_;
  const int nt_;
  layerwise::Buffer<T> weights_, biases_;
  int held_ = -1;
};

// A view with the chain's shape and no parameters yet: the drawer points it at them.
template <typename T>
ChainView<T> empty_view(const RegeneratedChain& chain) {
  ChainView<T> view;
  view.widths = chain.widths;
  view.weights.assign(chain.depth(), nullptr);
  view.biases.assign(chain.depth(), nullptr);
  view.activations = chain.activations;
  view.residual = chain.residual;
  view.residual_scale = chain.residual_scale;
  view.norm = chain.norm;
  return view;
}

void check_batch(const RegeneratedChain& chain, int batch) {
  chain.validate();
  if (batch < 1) throw std::invalid_argument("x: batch must be at least 1");
  if (chain.norm == Norm::BatchNorm && batch < 2)
    throw std::invalid_argument("x: norm='batchnorm' needs a batch of at least 2 examples");
}

// As backprop(ChainView) decides: one thread where a layer is too small to share.
int threads_for(const RegeneratedChain& chain, int batch, std::size_t dtype_size,
                int asked) {
  double widest_layer = 0.0;
  for (int l = 0; l < chain.depth(); ++l)
    widest_layer = std::max(widest_layer, static_cast<double>(batch) * chain.widths[l] *
                                              chain.widths[l + 1] * dtype_size / 4.0);
  return widest_layer < (3 << 15) ? 1 : asked;
}

}  // namespace

int RegeneratedChain::checkpoint_interval() const {
  if (checkpoint_every > 0) return checkpoint_every;
  return std::max(1, static_cast<int>(std::lround(std::sqrt(static_cast<double>(depth())))));
}

void RegeneratedChain::validate() const {
  const int d = depth();
  if (d < 1) throw std::invalid_argument("depth must be at least 1");
  if (static_cast<int>(activations.size()) != d)
    throw std::invalid_argument("activations: one entry per layer is required");
  for (int w : widths)
    if (w < 1) throw std::invalid_argument("every width must be at least 1");
  if (checkpoint_every < 0)
    throw std::invalid_argument("checkpoint_every: must be 0 (automatic) or positive");
}

template <typename T>
void layer_parameters(const RegeneratedChain& chain, int layer, T* weights, T* biases,
                      int n_threads) {
  if (layer < 0 || layer >= chain.depth())
    throw std::invalid_argument("layer: out of range");
  init_layer(layer, chain.widths[layer], chain.widths[layer + 1], chain.init, weights, biases,
             resolve_threads(n_threads));
}

template <typename T>
BackpropStats backprop(const RegeneratedChain& chain, const T* x, int batch, const T* target,
                       const std::int64_t* labels, const BackpropOptions& o, T* output) {
  check_batch(chain, batch);
  if (o.keep_grads)
    throw std::invalid_argument("keep_grads: a chain that does not store its weights does not "
                                "keep their gradients either (depth weight-sized arrays)");
  ChainView<T> view = empty_view<T>(chain);
  BackpropOutputs<T> outputs;
  outputs.output = output;
  {
    // The argument checks look at shapes, labels and options, not at parameter values:
    // a placeholder stands in for every layer's, so that nothing is drawn before them.
    static const T placeholder = T(0);
    ChainView<T> shapes = view;
    std::fill(shapes.weights.begin(), shapes.weights.end(), &placeholder);
    std::fill(shapes.biases.begin(), shapes.biases.end(), &placeholder);
    detail::check_backprop_arguments(shapes, batch, target, labels, o, outputs);
  }
  const int asked = resolve_threads(o.n_threads);
  LayerDrawer<T> drawer(chain, asked);
  const int nt = threads_for(chain, batch, sizeof(T), asked);
  BlasThreadScope blas_scope(1);  // the pass's GEMMs are fixed single-threaded tiles
  BackpropStats s = layerwise::LayerwiseBackprop<T>(
                        view, x, batch, o, outputs, nt,
                        [&drawer](int l, ChainView<T>& v) { drawer(l, v); },
                        chain.checkpoint_interval())
                        .run(target, labels);
  if (!o.weight_grads) {
    for (auto* v : {&s.weight_grad_norm, &s.bias_grad_norm, &s.log_weight_grad_norm,
                    &s.log_bias_grad_norm, &s.per_example_weight_grad_norm})
      v->clear();
  }
  return s;
}

template <typename T>
void forward(const RegeneratedChain& chain, const T* x, int batch, T* out, int n_threads) {
  check_batch(chain, batch);
  const int asked = resolve_threads(n_threads);
  LayerDrawer<T> drawer(chain, asked);
  BackpropOptions o;
  o.n_threads = asked;
  BlasThreadScope blas_scope(1);
  layerwise::LayerwiseBackprop<T>(empty_view<T>(chain), x, batch, o, BackpropOutputs<T>{},
                                  threads_for(chain, batch, sizeof(T), asked),
                                  [&drawer](int l, ChainView<T>& v) { drawer(l, v); })
      .forward_only(out);
}

std::int64_t regenerated_workspace_bytes(const std::vector<int>& widths, int batch,
                                         int dtype_size, int checkpoint_every) {
  using detail::sat_add;
  using detail::sat_mul;
  const std::int64_t depth = static_cast<std::int64_t>(widths.size()) - 1;
  if (depth < 1 || batch < 1) return 0;
  std::int64_t widest = 0, most_weights = 0;
  for (std::size_t l = 0; l < widths.size(); ++l) {
    widest = std::max<std::int64_t>(widest, widths[l]);
    if (l + 1 < widths.size())
      most_weights = std::max(most_weights, sat_mul(widths[l], widths[l + 1]));
  }
  const std::int64_t k = checkpoint_every > 0
                             ? checkpoint_every
                             : std::max<std::int64_t>(1, std::llround(std::sqrt(depth)));
  // Activations: the checkpoints, and one segment with pre-activations and norm scales;
  // slabs for dL/dh, dL/dz and Gram inputs; one layer's parameters and a dW scratch.
  const std::int64_t rows = sat_add(sat_add(depth / k + 1, sat_mul(3, k)), 5);
  const std::int64_t values =
      sat_add(sat_add(sat_mul(rows, batch, widest), sat_mul(2, most_weights)),
              sat_add(sat_mul(4, batch, batch), sat_mul(2, widest)));
  // Per-layer records in double: row norms and per-example weight-gradient norms.
  const std::int64_t records = sat_mul(8, sat_mul(2, depth + 1, batch));
  return sat_add(sat_mul(dtype_size, values), records);
}

template void layer_parameters<float>(const RegeneratedChain&, int, float*, float*, int);
template void layer_parameters<double>(const RegeneratedChain&, int, double*, double*, int);
template BackpropStats backprop<float>(const RegeneratedChain&, const float*, int,
                                       const float*, const std::int64_t*,
                                       const BackpropOptions&, float*);
template BackpropStats backprop<double>(const RegeneratedChain&, const double*, int,
                                        const double*, const std::int64_t*,
                                        const BackpropOptions&, double*);
template void forward<float>(const RegeneratedChain&, const float*, int, float*, int);
template void forward<double>(const RegeneratedChain&, const double*, int, double*, int);

}  // namespace pyjac
