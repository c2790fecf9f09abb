#include "arrays.hpp"
#include "pyjac/threads.hpp"

namespace pyjac::bindings {

void register_info(py::module_& m) {
  m.def("max_threads", &max_threads, "Threads the OpenMP runtime offers.");
  m.def("blas_num_threads", &blas_num_threads, "Threads OpenBLAS is set to use.");
#ifdef _OPENMP
  m.attr("openmp_version") = _OPENMP;
#else
  m.attr("openmp_version") = 0;
#endif
#ifdef PYJAC_HAS_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
}

}  // namespace pyjac::bindings
