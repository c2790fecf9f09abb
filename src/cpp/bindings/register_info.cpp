#include <string>

#include "arrays.hpp"
#include "release_gil.hpp"
#include "pyjac/chain/calibrate.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac::bindings {

void register_info(py::module_& m) {
  m.def("max_threads", &max_threads, "Threads the OpenMP runtime offers.");
  m.def("thread_limit", &thread_limit, "The most threads a call may ask for.");
  m.def("blas_num_threads", &blas_num_threads, "Threads OpenBLAS is set to use.");
  m.def("busy_cores_elsewhere", &busy_cores_elsewhere,
        "Cores other processes keep busy, averaged over recent calls (0 off Linux); a call "
        "with n_threads=None uses the others.");
  m.def("blas_kernel", [] { return std::string(blas::kernel_name()); },
        "The kernel family OpenBLAS chose at load time (OPENBLAS_CORETYPE overrides it).");
  m.def(
      "gemm_gflops",
      [](int n, int repeats, int n_threads, bool single) {
        return release_gil([&] { return gemm_gflops(n, repeats, n_threads, single); });
      },
      py::arg("n") = 2048, py::arg("repeats") = 3, py::arg("n_threads") = -1,
      py::arg("single") = true,
      "Best GFLOP/s of an n x n x n GEMM through the same OpenBLAS the core uses.");
  m.def(
      "backprop_blas_seconds",
      [](int depth, int width, int batch, int repeats, int n_threads) {
        return release_gil([&] {
          return backprop_blas_seconds(depth, width, batch, repeats, n_threads);
        });
      },
      py::arg("depth"), py::arg("width"), py::arg("batch"), py::arg("repeats") = 5,
      py::arg("n_threads") = -1,
      "Median seconds the BLAS calls of a float32 tiled backprop take alone, in its own "
      "schedule: the floor under Chain.backprop on these BLAS kernels.");
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
