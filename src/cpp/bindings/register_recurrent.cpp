// Recurrent chains: init, backprop through time, Jacobian norms, Lyapunov exponents.
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "pyjac/recurrent/recurrent.hpp"

namespace pyjac::bindings {
namespace {

std::string shape_text(std::initializer_list<py::ssize_t> dims) {
  std::string s = "(";
  for (auto it = dims.begin(); it != dims.end(); ++it)
    s += (it == dims.begin() ? "" : ", ") + std::to_string(*it);
  return s + (dims.size() == 1 ? ",)" : ")");
}

// Checks shape and, unless told otherwise, that every entry is finite (the Python
// layer has already checked the big xs).
template <typename T>
CArray<T> require(const py::object& obj, const char* name,
                  std::initializer_list<py::ssize_t> shape, bool check_finite = true) {
  CArray<T> a = CArray<T>::ensure(obj);
  if (!a) throw py::type_error(std::string(name) + ": not a numeric array");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  py::ssize_t d = 0;
  for (auto it = shape.begin(); ok && it != shape.end(); ++it, ++d) ok = a.shape(d) == *it;
  if (!ok) throw std::invalid_argument(std::string(name) + ": expected shape " + shape_text(shape));
  const T* p = a.data();
  for (py::ssize_t i = 0; check_finite && i < a.size(); ++i)
    if (!std::isfinite(static_cast<double>(p[i])))
      throw std::invalid_argument(std::string(name) + ": contains NaN or Inf");
  return a;
}

// The cell's parameters as arrays of T with checked shapes, kept alive by the caller.
template <typename T>
struct CellArrays {
  CArray<T> W, U, b;
  RecurrentView<T> view;
  CellArrays(const std::string& cell, const py::object& W_in, const py::object& U_in,
             const py::object& b_in) {
    view.cell = parse_cell(cell);
    const int G = cell_gates(view.cell);
    W = CArray<T>::ensure(W_in);
    if (!W || W.ndim() != 2 || W.shape(1) < 1 || W.shape(0) != G * W.shape(1))
      throw std::invalid_argument("W: expected shape (" + std::to_string(G) +
                                  "*width, width) for cell '" + cell + "'");
    const py::ssize_t n = W.shape(1);
    view.width = static_cast<int>(n);
    b = require<T>(b_in, "b", {G * n});
    if (U_in.is_none()) {
      view.input_size = 0;
    } else {
      U = CArray<T>::ensure(U_in);
      if (!U || U.ndim() != 2 || U.shape(0) != G * n)
        throw std::invalid_argument("U: expected shape (" + std::to_string(G * n) +
                                    ", input_size)");
      view.input_size = static_cast<int>(U.shape(1));
      view.U = U.data();
    }
    view.W = W.data();
    view.b = b.data();
  }
};

py::tuple recurrent_init(const std::string& cell_name_in, int width, int input_size,
                         const std::string& init, double gain, double forget_bias,
                         double spectral_radius, std::uint64_t seed, const std::string& dtype) {
  const Cell cell = parse_cell(cell_name_in);
  if (width < 1) throw std::invalid_argument("width: must be at least 1");
  if (input_size < 0) throw std::invalid_argument("input_size: must be at least 0");
  RecurrentInitOptions o;
  o.init = parse_init(init);
  o.gain = gain;
  o.forget_bias = forget_bias;
  o.spectral_radius = spectral_radius;
  o.seed = seed;
  const py::ssize_t G = cell_gates(cell);
  auto run = [&](auto tag) -> py::tuple {
    using T = decltype(tag);
    py::array_t<T> W({G * width, static_cast<py::ssize_t>(width)});
    py::array_t<T> U({G * width, static_cast<py::ssize_t>(input_size)});
    py::array_t<T> b(G * width);
    T* wp = W.mutable_data();
    T* up = U.mutable_data();
    T* bp = b.mutable_data();
    release_gil([&] { init_recurrent<T>(cell, width, input_size, o, wp, up, bp); });
    return py::make_tuple(W, U, b);
  };
  if (dtype == "float32") return run(float{});
  if (dtype == "float64") return run(double{});
  throw py::type_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
}

template <typename T>
RecurrentInputs<T> make_inputs(const RecurrentView<T>& v, const py::object& xs_in, int steps,
                               const py::object& h0_in, const py::object& c0_in, CArray<T>& xs,
                               CArray<T>& h0, CArray<T>& c0) {
  RecurrentInputs<T> in;
  if (!xs_in.is_none()) {
    xs = CArray<T>::ensure(xs_in);
    if (!xs || xs.ndim() != 3 || xs.shape(2) != v.input_size || xs.shape(0) < 1 ||
        xs.shape(1) < 1)
      throw std::invalid_argument("xs: expected shape (steps, batch, " +
                                  std::to_string(v.input_size) + ")");
    steps = static_cast<int>(xs.shape(0));
    in.batch = static_cast<int>(xs.shape(1));
    xs = require<T>(xs_in, "xs", {xs.shape(0), xs.shape(1), xs.shape(2)}, false);
    in.xs = xs.data();
  } else if (!h0_in.is_none()) {
    CArray<T> probe = CArray<T>::ensure(h0_in);
    if (!probe || probe.ndim() != 2)
      throw std::invalid_argument("h0: expected shape (batch, " + std::to_string(v.width) + ")");
    in.batch = static_cast<int>(probe.shape(0));
  }
  in.steps = steps;
  if (!h0_in.is_none()) {
    h0 = require<T>(h0_in, "h0", {in.batch, v.width});
    in.h0 = h0.data();
  }
  if (!c0_in.is_none()) {
    if (v.cell != Cell::Lstm)
      throw std::invalid_argument("c0: only the 'lstm' cell has a cell state");
    c0 = require<T>(c0_in, "c0", {in.batch, v.width});
    in.c0 = c0.data();
  }
  return in;
}

RecurrentLoss parse_recurrent_loss(const std::string& loss) {
  if (loss == "last") return RecurrentLoss::Last;
  if (loss == "all") return RecurrentLoss::All;
  if (loss == "grad_last") return RecurrentLoss::GradLast;
  if (loss == "grad_all") return RecurrentLoss::GradAll;
  throw std::invalid_argument("loss: unknown value \"" + loss + "\"; expected \"last\" or \"all\"");
}

ClipSpec parse_clip(const std::string& kind, double threshold) {
  ClipSpec c;
  c.kind = parse_clip_kind(kind, "clip");
  if (c.kind == ClipKind::None) return c;
  if (!(threshold > 0) || !std::isfinite(threshold))
    throw std::invalid_argument("clip: the threshold must be a positive finite number");
  c.threshold = threshold;
  return c;
}

template <typename T>
py::dict backprop_typed(const std::string& cell, const py::object& W_in, const py::object& U_in,
                        const py::object& b_in, const py::object& xs_in, int steps,
                        const py::object& h0_in, const py::object& c0_in, const std::string& loss,
                        const py::object& grad_output_in, const std::string& clip_kind,
                        double clip_threshold, bool keep_grads, bool weight_grads,
                        int n_threads) {
  CellArrays<T> p(cell, W_in, U_in, b_in);
  CArray<T> xs, h0, c0, go;
  RecurrentInputs<T> in = make_inputs(p.view, xs_in, steps, h0_in, c0_in, xs, h0, c0);
  RecurrentBackpropOptions o;
  o.loss = parse_recurrent_loss(loss);
  o.clip = parse_clip(clip_kind, clip_threshold);
  o.n_threads = n_threads;
  o.weight_grads = weight_grads;
  if (in.steps < 1)
    throw std::invalid_argument("steps: must be at least 1, got " + std::to_string(in.steps));
  const py::ssize_t B = in.batch, n = p.view.width, G = p.view.gates(), m = p.view.input_size;
  if (o.loss == RecurrentLoss::GradLast) go = require<T>(grad_output_in, "grad_output", {B, n});
  if (o.loss == RecurrentLoss::GradAll)
    go = require<T>(grad_output_in, "grad_output", {in.steps, B, n});

  RecurrentOutputs<T> out;
  py::array_t<T> h_last({B, n}), c_last, dW, dU, db, dh0, dc0;
  out.h_last = h_last.mutable_data();
  const bool lstm = p.view.cell == Cell::Lstm;
  if (lstm) {
    c_last = py::array_t<T>({B, n});
    out.c_last = c_last.mutable_data();
  }
  if (keep_grads && weight_grads) {
    dW = py::array_t<T>({G * n, n});
    dU = py::array_t<T>({G * n, m});
    db = py::array_t<T>(G * n);
    out.dW = dW.mutable_data();
    out.dU = m > 0 ? dU.mutable_data() : nullptr;
    out.db = db.mutable_data();
  }
  if (keep_grads) {
    dh0 = py::array_t<T>({B, n});
    out.dh0 = dh0.mutable_data();
    if (lstm) {
      dc0 = py::array_t<T>({B, n});
      out.dc0 = dc0.mutable_data();
    }
  }
  RecurrentBackpropStats s;
  s = release_gil([&] {
    return recurrent_backprop<T>(p.view, in, go ? go.data() : nullptr, o, out);
  });
  py::dict r;
  r["loss"] = s.loss;
  r["grad_norm"] = to_numpy(s.grad_norm);
  r["cell_grad_norm"] = lstm ? py::object(to_numpy(s.cell_grad_norm)) : py::object(py::none());
  r["state_norm"] = to_numpy(s.state_norm);
  // What weight_grads=false did not compute is None, not NaN.
  const auto weights_or_none = [&](auto value) {
    return weight_grads ? py::object(std::move(value)) : py::object(py::none());
  };
  r["step_weight_grad_norm"] = weights_or_none(to_numpy(s.step_weight_grad_norm));
  r["log_grad_norm"] = to_numpy(s.log_grad_norm);
  r["log_cell_grad_norm"] =
      lstm ? py::object(to_numpy(s.log_cell_grad_norm)) : py::object(py::none());
  r["log_step_weight_grad_norm"] = weights_or_none(to_numpy(s.log_step_weight_grad_norm));
  r["first_underflow_step"] = index_or_none(s.first_underflow_step);
  py::dict wn;
  wn["W"] = s.W_grad_norm;
  wn["U"] = s.U_grad_norm;
  wn["b"] = s.b_grad_norm;
  r["weight_grad_norm"] = weights_or_none(wn);
  r["total_grad_norm"] = weights_or_none(py::float_(s.total_grad_norm));
  r["clipped_grad_norm"] = weights_or_none(py::float_(s.clipped_grad_norm));
  r["clip_cosine"] = weights_or_none(py::float_(s.clip_cosine));
  r["clipped_fraction"] = weights_or_none(py::float_(s.clipped_fraction));
  r["first_nonfinite_step"] = index_or_none(s.first_nonfinite_step);
  static const char* stages[] = {nullptr, "forward", "backward"};
  r["first_nonfinite_stage"] = s.first_nonfinite_stage == 0
                                   ? py::object(py::none())
                                   : py::str(stages[s.first_nonfinite_stage]);
  r["h_last"] = h_last;
  r["c_last"] = lstm ? py::object(c_last) : py::object(py::none());
  if (keep_grads) {
    py::dict grads;
    grads["W"] = dW;
    grads["U"] = dU;
    grads["b"] = db;
    r["weight_grads"] = weights_or_none(grads);
    r["h0_grad"] = dh0;
    r["c0_grad"] = lstm ? py::object(dc0) : py::object(py::none());
  }
  return r;
}

// Dispatches on W's dtype: float32 stays float32, anything else is float64.
template <typename F>
auto dispatch(const py::object& W, F&& f) {
  py::array a = py::array::ensure(W);
  if (!a) throw py::type_error("W: not a numeric array");
  if (a.dtype().is(py::dtype::of<float>())) return f(float{});
  return f(double{});
}

py::dict recurrent_backprop_py(const std::string& cell, const py::object& W, const py::object& U,
                               const py::object& b, const py::object& xs, int steps,
                               const py::object& h0, const py::object& c0,
                               const std::string& loss, const py::object& grad_output,
                               const std::string& clip_kind, double clip_threshold,
                               bool keep_grads, bool weight_grads, int n_threads) {
  return dispatch(W, [&](auto tag) {
    return backprop_typed<decltype(tag)>(cell, W, U, b, xs, steps, h0, c0, loss, grad_output,
                                         clip_kind, clip_threshold, keep_grads, weight_grads,
                                         n_threads);
  });
}

template <typename T>
py::dict jacobian_typed(const std::string& cell, const py::object& W_in, const py::object& U_in,
                        const py::object& b_in, const py::object& xs_in, int steps,
                        const py::object& h0_in, const py::object& c0_in, int n_threads) {
  CellArrays<T> p(cell, W_in, U_in, b_in);
  CArray<T> xs, h0, c0;
  RecurrentInputs<T> in = make_inputs(p.view, xs_in, steps, h0_in, c0_in, xs, h0, c0);
  RecurrentJacobianNorms r;
  r = release_gil([&] { return recurrent_jacobian_norms<T>(p.view, in, n_threads); });
  py::dict d;
  d["log_spectral_norm"] = to_numpy(r.log_spectral_norm);
  d["log_frobenius_norm"] = to_numpy(r.log_frobenius_norm);
  d["first_nonfinite_step"] = index_or_none(r.first_nonfinite_step);
  return d;
}

template <typename T>
py::dict lyapunov_typed(const std::string& cell, const py::object& W_in, const py::object& U_in,
                        const py::object& b_in, const py::object& xs_in, int steps,
                        const py::object& h0_in, const py::object& c0_in, int k,
                        std::uint64_t seed, int n_threads) {
  CellArrays<T> p(cell, W_in, U_in, b_in);
  CArray<T> xs, h0, c0;
  RecurrentInputs<T> in = make_inputs(p.view, xs_in, steps, h0_in, c0_in, xs, h0, c0);
  RecurrentLyapunov r;
  r = release_gil([&] { return recurrent_lyapunov<T>(p.view, in, k, seed, n_threads); });
  py::dict d;
  d["exponents"] = to_numpy(r.exponents);
  d["first_nonfinite_step"] = index_or_none(r.first_nonfinite_step);
  return d;
}

}  // namespace

void register_recurrent(py::module_& m) {
  m.def("recurrent_init", &recurrent_init, py::arg("cell"), py::arg("width"),
        py::arg("input_size"), py::arg("init"), py::arg("gain"), py::arg("forget_bias"),
        py::arg("spectral_radius"), py::arg("seed"), py::arg("dtype"),
        "Seeded (W, U, b) for a recurrent cell; spectral_radius < 0 leaves W as drawn.");
  m.def("recurrent_backprop", &recurrent_backprop_py, py::arg("cell"), py::arg("W"),
        py::arg("U"), py::arg("b"), py::arg("xs"), py::arg("steps"), py::arg("h0"),
        py::arg("c0"), py::arg("loss"), py::arg("grad_output"), py::arg("clip_kind"),
        py::arg("clip_threshold"), py::arg("keep_grads"), py::arg("weight_grads"),
        py::arg("n_threads"),
        "Forward pass and backprop through time; returns a dict of measurements.");
  m.def("recurrent_jacobian_norms",
        [](const std::string& cell, const py::object& W, const py::object& U, const py::object& b,
           const py::object& xs, int steps, const py::object& h0, const py::object& c0,
           int n_threads) {
          return dispatch(W, [&](auto tag) {
            return jacobian_typed<decltype(tag)>(cell, W, U, b, xs, steps, h0, c0, n_threads);
          });
        },
        py::arg("cell"), py::arg("W"), py::arg("U"), py::arg("b"), py::arg("xs"),
        py::arg("steps"), py::arg("h0"), py::arg("c0"), py::arg("n_threads"),
        "log norms of d s_T / d s_t, t = 0..T, along one trajectory.");
  m.def("recurrent_lyapunov",
        [](const std::string& cell, const py::object& W, const py::object& U, const py::object& b,
           const py::object& xs, int steps, const py::object& h0, const py::object& c0, int k,
           std::uint64_t seed, int n_threads) {
          return dispatch(W, [&](auto tag) {
            return lyapunov_typed<decltype(tag)>(cell, W, U, b, xs, steps, h0, c0, k, seed,
                                                 n_threads);
          });
        },
        py::arg("cell"), py::arg("W"), py::arg("U"), py::arg("b"), py::arg("xs"),
        py::arg("steps"), py::arg("h0"), py::arg("c0"), py::arg("k"), py::arg("seed"),
        py::arg("n_threads"), "Lyapunov exponents of the recurrence (QR method).");
  m.def("recurrent_workspace_bytes", [](const std::string& cell, int width, int input_size,
                                        int steps, int batch, int dtype_size) {
    return recurrent_workspace_bytes(parse_cell(cell), width, input_size, steps, batch, dtype_size);
  });
}

}  // namespace pyjac::bindings
