// The dict that every chain backprop binding returns: BackpropStats as numpy arrays, with
// None for what weight_grads=false did not compute.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "arrays.hpp"
#include "pyjac/chain/chain.hpp"

namespace pyjac::bindings {

inline py::dict backprop_result(const BackpropStats& s, bool weight_grads, py::ssize_t depth,
                                int batch) {
  py::dict r;
  r["loss"] = s.loss;
  r["grad_norm"] = to_numpy(s.grad_norm);
  r["activation_norm"] = to_numpy(s.activation_norm);
  // What weight_grads=false did not compute is None.
  const auto weights_or_none = [&](py::object value) {
    return weight_grads ? value : py::object(py::none());
  };
  r["weight_grad_norm"] = weights_or_none(to_numpy(s.weight_grad_norm));
  r["bias_grad_norm"] = weights_or_none(to_numpy(s.bias_grad_norm));
  r["log_grad_norm"] = to_numpy(s.log_grad_norm);
  r["log_weight_grad_norm"] = weights_or_none(to_numpy(s.log_weight_grad_norm));
  r["log_bias_grad_norm"] = weights_or_none(to_numpy(s.log_bias_grad_norm));
  r["first_underflow_layer"] = index_or_none(s.first_underflow_layer);
  r["per_example_weight_grad_norm"] =
      weight_grads ? py::object(to_numpy_2d(s.per_example_weight_grad_norm, depth, batch))
                   : py::object(py::none());
  const auto empty_is_none = [](const std::vector<double>& v) {
    return v.empty() ? py::object(py::none()) : py::object(to_numpy(v));
  };
  r["gradient_noise_scale"] = empty_is_none(s.gradient_noise_scale);
  r["gradient_snr"] = empty_is_none(s.gradient_snr);
  r["derivative_mean"] = to_numpy(s.derivative_mean);
  r["saturated_fraction"] = to_numpy(s.saturated_fraction);
  r["dead_fraction"] = to_numpy(s.dead_fraction);
  r["underflow_count"] = to_numpy(s.underflow_count);
  r["overflow_count"] = to_numpy(s.overflow_count);
  r["zero_count"] = to_numpy(s.zero_count);
  r["dz_underflow_count"] = to_numpy(s.dz_underflow_count);
  r["dz_overflow_count"] = to_numpy(s.dz_overflow_count);
  r["first_nonfinite_layer"] = index_or_none(s.first_nonfinite_layer);
  static const char* stages[] = {nullptr, "forward", "backward"};
  r["first_nonfinite_stage"] = s.first_nonfinite_stage == 0
                                   ? py::object(py::none())
                                   : py::str(stages[s.first_nonfinite_stage]);
  r["used_ghost_norm"] = s.used_ghost_norm;
  return r;
}

}  // namespace pyjac::bindings
