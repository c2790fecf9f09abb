#include <pybind11/stl.h>

#include <array>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "chain_view.hpp"
#include "train_options.hpp"
#include "pyjac/train/train.hpp"
#include "pyjac/train/weight_histogram.hpp"

namespace pyjac::bindings {
namespace {

template <typename T>
std::vector<py::ssize_t> sizes_of(const std::vector<CArray<T>>& arrays) {
  std::vector<py::ssize_t> sizes;
  for (const auto& a : arrays) sizes.push_back(a.size());
  return sizes;
}

// The optimiser's state lists: [weight_state1, bias_state1, weight_state2, bias_state2].
using StateLists = std::array<py::sequence, 4>;

template <typename T>
py::dict train_epoch_typed(const py::sequence& weights, const py::sequence& biases,
                           const StateLists& state, const py::sequence& initial_weights,
                           const std::vector<std::string>& activations, bool residual,
                           double residual_scale, const std::string& norm, const py::array& x_in,
                           const py::object& target_in, const py::array& order_in,
                           const TrainOptions& options) {
  auto owned = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm);
  const ChainView<T>& chain = owned.view;
  TrainParameters<T> params;
  const auto weight_sizes = sizes_of(owned.weights), bias_sizes = sizes_of(owned.biases);
  params.weights = writable_list<T>(weights, weight_sizes, "weights");
  params.biases = writable_list<T>(biases, bias_sizes, "biases");
  params.weight_state1 = writable_list<T>(state[0], weight_sizes, "weight_state1");
  params.bias_state1 = writable_list<T>(state[1], bias_sizes, "bias_state1");
  params.weight_state2 = writable_list<T>(state[2], weight_sizes, "weight_state2");
  params.bias_state2 = writable_list<T>(state[3], bias_sizes, "bias_state2");
  std::vector<py::ssize_t> rows, cols;
  for (int l = 0; l < chain.depth(); ++l) {
    rows.push_back(chain.widths[l + 1]);
    cols.push_back(chain.widths[l]);
  }
  auto initial = convert_list<T>(initial_weights, rows, cols, "initial_weights");
  for (auto& a : initial) params.initial_weights.push_back(a.data());

  const CArray<T> x = input_rows<T>(x_in, chain.widths[0]);
  const auto n = static_cast<int>(x.shape(0));
  auto order = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(order_in);
  if (!order || order.ndim() != 1 || order.shape(0) != n)
    throw std::invalid_argument("order: expected one index per example");
  for (py::ssize_t i = 0; i < n; ++i)
    if (order.data()[i] < 0 || order.data()[i] >= n)
      throw std::invalid_argument("order: index out of range");
  const auto data = Targets<T>::convert(target_in, options.loss, n, chain.widths.back(), "y");
  EpochStats s;
  s = release_gil([&] {
    return train_epoch<T>(chain, params, x.data(), data.values_ptr(), data.labels_ptr(),
        order.data(), n, options);
  });
  py::dict r = epoch_records(s);
  r["weight_grad_norm"] = to_numpy(s.weight_grad_norm);
  r["log_weight_grad_norm"] = to_numpy(s.log_weight_grad_norm);
  r["weight_change"] = to_numpy(s.weight_change);
  if (!s.gradient_noise_scale.empty()) {
    r["gradient_noise_scale"] = to_numpy(s.gradient_noise_scale);
    r["gradient_snr"] = to_numpy(s.gradient_snr);
  }
  r["skipped_steps"] = s.skipped_steps;
  return r;
}

template <typename T>
py::tuple evaluate_typed(const py::sequence& weights, const py::sequence& biases,
                         const std::vector<std::string>& activations, bool residual,
                         double residual_scale, const std::string& norm, const py::array& x_in,
                         const py::object& target_in, Loss loss, int n_threads) {
  auto owned = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm);
  const ChainView<T>& chain = owned.view;
  const CArray<T> x = input_rows<T>(x_in, chain.widths[0]);
  const auto n = static_cast<int>(x.shape(0));
  const auto data = Targets<T>::convert(target_in, loss, n, chain.widths.back(), "y");
  Evaluation e;
  e = release_gil([&] {
    return evaluate<T>(chain, x.data(), data.values_ptr(), data.labels_ptr(), n, loss, n_threads);
  });
  return py::make_tuple(e.loss, e.accuracy);
}

bool is_float32(const py::array& x) { return x.dtype().is(py::dtype::of<float>()); }

template <typename T>
py::dict weight_histograms_typed(const py::sequence& weights, std::vector<double> ranges,
                                 int bins, int n_threads) {
  std::vector<CArray<T>> arrays;
  std::vector<const T*> data;
  std::vector<std::size_t> sizes;
  for (std::size_t l = 0; l < weights.size(); ++l) {
    arrays.push_back(CArray<T>::ensure(weights[l]));
    if (!arrays.back())
      throw py::type_error("weights[" + std::to_string(l) + "]: not an array");
    data.push_back(arrays.back().data());
    sizes.push_back(static_cast<std::size_t>(arrays.back().size()));
  }
  WeightHistograms h;
  h = release_gil(
      [&] { return weight_histograms<T>(data, sizes, bins, std::move(ranges), n_threads); });
  const auto L = static_cast<py::ssize_t>(sizes.size());
  py::array_t<std::int64_t> counts({L, static_cast<py::ssize_t>(bins)});
  py::array_t<std::int64_t> outside({L, py::ssize_t(2)});
  std::copy(h.counts.begin(), h.counts.end(), counts.mutable_data());
  std::copy(h.outside.begin(), h.outside.end(), outside.mutable_data());
  py::dict r;
  r["ranges"] = to_numpy(h.ranges);
  r["counts"] = counts;
  r["outside"] = outside;
  return r;
}

}  // namespace

void register_train(py::module_& m) {
  m.def(
      "train_epoch",
      [](const py::sequence& weights, const py::sequence& biases, const StateLists& state,
         const py::sequence& initial_weights, const std::vector<std::string>& activations,
         bool residual, double residual_scale, const std::string& norm, const py::array& x,
         const py::object& y, const py::array& order, const std::string& loss, int batch_size,
         const py::dict& optimizer, std::int64_t steps_before, const std::string& clip_mode,
         double clip, const std::string& grad_dtype,
         double loss_scale, int n_threads) {
        TrainOptions o;
        set_training_options(o, loss, batch_size, optimizer, steps_before, clip_mode, clip,
                             n_threads);
        o.grad_format = parse_grad_format(grad_dtype);
        o.loss_scale = loss_scale;
        if (is_float32(x))
          return train_epoch_typed<float>(weights, biases, state, initial_weights, activations,
                                          residual, residual_scale, norm, x, y, order, o);
        return train_epoch_typed<double>(weights, biases, state, initial_weights, activations,
                                         residual, residual_scale, norm, x, y, order, o);
      },
      py::arg("weights"), py::arg("biases"), py::arg("state"), py::arg("initial_weights"),
      py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
      py::arg("x"), py::arg("y"), py::arg("order"), py::arg("loss"), py::arg("batch_size"),
      py::arg("optimizer"), py::arg("steps_before"), py::arg("clip_mode"), py::arg("clip"),
      py::arg("grad_dtype"), py::arg("loss_scale"),
      py::arg("n_threads"),
      "One epoch of minibatch training, updating the weights and the optimizer state in place;\n"
      "returns its records.");
  m.def(
      "weight_histograms",
      [](const py::sequence& weights, const std::vector<double>& ranges, int bins, int n_threads) {
        if (weights.size() > 0 && is_float32(py::array::ensure(weights[0])))
          return weight_histograms_typed<float>(weights, ranges, bins, n_threads);
        return weight_histograms_typed<double>(weights, ranges, bins, n_threads);
      },
      py::arg("weights"), py::arg("ranges"), py::arg("bins"), py::arg("n_threads"),
      "Counts of each layer's weights on `bins` even bins over [-range, range] (ranges empty:\n"
      "twice each layer's largest |w|); returns ranges, counts (layers, bins) and outside\n"
      "(layers, 2: below, above).");
  m.def(
      "evaluate",
      [](const py::sequence& weights, const py::sequence& biases,
         const std::vector<std::string>& activations, bool residual, double residual_scale,
         const std::string& norm, const py::array& x, const py::object& y, const std::string& loss,
         int n_threads) {
        const Loss l = parse_loss(loss);
        if (is_float32(x))
          return evaluate_typed<float>(weights, biases, activations, residual, residual_scale,
                                       norm, x, y, l, n_threads);
        return evaluate_typed<double>(weights, biases, activations, residual, residual_scale, norm,
                                      x, y, l, n_threads);
      },
      py::arg("weights"), py::arg("biases"), py::arg("activations"), py::arg("residual"),
      py::arg("residual_scale"), py::arg("norm"), py::arg("x"), py::arg("y"), py::arg("loss"),
      py::arg("n_threads"), "(loss, accuracy) of the chain over a data set, forward passes only.");
}

}  // namespace pyjac::bindings
