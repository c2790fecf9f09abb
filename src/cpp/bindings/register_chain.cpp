#include <pybind11/stl.h>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "backprop_result.hpp"
#include "chain_view.hpp"
#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/chain/precision.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac::bindings {
namespace {

template <typename T>
py::list init_weights_typed(const std::vector<int>& widths, const InitOptions& options) {
  const int depth = static_cast<int>(widths.size()) - 1;
  py::list weights, biases;
  std::vector<T*> wp, bp;
  for (int l = 0; l < depth; ++l) {
    py::array_t<T> w({widths[l + 1], widths[l]});
    py::array_t<T> b(widths[l + 1]);
    wp.push_back(w.mutable_data());
    bp.push_back(b.mutable_data());
    weights.append(w);
    biases.append(b);
  }
  release_gil([&] { init_chain<T>(widths, options, wp, bp); });
  py::list result;
  result.append(weights);
  result.append(biases);
  return result;
}

py::list init_weights(const std::vector<int>& widths, const std::string& init, double gain,
                      double bias_std, std::uint64_t seed, const std::string& dtype,
                      int n_threads) {
  if (widths.size() < 2) throw std::invalid_argument("depth must be at least 1");
  InitOptions o;
  o.init = parse_init(init);
  o.gain = gain;
  o.bias_std = bias_std;
  o.seed = seed;
  o.n_threads = n_threads;
  if (dtype == "float32") return init_weights_typed<float>(widths, o);
  if (dtype == "float64") return init_weights_typed<double>(widths, o);
  throw py::type_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
}

template <typename T>
py::dict backprop_typed(const py::object& weights_in, const py::object& biases_in,
                        const std::vector<std::string>& activations, bool residual,
                        double residual_scale, const std::string& norm, const py::array& x_in,
                        const std::string& loss, const py::object& target_in, bool keep_grads,
                        int n_threads, const std::string& grad_dtype, double loss_scale,
                        bool weight_grads) {
  auto owned = make_chain_view<T>(weights_in, biases_in, activations, residual, residual_scale,
                                  norm, n_threads);
  const ChainView<T>& chain = owned.view;
  const auto depth = static_cast<py::ssize_t>(chain.depth());
  const auto& rows = owned.rows;
  const auto& cols = owned.cols;
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 2 || x.shape(1) != chain.widths[0])
    throw std::invalid_argument("x: expected a (batch, " + std::to_string(chain.widths[0]) +
                                ") array");

  BackpropOptions options;
  options.loss = parse_loss(loss);
  options.keep_grads = keep_grads;
  options.n_threads = n_threads;
  // "none": no rounding and no counts; "native": counts only.
  options.count_rounding = grad_dtype != "none";
  options.grad_format = options.count_rounding ? parse_grad_format(grad_dtype) : GradFormat::Native;
  options.loss_scale = loss_scale;
  options.weight_grads = weight_grads;
  const int batch = static_cast<int>(x.shape(0));
  const int n_last = chain.widths.back();

  const auto targets = Targets<T>::convert(
      target_in, options.loss, batch, n_last,
      options.loss == Loss::GradOutput ? "grad_output" : "target");

  BackpropOutputs<T> outputs;
  py::list kept_weight_grads, kept_bias_grads;
  py::array_t<T> output({batch, n_last});
  outputs.output = output.mutable_data();
  if (keep_grads) {
    for (py::ssize_t l = 0; l < depth; ++l) {
      py::array_t<T> gw({rows[l], cols[l]});
      py::array_t<T> gb(rows[l]);
      outputs.weight_grads.push_back(gw.mutable_data());
      outputs.bias_grads.push_back(gb.mutable_data());
      kept_weight_grads.append(gw);
      kept_bias_grads.append(gb);
    }
  }
  BackpropStats s;
  s = release_gil([&] {
    return backprop<T>(chain, x.data(), batch, targets.values_ptr(), targets.labels_ptr(), options,
        outputs);
  });
  py::dict r = backprop_result(s, weight_grads, depth, batch);
  r["output"] = output;
  if (keep_grads) {
    r["weight_grads"] = kept_weight_grads;
    r["bias_grads"] = kept_bias_grads;
  }
  return r;
}

py::dict chain_backprop(const py::object& weights, const py::object& biases,
                        const std::vector<std::string>& activations, bool residual,
                        double residual_scale, const std::string& norm, const py::array& x,
                        const std::string& loss, const py::object& target, bool keep_grads,
                        int n_threads, const std::string& grad_dtype, double loss_scale,
                        bool weight_grads) {
  if (x.dtype().is(py::dtype::of<float>()))
    return backprop_typed<float>(weights, biases, activations, residual, residual_scale, norm, x,
                                 loss, target, keep_grads, n_threads, grad_dtype, loss_scale,
                                 weight_grads);
  if (x.dtype().is(py::dtype::of<double>()))
    return backprop_typed<double>(weights, biases, activations, residual, residual_scale, norm,
                                  x, loss, target, keep_grads, n_threads, grad_dtype, loss_scale,
                                  weight_grads);
  throw py::type_error("x: expected float32 or float64");
}

template <typename T>
py::array_t<T> forward_typed(const py::object& weights, const py::object& biases,
                             const std::vector<std::string>& activations, bool residual,
                             double residual_scale, const std::string& norm,
                             const py::array& x_in, int n_threads) {
  auto c = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                              n_threads);
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 2 || x.shape(1) != c.view.widths[0])
    throw std::invalid_argument("x: expected a (batch, " + std::to_string(c.view.widths[0]) +
                                ") array");
  const int batch = static_cast<int>(x.shape(0));
  py::array_t<T> out({static_cast<py::ssize_t>(batch),
                      static_cast<py::ssize_t>(c.view.widths.back())});
  T* dst = out.mutable_data();
  release_gil([&] { forward<T>(c.view, x.data(), batch, dst, n_threads); });
  return out;
}

py::array chain_forward(const py::object& weights, const py::object& biases,
                        const std::vector<std::string>& activations, bool residual,
                        double residual_scale, const std::string& norm, const py::array& x,
                        int n_threads) {
  if (x.dtype().is(py::dtype::of<float>()))
    return forward_typed<float>(weights, biases, activations, residual, residual_scale, norm, x,
                                n_threads);
  if (x.dtype().is(py::dtype::of<double>()))
    return forward_typed<double>(weights, biases, activations, residual, residual_scale, norm,
                                 x, n_threads);
  throw py::type_error("x: expected float32 or float64");
}

template <typename T>
py::tuple round_typed(const py::array& values, GradFormat format) {
  CArray<T> in = CArray<T>::ensure(values);
  py::array_t<T> out(in.request().shape);
  std::copy(in.data(), in.data() + in.size(), out.mutable_data());
  RoundingCounts counts;
  counts = release_gil([&] {
    return round_to_format(out.mutable_data(), static_cast<std::size_t>(out.size()), format,
        resolve_threads(-1));
  });
  return py::make_tuple(out, counts.underflow, counts.overflow);
}

py::tuple round_to_format_array(const py::array& values, const std::string& grad_dtype) {
  const GradFormat format = parse_grad_format(grad_dtype);
  if (values.dtype().is(py::dtype::of<float>())) return round_typed<float>(values, format);
  return round_typed<double>(values, format);
}

}  // namespace

void register_chain(py::module_& m) {
  m.def("init_weights", &init_weights, py::arg("widths"), py::arg("init"), py::arg("gain"),
        py::arg("bias_std"), py::arg("seed"), py::arg("dtype"), py::arg("n_threads"),
        "Seeded weights and biases for a chain; returns [weights, biases].");
  m.def("init_sigma_w2",
        [](const std::string& init, double gain, int fan_in, int fan_out) {
          return init_sigma_w2(parse_init(init), gain, fan_in, fan_out);
        },
        py::arg("init"), py::arg("gain"), py::arg("fan_in"), py::arg("fan_out"));
  m.def("chain_backprop", &chain_backprop, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("loss"), py::arg("target"), py::arg("keep_grads"),
        py::arg("n_threads"), py::arg("grad_dtype") = "none", py::arg("loss_scale") = 1.0,
        py::arg("weight_grads") = true,
        "One forward and backward pass; returns a dict of measurements.");
  m.def("chain_forward", &chain_forward, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("n_threads"), "The forward pass alone: h_L for a batch x.");
  m.def("round_to_format", &round_to_format_array, py::arg("values"), py::arg("grad_dtype"),
        "Rounds a float32/float64 array to float16/bfloat16 values (kept in its dtype); returns "
        "(rounded, underflow_count, overflow_count).");
  m.def("backprop_workspace_bytes", &backprop_workspace_bytes, py::arg("widths"),
        py::arg("batch"), py::arg("dtype_size"), py::arg("store_preactivations"));
  m.def("activation_names", &activation_names);
}

}  // namespace pyjac::bindings
