#include <pybind11/stl.h>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "chain_view.hpp"
#include "pyjac/spectral/spectral.hpp"

namespace pyjac::bindings {
namespace {

py::dict to_dict(const std::vector<PowerIterationResult>& rs) {
  const auto n = static_cast<py::ssize_t>(rs.size());
  py::array_t<double> value(n), log_value(n);
  py::array_t<int> iterations(n);
  py::array_t<bool> converged(n);
  for (py::ssize_t i = 0; i < n; ++i) {
    value.mutable_data()[i] = rs[i].value;
    log_value.mutable_data()[i] = rs[i].log_value;
    iterations.mutable_data()[i] = rs[i].iterations;
    converged.mutable_data()[i] = rs[i].converged;
  }
  py::dict d;
  d["value"] = value;
  d["log_value"] = log_value;
  d["iterations"] = iterations;
  d["converged"] = converged;
  return d;
}

PowerIterationOptions options(int iters, double tol, std::uint64_t seed, int n_threads) {
  PowerIterationOptions o;
  o.iters = iters;
  o.tol = tol;
  o.seed = seed;
  o.n_threads = n_threads;
  return o;
}

template <typename T>
py::dict matrix_typed(const py::array& a_in, int iters, double tol, std::uint64_t seed,
                      int n_threads) {
  CArray<T> a = CArray<T>::ensure(a_in);
  if (!a || a.ndim() != 2) throw std::invalid_argument("matrix: expected a 2-D array");
  const int rows = static_cast<int>(a.shape(0)), cols = static_cast<int>(a.shape(1));
  const auto o = options(iters, tol, seed, n_threads);
  PowerIterationResult r;
  r = release_gil([&] { return matrix_spectral_norm<T>(a.data(), rows, cols, o); });
  return to_dict({r});
}

template <typename T>
py::dict chain_typed(const py::object& weights, const py::object& biases,
                     const std::vector<std::string>& activations, bool residual,
                     double residual_scale, const std::string& norm, const py::array& x_in,
                     bool per_layer, int iters, double tol, std::uint64_t seed, int n_threads) {
  auto c = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                              n_threads);
  auto x = single_input<T>(x_in, c.view.widths[0]);
  const auto o = options(iters, tol, seed, n_threads);
  std::vector<PowerIterationResult> rs;
  int first = -1;
  rs = release_gil([&] { return chain_spectral_norm<T>(c.view, x.data(), per_layer, o, &first); });
  py::dict d = to_dict(rs);
  d["first_nonfinite_layer"] = index_or_none(first);
  return d;
}

py::dict matrix_spectral_norm_py(const py::array& a, int iters, double tol, std::uint64_t seed,
                                 int n_threads) {
  if (a.dtype().is(py::dtype::of<float>()))
    return matrix_typed<float>(a, iters, tol, seed, n_threads);
  if (a.dtype().is(py::dtype::of<double>()))
    return matrix_typed<double>(a, iters, tol, seed, n_threads);
  throw py::type_error("matrix: expected float32 or float64");
}

py::dict chain_spectral_norm_py(const py::object& w, const py::object& b,
                                const std::vector<std::string>& a, bool res, double rs,
                                const std::string& norm, const py::array& x, bool per_layer,
                                int iters, double tol, std::uint64_t seed, int n_threads) {
  if (x.dtype().is(py::dtype::of<float>()))
    return chain_typed<float>(w, b, a, res, rs, norm, x, per_layer, iters, tol, seed, n_threads);
  if (x.dtype().is(py::dtype::of<double>()))
    return chain_typed<double>(w, b, a, res, rs, norm, x, per_layer, iters, tol, seed,
                               n_threads);
  throw py::type_error("x: expected float32 or float64");
}

double spectral_radius_py(const py::array& a_in) {
  CArray<double> a = CArray<double>::ensure(a_in);
  if (!a || a.ndim() != 2 || a.shape(0) != a.shape(1))
    throw std::invalid_argument("matrix: expected a square 2-D array");
  const int n = static_cast<int>(a.shape(0));
  return release_gil([&] { return spectral_radius(a.data(), n); });
}

}  // namespace

void register_spectral(py::module_& m) {
  m.def("matrix_spectral_norm", &matrix_spectral_norm_py, py::arg("matrix"), py::arg("iters"),
        py::arg("tol"), py::arg("seed"), py::arg("n_threads"),
        "Largest singular value of a matrix by power iteration.");
  m.def("chain_spectral_norm", &chain_spectral_norm_py, py::arg("weights"), py::arg("biases"),
        py::arg("activations"), py::arg("residual"), py::arg("residual_scale"), py::arg("norm"),
        py::arg("x"), py::arg("per_layer"), py::arg("iters"), py::arg("tol"), py::arg("seed"),
        py::arg("n_threads"),
        "Largest singular value of a chain's Jacobian (or of each layer's) by matrix-free "
        "power iteration.");
  m.def("spectral_radius", &spectral_radius_py, py::arg("matrix"),
        "Largest |eigenvalue| of a square matrix (LAPACK dgeev).");
}

}  // namespace pyjac::bindings
