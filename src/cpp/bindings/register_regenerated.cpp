// Chains that do not store their weights (Chain(..., store_weights=False)): the chain is
// its description (widths, init, seed, ...), and each call draws the layers it needs.
#include <pybind11/stl.h>

#include "arrays.hpp"
#include "backprop_result.hpp"
#include "chain_view.hpp"
#include "pyjac/chain/regenerated.hpp"
#include "release_gil.hpp"

namespace pyjac::bindings {
namespace {

// The arguments every binding here shares, as the Python Chain holds them.
struct Description {
  std::vector<int> widths;
  std::string init;
  double gain;
  double bias_std;
  std::uint64_t seed;
  std::vector<std::string> activations;
  bool residual;
  double residual_scale;
  std::string norm;
  int checkpoint_every;

  RegeneratedChain chain() const {
    RegeneratedChain c;
    c.widths = widths;
    for (const auto& name : activations) c.activations.push_back(parse_activation(name));
    c.residual = residual;
    c.residual_scale = residual_scale;
    c.norm = parse_norm(norm);
    c.init.init = parse_init(init);
    c.init.gain = gain;
    c.init.bias_std = bias_std;
    c.init.seed = seed;
    c.checkpoint_every = checkpoint_every;
    c.validate();
    return c;
  }
};

Description describe(const py::tuple& t) {
  if (t.size() != 10) throw std::invalid_argument("chain: expected a 10-field description");
  return Description{t[0].cast<std::vector<int>>(),         t[1].cast<std::string>(),
                     t[2].cast<double>(),                   t[3].cast<double>(),
                     t[4].cast<std::uint64_t>(),            t[5].cast<std::vector<std::string>>(),
                     t[6].cast<bool>(),                     t[7].cast<double>(),
                     t[8].cast<std::string>(),              t[9].cast<int>()};
}

template <typename T>
CArray<T> batch_input(const RegeneratedChain& c, const py::array& x_in) {
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 2 || x.shape(1) != c.widths[0])
    throw std::invalid_argument("x: expected a (batch, " + std::to_string(c.widths[0]) +
                                ") array");
  return x;
}

template <typename T>
py::dict backprop_typed(const RegeneratedChain& c, const py::array& x_in,
                        const std::string& loss, const py::object& target_in, int n_threads,
                        const std::string& grad_dtype, double loss_scale, bool weight_grads) {
  CArray<T> x = batch_input<T>(c, x_in);
  BackpropOptions options;
  options.loss = parse_loss(loss);
  options.n_threads = n_threads;
  options.count_rounding = grad_dtype != "none";
  options.grad_format =
      options.count_rounding ? parse_grad_format(grad_dtype) : GradFormat::Native;
  options.loss_scale = loss_scale;
  options.weight_grads = weight_grads;
  const int batch = static_cast<int>(x.shape(0));
  const int n_last = c.widths.back();
  const auto targets = Targets<T>::convert(
      target_in, options.loss, batch, n_last,
      options.loss == Loss::GradOutput ? "grad_output" : "target");
  py::array_t<T> output({batch, n_last});
  T* out = output.mutable_data();
  const BackpropStats s = release_gil([&] {
    return backprop<T>(c, x.data(), batch, targets.values_ptr(), targets.labels_ptr(), options,
                       out);
  });
  py::dict r = backprop_result(s, weight_grads, c.depth(), batch);
  r["output"] = output;
  return r;
}

py::dict regenerated_backprop(const py::tuple& description, const py::array& x,
                              const std::string& loss, const py::object& target,
                              int n_threads, const std::string& grad_dtype, double loss_scale,
                              bool weight_grads) {
  const RegeneratedChain c = describe(description).chain();
  if (x.dtype().is(py::dtype::of<float>()))
    return backprop_typed<float>(c, x, loss, target, n_threads, grad_dtype, loss_scale,
                                 weight_grads);
  if (x.dtype().is(py::dtype::of<double>()))
    return backprop_typed<double>(c, x, loss, target, n_threads, grad_dtype, loss_scale,
                                  weight_grads);
  throw py::type_error("x: expected float32 or float64");
}

template <typename T>
py::array forward_typed(const RegeneratedChain& c, const py::array& x_in, int n_threads) {
  CArray<T> x = batch_input<T>(c, x_in);
  const int batch = static_cast<int>(x.shape(0));
  py::array_t<T> out({static_cast<py::ssize_t>(batch),
                      static_cast<py::ssize_t>(c.widths.back())});
  T* dst = out.mutable_data();
  release_gil([&] { forward<T>(c, x.data(), batch, dst, n_threads); });
  return out;
}

py::array regenerated_forward(const py::tuple& description, const py::array& x,
                              int n_threads) {
  const RegeneratedChain c = describe(description).chain();
  if (x.dtype().is(py::dtype::of<float>())) return forward_typed<float>(c, x, n_threads);
  if (x.dtype().is(py::dtype::of<double>())) return forward_typed<double>(c, x, n_threads);
  throw py::type_error("x: expected float32 or float64");
}

template <typename T>
py::tuple layer_typed(const RegeneratedChain& c, int layer, int n_threads) {
  if (layer < 0 || layer >= c.depth())
    throw py::index_error("layer " + std::to_string(layer) + " out of range for depth " +
                          std::to_string(c.depth()));
  py::array_t<T> w({c.widths[layer + 1], c.widths[layer]});
  py::array_t<T> b(c.widths[layer + 1]);
  T* wp = w.mutable_data();
  T* bp = b.mutable_data();
  release_gil([&] { layer_parameters<T>(c, layer, wp, bp, n_threads); });
  return py::make_tuple(w, b);
}

py::tuple regenerated_layer(const py::tuple& description, const std::string& dtype, int layer,
                            int n_threads) {
  const RegeneratedChain c = describe(description).chain();
  if (dtype == "float32") return layer_typed<float>(c, layer, n_threads);
  if (dtype == "float64") return layer_typed<double>(c, layer, n_threads);
  throw py::type_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
}

}  // namespace

void register_regenerated(py::module_& m) {
  m.def("regenerated_backprop", &regenerated_backprop, py::arg("chain"), py::arg("x"),
        py::arg("loss"), py::arg("target"), py::arg("n_threads"),
        py::arg("grad_dtype") = "none", py::arg("loss_scale") = 1.0,
        py::arg("weight_grads") = true,
        "chain_backprop for a chain that draws its layers again from the seed; `chain` is "
        "(widths, init, gain, bias_std, seed, activations, residual, residual_scale, norm, "
        "checkpoint_every).");
  m.def("regenerated_forward", &regenerated_forward, py::arg("chain"), py::arg("x"),
        py::arg("n_threads"), "h_L of a chain that draws its layers again from the seed.");
  m.def("regenerated_layer", &regenerated_layer, py::arg("chain"), py::arg("dtype"),
        py::arg("layer"), py::arg("n_threads"),
        "Layer `layer`'s (weights, biases), exactly as the stored chain of that seed has them.");
  m.def("regenerated_workspace_bytes", &regenerated_workspace_bytes, py::arg("widths"),
        py::arg("batch"), py::arg("dtype_size"), py::arg("checkpoint_every"));
}

}  // namespace pyjac::bindings
