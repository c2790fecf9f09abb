// pyjac._core: the private extension module; the pyjac package re-exports it.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pyjac::bindings {
void register_info(py::module_& m);
void register_chain(py::module_& m);
void register_curvature(py::module_& m);
void register_jacobian(py::module_& m);
void register_spectral(py::module_& m);
void register_recurrent(py::module_& m);
void register_regenerated(py::module_& m);
void register_train(py::module_& m);
void register_train_recurrent(py::module_& m);
void register_transformer(py::module_& m);
}  // namespace pyjac::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyjac's C++ core (private: use the pyjac package).";
  pyjac::bindings::register_info(m);
  pyjac::bindings::register_chain(m);
  pyjac::bindings::register_curvature(m);
  pyjac::bindings::register_jacobian(m);
  pyjac::bindings::register_spectral(m);
  pyjac::bindings::register_recurrent(m);
  pyjac::bindings::register_regenerated(m);
  pyjac::bindings::register_train(m);
  pyjac::bindings::register_train_recurrent(m);
  pyjac::bindings::register_transformer(m);
}
