// Training of recurrent nets with a linear readout: one epoch, and evaluation.
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "train_options.hpp"
#include "pyjac/train/train_recurrent.hpp"

namespace pyjac::bindings {
namespace {

using Labels = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// The data of one call: inputs (n, steps, input_size) and targets, checked against the
// loss and where the readout predicts.
template <typename T>
struct SequenceData {
  CArray<T> x;
  CArray<T> values;
  Labels labels;
  bool has_values = false, has_labels = false;
  int n = 0, steps = 0;

  SequenceData(const py::object& x_in, const py::object& y, Loss loss, bool every_step,
               int input_size, int n_out) {
    x = CArray<T>::ensure(x_in);
    if (!x || x.ndim() != 3 || x.shape(2) != input_size || x.shape(0) < 1 || x.shape(1) < 1)
      throw std::invalid_argument("x: expected shape (n, steps, " + std::to_string(input_size) +
                                  ")");
    n = static_cast<int>(x.shape(0));
    steps = static_cast<int>(x.shape(1));
    if (loss == Loss::CrossEntropy) {
      labels = Labels::ensure(y);
      const bool ok = labels && (every_step ? labels.ndim() == 2 && labels.shape(1) == steps
                                            : labels.ndim() == 1) &&
                      labels.shape(0) == n;
      if (!ok)
        throw std::invalid_argument(every_step ? "y: expected integer labels of shape (n, steps)"
                                               : "y: expected one integer label per sequence");
      for (py::ssize_t i = 0; i < labels.size(); ++i)
        if (labels.data()[i] < 0 || labels.data()[i] >= n_out)
          throw std::invalid_argument("y: label " + std::to_string(labels.data()[i]) +
                                      " out of range [0, " + std::to_string(n_out) + ")");
      has_labels = true;
    } else {
      values = CArray<T>::ensure(y);
      const bool ok = values && values.shape(0) == n &&
                      (every_step ? values.ndim() == 3 && values.shape(1) == steps &&
                                        values.shape(2) == n_out
                                  : values.ndim() == 2 && values.shape(1) == n_out);
      if (!ok)
        throw std::invalid_argument("y: expected target values of shape (n, " +
                                    std::string(every_step ? "steps, " : "") +
                                    std::to_string(n_out) + ")");
      has_values = true;
    }
  }
  const T* values_ptr() const { return has_values ? values.data() : nullptr; }
  const std::int64_t* labels_ptr() const { return has_labels ? labels.data() : nullptr; }
};

// The cell's shape from W (G*width, width) and U (G*width, input_size).
template <typename T>
RecurrentView<T> cell_view(const std::string& cell, T* W, T* U, T* b, const py::array& W_in,
                           const py::array& U_in) {
  RecurrentView<T> v;
  v.cell = parse_cell(cell);
  const int G = cell_gates(v.cell);
  if (W_in.ndim() != 2 || W_in.shape(1) < 1 || W_in.shape(0) != G * W_in.shape(1))
    throw std::invalid_argument("W: expected shape (" + std::to_string(G) + "*width, width)");
  if (U_in.ndim() != 2 || U_in.shape(0) != W_in.shape(0) || U_in.shape(1) < 1)
    throw std::invalid_argument("U: expected shape (gates*width, input_size)");
  v.width = static_cast<int>(W_in.shape(1));
  v.input_size = static_cast<int>(U_in.shape(1));
  v.W = W;
  v.U = U;
  v.b = b;
  return v;
}

template <typename T>
py::dict train_typed(const std::string& cell, const py::list& params, const py::list& state1,
                     const py::list& state2, const py::list& initial, const py::object& x,
                     const py::object& y, const py::array& order_in, RecurrentTrainOptions o) {
  if (params.size() != 5) throw std::invalid_argument("params: expected [W, U, b, V, c]");
  const py::array W_in = params[0], U_in = params[1], V_in = params[3];
  const std::array<py::ssize_t, 5> sizes{W_in.size(), U_in.size(), W_in.shape(0), V_in.size(),
                                         V_in.ndim() == 2 ? V_in.shape(0) : -1};
  const std::vector<py::ssize_t> size_list(sizes.begin(), sizes.end());
  RecurrentTrainParameters<T> p;
  const auto pointers = writable_list<T>(params, size_list, "params");
  for (int k = 0; k < 5; ++k) p.params[k] = pointers[k];
  const auto s1 = writable_list<T>(state1, size_list, "state1");
  const auto s2 = writable_list<T>(state2, size_list, "state2");
  for (std::size_t k = 0; k < s1.size(); ++k) p.state1[k] = s1[k];
  for (std::size_t k = 0; k < s2.size(); ++k) p.state2[k] = s2[k];
  if (V_in.ndim() != 2 || V_in.shape(1) != W_in.shape(1))
    throw std::invalid_argument("V: expected shape (n_out, width)");
  const auto view = cell_view<T>(cell, p.params[0], p.params[1], p.params[2], W_in, U_in);
  const int n_out = static_cast<int>(V_in.shape(0));
  if (initial.size() != 3) throw std::invalid_argument("initial: expected [W0, U0, V0]");
  std::array<CArray<T>, 3> init;
  for (int k = 0; k < 3; ++k) {
    init[k] = CArray<T>::ensure(initial[k]);
    if (!init[k] || init[k].size() != sizes[k == 2 ? 3 : k])
      throw std::invalid_argument("initial[" + std::to_string(k) + "]: wrong shape");
    p.initial[k] = init[k].data();
  }
  const SequenceData<T> data(x, y, o.loss, o.every_step, view.input_size, n_out);
  auto order = Labels::ensure(order_in);
  if (!order || order.ndim() != 1 || order.shape(0) != data.n)
    throw std::invalid_argument("order: expected one index per sequence");
  for (py::ssize_t i = 0; i < data.n; ++i)
    if (order.data()[i] < 0 || order.data()[i] >= data.n)
      throw std::invalid_argument("order: index out of range");
  RecurrentEpochStats s;
  s = release_gil([&] {
    return train_recurrent_epoch<T>(view, n_out, p, data.x.data(), data.steps, data.values_ptr(),
                                    data.labels_ptr(), order.data(), data.n, o);
  });
  py::dict r = epoch_records(s);
  r["weight_grad_norm"] = to_numpy(s.group_grad_norm);
  r["weight_change"] = to_numpy(s.group_change);
  r["last_grad_norm"] = to_numpy(s.last_grad_norm);
  r["last_log_grad_norm"] = to_numpy(s.last_log_grad_norm);
  r["skipped_steps"] = 0;
  return r;
}

template <typename T>
py::tuple evaluate_typed(const std::string& cell, const py::list& params, const py::object& x,
                         const py::object& y, Loss loss, bool every_step, int n_threads) {
  if (params.size() != 5) throw std::invalid_argument("params: expected [W, U, b, V, c]");
  std::array<CArray<T>, 5> a;
  for (int k = 0; k < 5; ++k) {
    a[k] = CArray<T>::ensure(params[k]);
    if (!a[k]) throw py::type_error("params[" + std::to_string(k) + "]: not an array");
  }
  auto view = cell_view<T>(cell, nullptr, nullptr, nullptr, a[0], a[1]);
  view.W = a[0].data();
  view.U = a[1].data();
  view.b = a[2].data();
  if (a[2].size() != a[0].shape(0)) throw std::invalid_argument("b: wrong shape");
  if (a[3].ndim() != 2 || a[3].shape(1) != view.width || a[4].size() != a[3].shape(0))
    throw std::invalid_argument("V, c: expected shapes (n_out, width) and (n_out,)");
  const int n_out = static_cast<int>(a[3].shape(0));
  const SequenceData<T> data(x, y, loss, every_step, view.input_size, n_out);
  std::array<double, 2> e{};
  e = release_gil([&] {
    return evaluate_recurrent<T>(view, n_out, a[3].data(), a[4].data(), data.x.data(), data.steps,
                                 data.values_ptr(), data.labels_ptr(), data.n, loss, every_step,
                                 n_threads);
  });
  return py::make_tuple(e[0], e[1]);
}

bool is_float32(const py::list& params) {
  return params.size() > 0 && py::array::ensure(params[0]).dtype().is(py::dtype::of<float>());
}

}  // namespace

void register_train_recurrent(py::module_& m) {
  m.def(
      "train_recurrent_epoch",
      [](const std::string& cell, const py::list& params, const py::list& state1,
         const py::list& state2, const py::list& initial, const py::object& x, const py::object& y,
         const py::array& order, const std::string& loss, bool every_step, int batch_size,
         const py::dict& optimizer, std::int64_t steps_before, const std::string& clip_mode,
         double clip, int n_threads) {
        RecurrentTrainOptions o;
        set_training_options(o, loss, batch_size, optimizer, steps_before, clip_mode, clip,
                             n_threads);
        o.every_step = every_step;
        if (is_float32(params))
          return train_typed<float>(cell, params, state1, state2, initial, x, y, order, o);
        return train_typed<double>(cell, params, state1, state2, initial, x, y, order, o);
      },
      py::arg("cell"), py::arg("params"), py::arg("state1"), py::arg("state2"),
      py::arg("initial"), py::arg("x"), py::arg("y"), py::arg("order"), py::arg("loss"),
      py::arg("every_step"), py::arg("batch_size"), py::arg("optimizer"),
      py::arg("steps_before"), py::arg("clip_mode"), py::arg("clip"), py::arg("n_threads"),
      "One epoch of a recurrent cell and its readout [W, U, b, V, c], updated in place with\n"
      "the optimizer state; returns its records.");
  m.def(
      "evaluate_recurrent",
      [](const std::string& cell, const py::list& params, const py::object& x, const py::object& y,
         const std::string& loss, bool every_step, int n_threads) {
        const Loss l = parse_loss(loss);
        if (is_float32(params))
          return evaluate_typed<float>(cell, params, x, y, l, every_step, n_threads);
        return evaluate_typed<double>(cell, params, x, y, l, every_step, n_threads);
      },
      py::arg("cell"), py::arg("params"), py::arg("x"), py::arg("y"), py::arg("loss"),
      py::arg("every_step"), py::arg("n_threads"),
      "(loss, accuracy) of a recurrent cell and its readout over a data set, forward only.");
}

}  // namespace pyjac::bindings
