// Conversions shared by the training bindings (chains and recurrent nets).
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "pyjac/train/optimizer.hpp"

namespace pyjac::bindings {

// The optimiser's settings from the dict the Python layer checked: optimizer, lr,
// momentum, nesterov, weight_decay, beta1, beta2, eps.
inline OptimizerOptions optimizer_options(const py::dict& d) {
  OptimizerOptions o;
  o.kind = parse_optimizer(d["optimizer"].cast<std::string>());
  o.lr = d["lr"].cast<double>();
  o.momentum = d["momentum"].cast<double>();
  o.nesterov = d["nesterov"].cast<bool>();
  o.weight_decay = d["weight_decay"].cast<double>();
  o.beta1 = d["beta1"].cast<double>();
  o.beta2 = d["beta2"].cast<double>();
  o.eps = d["eps"].cast<double>();
  return o;
}

// The optimiser writes into the caller's arrays, so a converted copy would be silently
// lost: `item` must already be a writable C-contiguous array of T with `size` entries.
template <typename T>
T* writable_array(const py::handle& item, py::ssize_t size, const std::string& name) {
  auto a = py::array_t<T>::ensure(item);
  if (!a || a.ptr() != item.ptr() || !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(name + ": must be a writable C-contiguous array of the model's dtype");
  if (a.size() != size) throw std::invalid_argument(name + ": wrong shape");
  return a.mutable_data();
}

// One writable array per entry of `sizes`, or none (an empty list).
template <typename T>
std::vector<T*> writable_list(const py::sequence& seq, const std::vector<py::ssize_t>& sizes,
                              const char* name) {
  std::vector<T*> out;
  if (seq.size() == 0) return out;
  if (seq.size() != sizes.size())
    throw std::invalid_argument(std::string(name) + ": one array per parameter is required");
  for (std::size_t i = 0; i < seq.size(); ++i)
    out.push_back(writable_array<T>(seq[i], sizes[i], std::string(name) + "[" +
                                                          std::to_string(i) + "]"));
  return out;
}

}  // namespace pyjac::bindings
