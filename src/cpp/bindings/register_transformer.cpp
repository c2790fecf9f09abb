// Transformer stacks: one call per backprop, spectral norm or Jacobian norms
// (pyjac.Transformer wraps them). Every call takes the stack as one tuple,
// (blocks, width, heads, hidden, activation, norm, residual, residual_scale, causal).
#include <pybind11/stl.h>

#include <cmath>

#include "arrays.hpp"
#include "pyjac/transformer/transformer.hpp"
#include "release_gil.hpp"

namespace pyjac::bindings {
namespace {

// PyTorch's names of a block's parameters, in the order the Python side passes them.
constexpr const char* kNames[12] = {
    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",  "linear1.weight",         "linear1.bias",
    "linear2.weight",           "linear2.bias",           "norm1.weight",
    "norm1.bias",               "norm2.weight",           "norm2.bias"};

template <typename T>
struct OwnedTransformer {
  TransformerView<T> view;
  std::vector<CArray<T>> arrays;
};

// The view of a stack tuple's parameters, converted to T and shape-checked.
template <typename T>
OwnedTransformer<T> make_view(const py::tuple& stack) {
  if (stack.size() != 9)
    throw std::invalid_argument("stack: expected (blocks, width, heads, hidden, activation, "
                                "norm, residual, residual_scale, causal)");
  const auto blocks = stack[0].cast<py::sequence>();
  const int width = stack[1].cast<int>(), hidden = stack[3].cast<int>();
  OwnedTransformer<T> o;
  auto& v = o.view;
  v.width = width;
  v.heads = stack[2].cast<int>();
  v.hidden = hidden;
  v.activation = parse_activation(stack[4].cast<std::string>());
  v.norm = parse_block_norm(stack[5].cast<std::string>());
  v.residual = stack[6].cast<bool>();
  v.residual_scale = stack[7].cast<double>();
  v.causal = stack[8].cast<bool>();
  const py::ssize_t shapes[12][2] = {{3 * width, width}, {3 * width, 0}, {width, width},
                                     {width, 0},         {hidden, width}, {hidden, 0},
                                     {width, hidden},    {width, 0},      {width, 0},
                                     {width, 0},         {width, 0},      {width, 0}};
  const int used = v.norm == BlockNorm::None ? 8 : 12;
  o.arrays.reserve(blocks.size() * 12);
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    const auto params = blocks[l].cast<py::sequence>();
    if (static_cast<int>(params.size()) < used)
      throw std::invalid_argument("parameters: block " + std::to_string(l) + " has " +
                                  std::to_string(params.size()) + " arrays, expected " +
                                  std::to_string(used));
    const T* p[12] = {};
    for (int i = 0; i < used; ++i) {
      CArray<T> a = CArray<T>::ensure(params[i]);
      const bool matrix = i % 2 == 0 && i < 8;  // the four weights; the rest are vectors
      const bool ok = a && (matrix ? a.ndim() == 2 && a.shape(0) == shapes[i][0] &&
                                         a.shape(1) == shapes[i][1]
                                   : a.ndim() == 1 && a.shape(0) == shapes[i][0]);
      if (!ok)
        throw std::invalid_argument("parameters: block " + std::to_string(l) + "'s " +
                                    kNames[i] + " has the wrong shape");
      p[i] = a.data();
      o.arrays.push_back(std::move(a));
    }
    v.blocks.push_back({p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10],
                        p[11]});
  }
  v.validate();
  return o;
}

// typed(T{}) in x's dtype: float32 or float64.
template <typename Typed>
py::dict by_dtype(const py::array& x, Typed&& typed) {
  if (x.dtype().is(py::dtype::of<float>())) return typed(float{});
  if (x.dtype().is(py::dtype::of<double>())) return typed(double{});
  throw py::type_error("x: expected float32 or float64");
}

// One sequence, (seq_len, width).
template <typename T>
CArray<T> one_sequence(const py::array& x_in, int width) {
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 2 || x.shape(1) != width)
    throw std::invalid_argument("x: expected one sequence of shape (seq_len, " +
                                std::to_string(width) + ")");
  return x;
}

py::array_t<bool> to_bools(const std::vector<unsigned char>& flags) {
  py::array_t<bool> a(static_cast<py::ssize_t>(flags.size()));
  for (std::size_t i = 0; i < flags.size(); ++i) a.mutable_data()[i] = flags[i] != 0;
  return a;
}

TransformerSpectralOptions spectral_options(int iters, double tol, std::uint64_t seed,
                                            bool per_block, int n_threads) {
  TransformerSpectralOptions o;
  o.iters = iters;
  o.tol = tol;
  o.seed = seed;
  o.per_block = per_block;
  o.n_threads = n_threads;
  return o;
}

template <typename T>
py::dict backprop_typed(const py::tuple& stack, const py::array& x_in, const std::string& loss,
                        const py::object& target_in, int n_threads) {
  auto net = make_view<T>(stack);
  const int width = net.view.width;
  CArray<T> x = CArray<T>::ensure(x_in);
  if (!x || x.ndim() != 3 || x.shape(2) != width)
    throw std::invalid_argument("x: expected shape (batch, seq_len, " + std::to_string(width) +
                                ")");
  const int batch = static_cast<int>(x.shape(0)), seq_len = static_cast<int>(x.shape(1));
  TransformerOptions options;
  options.loss = parse_loss(loss);
  options.n_threads = n_threads;
  CArray<T> target;
  const T* target_ptr = nullptr;
  if (options.loss == Loss::Mse || options.loss == Loss::GradOutput) {
    const std::string name = options.loss == Loss::Mse ? "target" : "grad_output";
    target = CArray<T>::ensure(target_in);
    if (!target || target.ndim() != 3 || target.shape(0) != batch ||
        target.shape(1) != seq_len || target.shape(2) != width)
      throw std::invalid_argument(name + ": expected the shape of x");
    target_ptr = target.data();
  }
  py::array_t<T> output({batch, seq_len, width});
  T* out = output.mutable_data();
  const auto s = release_gil([&] {
    return transformer_backprop<T>(net.view, x.data(), batch, seq_len, target_ptr, options, out);
  });
  const py::ssize_t depth = net.view.depth();
  py::dict r;
  r["loss"] = s.loss;
  r["grad_norm"] = to_numpy(s.grad_norm);
  r["activation_norm"] = to_numpy(s.activation_norm);
  r["parameter_grad_norm"] = to_numpy_2d(s.parameter_grad_norm, depth, kTransformerParameters);
  r["query_grad_norm"] = to_numpy(s.query_grad_norm);
  r["key_grad_norm"] = to_numpy(s.key_grad_norm);
  r["attention_entropy"] = to_numpy_2d(s.attention_entropy, depth, net.view.heads);
  r["token_similarity"] = to_numpy(s.token_similarity);
  r["rank_one_distance"] = to_numpy(s.rank_one_distance);
  r["first_nonfinite_layer"] = index_or_none(s.first_nonfinite_layer);
  static const char* stages[] = {nullptr, "forward", "backward"};
  r["first_nonfinite_stage"] = s.first_nonfinite_stage == 0
                                   ? py::object(py::none())
                                   : py::str(stages[s.first_nonfinite_stage]);
  r["output"] = output;
  return r;
}

// The power iteration's results (one entry, or one per block or depth).
py::dict spectral_dict(const TransformerSpectralStats& s) {
  py::dict r;
  std::vector<double> value;
  for (double v : s.log_value) value.push_back(std::exp(v));
  r["value"] = to_numpy(value);
  r["log_value"] = to_numpy(s.log_value);
  r["iterations"] = to_numpy(s.iterations);
  r["converged"] = to_bools(s.converged);
  r["first_nonfinite_layer"] = index_or_none(s.first_nonfinite_layer);
  return r;
}

py::dict backprop(const py::tuple& stack, const py::array& x, const std::string& loss,
                  const py::object& target, int n_threads) {
  return by_dtype(x, [&](auto tag) {
    return backprop_typed<decltype(tag)>(stack, x, loss, target, n_threads);
  });
}

py::dict spectral_norm(const py::tuple& stack, const py::array& x_in, bool per_block, int iters,
                       double tol, std::uint64_t seed, int n_threads) {
  const auto o = spectral_options(iters, tol, seed, per_block, n_threads);
  return by_dtype(x_in, [&](auto tag) {
    using T = decltype(tag);
    auto net = make_view<T>(stack);
    CArray<T> x = one_sequence<T>(x_in, net.view.width);
    const int seq_len = static_cast<int>(x.shape(0));
    return spectral_dict(release_gil(
        [&] { return transformer_spectral_norm<T>(net.view, x.data(), seq_len, o); }));
  });
}

py::dict jacobian_norms(const py::tuple& stack, const py::array& x_in, int probes, int iters,
                        double tol, std::uint64_t seed, int n_threads) {
  const auto o = spectral_options(iters, tol, seed, false, n_threads);
  return by_dtype(x_in, [&](auto tag) {
    using T = decltype(tag);
    auto net = make_view<T>(stack);
    CArray<T> x = one_sequence<T>(x_in, net.view.width);
    const int seq_len = static_cast<int>(x.shape(0));
    const auto s = release_gil([&] {
      return transformer_jacobian_norms<T>(net.view, x.data(), seq_len, o, probes);
    });
    py::dict r = spectral_dict(s.spectral);
    r["log_frobenius_norm"] = to_numpy(s.log_frobenius);
    r["frobenius_relative_error"] = to_numpy(s.frobenius_relative_error);
    return r;
  });
}

}  // namespace

void register_transformer(py::module_& m) {
  m.def("transformer_backprop", &backprop, py::arg("stack"), py::arg("x"), py::arg("loss"),
        py::arg("target"), py::arg("n_threads"));
  m.def("transformer_spectral_norm", &spectral_norm, py::arg("stack"), py::arg("x"),
        py::arg("per_block"), py::arg("iters"), py::arg("tol"), py::arg("seed"),
        py::arg("n_threads"));
  m.def("transformer_jacobian_norms", &jacobian_norms, py::arg("stack"), py::arg("x"),
        py::arg("probes"), py::arg("iters"), py::arg("tol"), py::arg("seed"),
        py::arg("n_threads"));
  m.def("transformer_workspace_bytes", &transformer_workspace_bytes, py::arg("depth"),
        py::arg("width"), py::arg("heads"), py::arg("hidden"), py::arg("batch"),
        py::arg("seq_len"), py::arg("dtype_size"));
  std::vector<std::string> names;
  for (int i = 0; i < kTransformerParameters; ++i) names.push_back(transformer_parameter_name(i));
  m.attr("TRANSFORMER_PARAMETERS") = names;
}

}  // namespace pyjac::bindings
