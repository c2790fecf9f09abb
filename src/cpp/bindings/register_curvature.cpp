// Curvature of a chain's loss: _core.ChainCurvature holds the tapes of one batch and
// answers Hessian (or Gauss-Newton) products, Lanczos eigenvalues, trace estimates and
// spectral quadrature, for all parameters or layer by layer, each in one call.
#include <pybind11/stl.h>

#include <cmath>
#include <mutex>
#include <variant>

#include "arrays.hpp"
#include "chain_view.hpp"
#include "pyjac/curvature/curvature.hpp"
#include "pyjac/spectral/lanczos.hpp"
#include "release_gil.hpp"

namespace pyjac::bindings {
namespace {

// One ChainCurvature of the chain's dtype. Products reuse the object's scratch, so
// calls on one object are serialised (concurrent calls get the serial numbers).
class CurvatureHandle {
 public:
  template <typename T>
  explicit CurvatureHandle(std::unique_ptr<ChainCurvature<T>> c) : c_(std::move(c)) {}

  template <typename F>
  decltype(auto) visit(F&& f) {
    return std::visit([&](auto& c) -> decltype(auto) { return f(*c); }, c_);
  }
  std::mutex& mutex() { return mutex_; }

 private:
  std::variant<std::unique_ptr<ChainCurvature<float>>, std::unique_ptr<ChainCurvature<double>>>
      c_;
  std::mutex mutex_;
};

template <typename T>
std::unique_ptr<CurvatureHandle> make_typed(const py::object& weights, const py::object& biases,
                                            const std::vector<std::string>& activations,
                                            bool residual, double residual_scale,
                                            const std::string& norm, const py::array& x_in,
                                            const std::string& loss_name,
                                            const py::object& target_in,
                                            const std::string& kind_name, int n_threads) {
  auto owned = make_chain_view<T>(weights, biases, activations, residual, residual_scale, norm,
                                  n_threads);
  const auto& view = owned.view;
  CArray<T> x = input_rows<T>(x_in, view.widths[0]);
  const Loss loss = parse_loss(loss_name);
  const CurvatureKind kind = parse_curvature_kind(kind_name);
  const int batch = static_cast<int>(x.shape(0));
  const auto targets = Targets<T>::convert(target_in, loss, batch, view.widths.back(),
                                           loss == Loss::GradOutput ? "grad_output" : "target");
  auto c = release_gil([&] {
    return std::make_unique<ChainCurvature<T>>(view, x.data(), batch, targets.values_ptr(),
                                               targets.labels_ptr(), loss, kind, n_threads);
  });
  return std::make_unique<CurvatureHandle>(std::move(c));
}

std::unique_ptr<CurvatureHandle> make_curvature(
    const py::object& weights, const py::object& biases,
    const std::vector<std::string>& activations, bool residual, double residual_scale,
    const std::string& norm, const py::array& x, const std::string& loss,
    const py::object& target, const std::string& kind, int n_threads) {
  if (x.dtype().is(py::dtype::of<float>()))
    return make_typed<float>(weights, biases, activations, residual, residual_scale, norm, x,
                             loss, target, kind, n_threads);
  if (x.dtype().is(py::dtype::of<double>()))
    return make_typed<double>(weights, biases, activations, residual, residual_scale, norm, x,
                              loss, target, kind, n_threads);
  throw py::type_error("x: expected float32 or float64");
}

// The blocks a call covers: every parameter (-1), or each layer's own block.
std::vector<int> blocks_of(CurvatureHandle& h, bool per_layer) {
  if (!per_layer) return {-1};
  const int depth = h.visit([](auto& c) { return c.depth(); });
  std::vector<int> blocks(depth);
  for (int l = 0; l < depth; ++l) blocks[l] = l;
  return blocks;
}

template <typename C>
std::int64_t block_length_of(const C& c, int block) {
  return block < 0 ? c.size() : c.block_size(block);
}

std::int64_t block_length(CurvatureHandle& h, int block) {
  return h.visit([&](auto& c) { return block_length_of(c, block); });
}

// A flat float64 vector of n entries, all finite (checked here, without the GIL, rather
// than by a second pass in Python).
CArray<double> direction(const py::array& v_in, std::int64_t n) {
  CArray<double> v = CArray<double>::ensure(v_in);
  if (!v || v.ndim() != 1 || v.shape(0) != n)
    throw std::invalid_argument("v: expected " + std::to_string(n) + " entries");
  const double* p = v.data();
  const bool finite = release_gil([&] {
    bool ok = true;
    for (std::int64_t i = 0; i < n; ++i) ok &= std::isfinite(p[i]);
    return ok;
  });
  if (!finite) throw std::invalid_argument("v: has NaN or inf entries");
  return v;
}

py::array_t<double> product(CurvatureHandle& h, const py::array& v_in, int block) {
  const std::int64_t n = block_length(h, block);
  CArray<double> v = direction(v_in, n);
  py::array_t<double> out(n);
  double* o = out.mutable_data();
  release_gil([&] {
    std::lock_guard<std::mutex> lock(h.mutex());
    h.visit([&](auto& c) { c.product(block, v.data(), o); });
  });
  return out;
}

// The block-diagonal product: each layer's block times its own part of v.
py::array_t<double> layer_products(CurvatureHandle& h, const py::array& v_in) {
  const std::int64_t n = block_length(h, -1);
  CArray<double> v = direction(v_in, n);
  py::array_t<double> out(n);
  double* o = out.mutable_data();
  release_gil([&] {
    std::lock_guard<std::mutex> lock(h.mutex());
    h.visit([&](auto& c) {
      for (int l = 0; l < c.depth(); ++l)
        c.product(l, v.data() + c.block_offset(l), o + c.block_offset(l));
    });
  });
  return out;
}

// fn(operator's dimension, operator) for every block a call covers, in one GIL release
// and under the object's lock; the results in block order.
template <typename Fn>
auto over_blocks(CurvatureHandle& h, bool per_layer, Fn&& fn) {
  const std::vector<int> blocks = blocks_of(h, per_layer);
  std::vector<decltype(fn(std::int64_t{}, SymmetricProduct{}))> results;
  release_gil([&] {
    std::lock_guard<std::mutex> lock(h.mutex());
    h.visit([&](auto& c) {
      for (int b : blocks) results.push_back(fn(block_length_of(c, b), c.as_operator(b)));
    });
  });
  return results;
}

EigenWhich parse_which(const std::string& which) {
  if (which == "largest") return EigenWhich::Largest;
  if (which == "smallest") return EigenWhich::Smallest;
  if (which == "both") return EigenWhich::Both;
  throw std::invalid_argument("which: expected 'largest', 'smallest' or 'both', got '" + which +
                              "'");
}

py::list eigenvalues(CurvatureHandle& h, bool per_layer, int k, const std::string& which,
                     int max_iter, double tol, std::uint64_t seed, bool vectors, int n_threads) {
  LanczosOptions o;
  o.k = k;
  o.which = parse_which(which);
  o.max_iter = max_iter;
  o.tol = tol;
  o.seed = seed;
  o.vectors = vectors;
  o.n_threads = n_threads;
  std::vector<std::int64_t> lengths;
  for (int b : blocks_of(h, per_layer)) lengths.push_back(block_length(h, b));
  const auto results = over_blocks(h, per_layer, [&](std::int64_t n, const SymmetricProduct& a) {
    return lanczos_eigen(n, a, o);
  });
  py::list out;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const LanczosResult& r = results[i];
    py::dict d;
    d["values"] = to_numpy(r.values);
    d["residuals"] = to_numpy(r.residuals);
    d["iterations"] = r.iterations;
    d["converged"] = r.converged;
    d["vectors"] = vectors ? py::object(to_numpy_2d(r.vectors,
                                                    static_cast<py::ssize_t>(r.values.size()),
                                                    lengths[i]))
                           : py::object(py::none());
    out.append(d);
  }
  return out;
}

py::list trace(CurvatureHandle& h, bool per_layer, int samples, bool hutchpp, std::uint64_t seed,
               int n_threads) {
  TraceOptions o;
  o.products = samples;
  o.hutchpp = hutchpp;
  o.seed = seed;
  o.n_threads = n_threads;
  const auto results = over_blocks(h, per_layer, [&](std::int64_t n, const SymmetricProduct& a) {
    return trace_estimate(n, a, o);
  });
  py::list out;
  for (const auto& r : results)
    out.append(py::dict(py::arg("trace") = r.trace, py::arg("standard_error") = r.standard_error,
                        py::arg("products") = r.products));
  return out;
}

py::list quadrature(CurvatureHandle& h, bool per_layer, int n_vectors, int steps,
                    std::uint64_t seed, int n_threads) {
  QuadratureOptions o;
  o.vectors = n_vectors;
  o.steps = steps;
  o.seed = seed;
  o.n_threads = n_threads;
  const auto results = over_blocks(h, per_layer, [&](std::int64_t n, const SymmetricProduct& a) {
    return spectral_quadrature(n, a, o);
  });
  py::list out;
  for (const auto& r : results)
    out.append(py::dict(py::arg("nodes") = to_numpy_2d(r.nodes, r.vectors, r.steps),
                        py::arg("weights") = to_numpy_2d(r.weights, r.vectors, r.steps)));
  return out;
}

}  // namespace

void register_curvature(py::module_& m) {
  py::class_<CurvatureHandle>(m, "ChainCurvature",
                              "A chain's loss curvature at one batch (pyjac.Hessian wraps it).")
      .def(py::init(&make_curvature), py::arg("weights"), py::arg("biases"),
           py::arg("activations"), py::arg("residual"), py::arg("residual_scale"),
           py::arg("norm"), py::arg("x"), py::arg("loss"), py::arg("target"), py::arg("kind"),
           py::arg("n_threads"))
      .def_property_readonly("size", [](CurvatureHandle& h) { return block_length(h, -1); })
      .def_property_readonly("loss", [](CurvatureHandle& h) {
        return h.visit([](auto& c) { return c.loss(); });
      })
      .def_property_readonly("block_offsets",
                             [](CurvatureHandle& h) {
                               return h.visit([](auto& c) {
                                 std::vector<std::int64_t> o;
                                 for (int l = 0; l <= c.depth(); ++l)
                                   o.push_back(l < c.depth() ? c.block_offset(l) : c.size());
                                 return o;
                               });
                             })
      .def("product", &product, py::arg("v"), py::arg("block") = -1)
      .def("layer_products", &layer_products, py::arg("v"))
      .def("eigenvalues", &eigenvalues, py::arg("per_layer"), py::arg("k"), py::arg("which"),
           py::arg("max_iter"), py::arg("tol"), py::arg("seed"), py::arg("vectors"),
           py::arg("n_threads"))
      .def("trace", &trace, py::arg("per_layer"), py::arg("samples"), py::arg("hutchpp"),
           py::arg("seed"), py::arg("n_threads"))
      .def("quadrature", &quadrature, py::arg("per_layer"), py::arg("n_vectors"),
           py::arg("steps"), py::arg("seed"), py::arg("n_threads"));
  m.def("curvature_workspace_bytes", &curvature_workspace_bytes, py::arg("widths"),
        py::arg("batch"), py::arg("dtype_size"));
}

}  // namespace pyjac::bindings
