// Conversions shared by the register_<topic>.cpp files.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace pyjac::bindings {

namespace py = pybind11;

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <typename V>
py::array_t<V> to_numpy(const std::vector<V>& v) {
  py::array_t<V> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// The core's "first non-finite" indices use -1 for "none": Python gets None.
inline py::object index_or_none(int index) {
  return index < 0 ? py::object(py::none()) : py::int_(index);
}

inline py::array_t<double> to_numpy_2d(const std::vector<double>& v, py::ssize_t rows,
                                       py::ssize_t cols) {
  py::array_t<double> a({rows, cols});
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

// Converts each entry of a list to a C-contiguous array of T with the given shape,
// naming the argument and index in the error.
template <typename T>
std::vector<CArray<T>> convert_list(const py::sequence& seq, const std::vector<py::ssize_t>& rows,
                                    const std::vector<py::ssize_t>& cols, const char* name) {
  std::vector<CArray<T>> out;
  out.reserve(seq.size());
  for (std::size_t i = 0; i < seq.size(); ++i) {
    CArray<T> a = CArray<T>::ensure(seq[i]);
    if (!a) throw py::type_error(std::string(name) + "[" + std::to_string(i) + "]: not an array");
    const bool matrix = !cols.empty();
    const bool ok = matrix ? (a.ndim() == 2 && a.shape(0) == rows[i] && a.shape(1) == cols[i])
                           : (a.ndim() == 1 && a.shape(0) == rows[i]);
    if (!ok)
      throw std::invalid_argument(std::string(name) + "[" + std::to_string(i) +
                                  "]: wrong shape for the chain's widths");
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace pyjac::bindings
