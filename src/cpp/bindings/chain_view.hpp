// Builds a ChainView over the numpy arrays of a pyjac.Chain, keeping the converted
// arrays alive for as long as the view is used.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/regenerated.hpp"

namespace pyjac::bindings {

template <typename T>
struct OwnedChainView {
  ChainView<T> view;
  std::vector<CArray<T>> weights, biases;
  std::unique_ptr<RegeneratedLayers<T>> source;  // for a chain that draws its layers
  std::vector<py::ssize_t> rows, cols;            // each weight's shape
};

// The view's parameters: the arrays of a list, or a RegeneratedChain (a chain built with
// store_weights=False) that a source draws from, with n_threads threads, on demand.
template <typename T>
void point_at_parameters(OwnedChainView<T>& c, const py::object& weights_in,
                         const py::object& biases_in, int n_threads) {
  if (py::isinstance<RegeneratedChain>(weights_in)) {
    const auto& spec = weights_in.cast<const RegeneratedChain&>();
    c.source = std::make_unique<RegeneratedLayers<T>>(spec, n_threads);
    c.view.widths = spec.widths;
    c.view.weights.assign(spec.depth(), nullptr);
    c.view.biases.assign(spec.depth(), nullptr);
    c.view.source = c.source.get();
    for (int l = 0; l < spec.depth(); ++l) {
      c.rows.push_back(spec.widths[l + 1]);
      c.cols.push_back(spec.widths[l]);
    }
    return;
  }
  if (!py::isinstance<py::sequence>(weights_in) || !py::isinstance<py::sequence>(biases_in))
    throw py::type_error("weights, biases: expected lists of arrays");
  const auto weights_list = weights_in.cast<py::sequence>();
  const auto depth = static_cast<py::ssize_t>(weights_list.size());
  if (depth < 1) throw std::invalid_argument("weights: depth must be at least 1");
  for (py::ssize_t l = 0; l < depth; ++l) {
    py::array w = py::array::ensure(weights_list[l]);
    if (!w || w.ndim() != 2) throw std::invalid_argument("weights: every entry must be 2-D");
    if (l == 0) c.view.widths.push_back(static_cast<int>(w.shape(1)));
    if (w.shape(1) != c.view.widths.back())
      throw std::invalid_argument("weights[" + std::to_string(l) + "]: has " +
                                  std::to_string(w.shape(1)) + " columns, expected " +
                                  std::to_string(c.view.widths.back()));
    c.rows.push_back(w.shape(0));
    c.cols.push_back(w.shape(1));
    c.view.widths.push_back(static_cast<int>(w.shape(0)));
  }
  c.weights = convert_list<T>(weights_list, c.rows, c.cols, "weights");
  c.biases = convert_list<T>(biases_in.cast<py::sequence>(), c.rows, {}, "biases");
  for (auto& a : c.weights) c.view.weights.push_back(a.data());
  for (auto& a : c.biases) c.view.biases.push_back(a.data());
}

template <typename T>
OwnedChainView<T> make_chain_view(const py::object& weights_in, const py::object& biases_in,
                                  const std::vector<std::string>& activations, bool residual,
                                  double residual_scale, const std::string& norm,
                                  int n_threads = -1) {
  OwnedChainView<T> c;
  point_at_parameters(c, weights_in, biases_in, n_threads);
  if (static_cast<int>(activations.size()) != c.view.depth())
    throw std::invalid_argument("activation: one name per layer is required");
  for (const auto& name : activations) c.view.activations.push_back(parse_activation(name));
  c.view.residual = residual;
  c.view.residual_scale = residual_scale;
  c.view.norm = parse_norm(norm);
  c.view.validate();
  return c;
}

// One input vector of the chain's input width, in the chain's dtype.
template <typename T>
CArray<T> single_input(const py::array& x_in, int width) {
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 1 || x.shape(0) != width)
    throw std::invalid_argument("x: expected one input of shape (" + std::to_string(width) +
                                ",)");
  return x;
}

// The targets a loss takes, converted: integer labels for cross_entropy (each in
// [0, n_out)), values of shape (n, n_out) for mse and a given grad_output, nothing for
// sum_squares. `name` is the caller's argument in the errors.
template <typename T>
struct Targets {
  // A default-constructed py::array_t is an empty array with a non-null data pointer,
  // not a null handle: which of the two the loss takes is recorded explicitly.
  CArray<T> values;
  py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> labels;
  bool has_values = false, has_labels = false;
  const T* values_ptr() const { return has_values ? values.data() : nullptr; }
  const std::int64_t* labels_ptr() const { return has_labels ? labels.data() : nullptr; }

  static Targets convert(const py::object& y, Loss loss, py::ssize_t n, int n_out,
                         const std::string& name) {
    Targets t;
    if (loss == Loss::CrossEntropy) {
      t.labels = decltype(t.labels)::ensure(y);
      if (!t.labels || t.labels.ndim() != 1 || t.labels.shape(0) != n)
        throw std::invalid_argument(name + ": cross_entropy needs one integer label per example");
      for (py::ssize_t i = 0; i < n; ++i)
        if (t.labels.data()[i] < 0 || t.labels.data()[i] >= n_out)
          throw std::invalid_argument(name + ": label " + std::to_string(t.labels.data()[i]) +
                                      " out of range [0, " + std::to_string(n_out) + ")");
      t.has_labels = true;
    } else if (loss == Loss::Mse || loss == Loss::GradOutput) {
      t.values = CArray<T>::ensure(y);
      if (!t.values || t.values.ndim() != 2 || t.values.shape(0) != n ||
          t.values.shape(1) != n_out)
        throw std::invalid_argument(name + ": expected shape (" + std::to_string(n) + ", " +
                                    std::to_string(n_out) + ")");
      t.has_values = true;
    }
    return t;
  }
};

// Rows of inputs, (n, width), in the chain's dtype.
template <typename T>
CArray<T> input_rows(const py::array& x_in, int width) {
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 2 || x.shape(1) != width)
    throw std::invalid_argument("x: expected shape (n, " + std::to_string(width) + ")");
  return x;
}

}  // namespace pyjac::bindings
