// Runs a core call with the GIL released and Ctrl-C honoured: the core polls a check
// that briefly takes the GIL back and runs Python's signal handlers; when one raises
// (KeyboardInterrupt, or whatever a user's handler raises), the core stops with
// pyjac::Interrupted and that Python exception is raised here instead.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <utility>

#include "pyjac/common/interrupt.hpp"

namespace pyjac::bindings {

namespace py = pybind11;

template <typename F>
auto release_gil(F&& compute) {
  std::optional<py::error_already_set> raised;
  ScopedInterruptCheck check([&raised] {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    raised.emplace();  // takes the pending Python exception
    return true;
  });
  try {
    py::gil_scoped_release release;
    return compute();
  } catch (const Interrupted&) {
    if (raised) throw std::move(*raised);
    PyErr_SetNone(PyExc_KeyboardInterrupt);  // the core stopped without a Python error
    throw py::error_already_set();
  }
}

}  // namespace pyjac::bindings
