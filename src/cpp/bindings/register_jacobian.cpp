#include <pybind11/stl.h>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "chain_view.hpp"
#include "pyjac/jacobian/jacobian.hpp"

namespace pyjac::bindings {
namespace {

ProductMethod parse_method(const std::string& method) {
  if (method == "product") return ProductMethod::Product;
  if (method == "qr") return ProductMethod::Qr;
  throw std::invalid_argument("method: expected 'product' or 'qr', got '" + method + "'");
}

template <typename T>
py::array jacobian_typed(const py::object& weights, const py::object& biases,
                         const std::vector<std::string>& activations, bool residual,
                         double residual_scale, const std::string& norm, const py::array& x_in,
                         int depth, int n_threads) {
  auto c = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                              n_threads);
  auto x = single_input<T>(x_in, c.view.widths[0]);
  if (depth < 0 || depth > c.view.depth())
    throw std::invalid_argument("depth: must lie in [0, " + std::to_string(c.view.depth()) +
                                "], got " + std::to_string(depth));
  const int rows = c.view.widths[depth], cols = c.view.widths[0];
  py::array_t<T> out({rows, cols});
  T* dst = out.mutable_data();
  release_gil([&] { chain_jacobian<T>(c.view, x.data(), depth, dst, n_threads); });
  return out;
}

template <typename T>
py::dict norms_typed(const py::object& weights, const py::object& biases,
                     const std::vector<std::string>& activations, bool residual,
                     double residual_scale, const std::string& norm, const py::array& x_in,
                     const std::vector<int>& singular_values_at, const std::string& method,
                     double tol, int n_threads) {
  auto c = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                              n_threads);
  auto x = single_input<T>(x_in, c.view.widths[0]);
  ProductOptions o;
  o.method = parse_method(method);
  o.singular_values_at = singular_values_at;
  o.tol = tol;
  o.n_threads = n_threads;
  ChainProductResult res;
  res = release_gil([&] { return chain_jacobian_norms<T>(c.view, x.data(), o); });
  py::dict r;
  r["log_spectral_norm"] = to_numpy(res.product.log_spectral_norm);
  r["log_frobenius_norm"] = to_numpy(res.product.log_frobenius_norm);
  py::array_t<int> passes(static_cast<py::ssize_t>(res.product.solver_passes.size()));
  std::copy(res.product.solver_passes.begin(), res.product.solver_passes.end(),
            passes.mutable_data());
  py::array_t<bool> converged(static_cast<py::ssize_t>(res.product.converged.size()));
  for (std::size_t i = 0; i < res.product.converged.size(); ++i)
    converged.mutable_data()[i] = res.product.converged[i] != 0;
  r["solver_passes"] = passes;
  r["converged"] = converged;
  py::list logs;
  for (const auto& v : res.product.log_singular_values) logs.append(to_numpy(v));
  r["log_singular_values"] = logs;
  r["first_nonfinite_layer"] = index_or_none(res.first_nonfinite_layer);
  r["first_nonfinite_depth"] = index_or_none(res.product.first_nonfinite_step);
  return r;
}

template <typename T>
py::dict lyapunov_typed(const py::object& weights, const py::object& biases,
                        const std::vector<std::string>& activations, bool residual,
                        double residual_scale, const std::string& norm, const py::array& x_in,
                        int k, std::uint64_t seed, int n_threads) {
  auto c = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                              n_threads);
  auto x = single_input<T>(x_in, c.view.widths[0]);
  std::vector<double> exponents;
  int first = -1;
  exponents = release_gil([&] {
    return chain_lyapunov_exponents<T>(c.view, x.data(), k, seed, n_threads, &first);
  });
  py::dict r;
  r["exponents"] = to_numpy(exponents);
  r["first_nonfinite_layer"] = index_or_none(first);
  return r;
}

// Dispatch on the dtype of x, which the Python layer has converted to the chain's.
#define PYJAC_DISPATCH(fn, ...)                                                         \
  if (x.dtype().is(py::dtype::of<float>())) return fn<float>(__VA_ARGS__);             \
  if (x.dtype().is(py::dtype::of<double>())) return fn<double>(__VA_ARGS__);           \
  throw py::type_error("x: expected float32 or float64");

py::array chain_jacobian_py(const py::object& w, const py::object& b,
                            const std::vector<std::string>& a, bool res, double rs,
                            const std::string& norm, const py::array& x, int depth, int nt) {
  PYJAC_DISPATCH(jacobian_typed, w, b, a, res, rs, norm, x, depth, nt)
}

py::dict chain_jacobian_norms_py(const py::object& w, const py::object& b,
                                 const std::vector<std::string>& a, bool res, double rs,
                                 const std::string& norm, const py::array& x,
                                 const std::vector<int>& at, const std::string& method,
                                 double tol, int nt) {
  PYJAC_DISPATCH(norms_typed, w, b, a, res, rs, norm, x, at, method, tol, nt)
}

py::dict chain_lyapunov_py(const py::object& w, const py::object& b,
                           const std::vector<std::string>& a, bool res, double rs,
                           const std::string& norm, const py::array& x, int k,
                           std::uint64_t seed, int nt) {
  PYJAC_DISPATCH(lyapunov_typed, w, b, a, res, rs, norm, x, k, seed, nt)
}
#undef PYJAC_DISPATCH

}  // namespace

void register_jacobian(py::module_& m) {
  m.def("chain_jacobian", &chain_jacobian_py, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("depth"), py::arg("n_threads"),
        "Explicit d h_depth / d h_0 at one input, (widths[depth], widths[0]).");
  m.def("chain_jacobian_norms", &chain_jacobian_norms_py, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("singular_values_at"), py::arg("method"), py::arg("tol"),
        py::arg("n_threads"), "Log norms of the Jacobian product at every depth.");
  m.def("chain_lyapunov_exponents", &chain_lyapunov_py, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("k"), py::arg("seed"), py::arg("n_threads"),
        "The k largest Lyapunov exponents by Benettin's QR method.");
}

}  // namespace pyjac::bindings
