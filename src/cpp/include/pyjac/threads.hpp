// One thread budget for OpenMP and OpenBLAS together.
#pragma once

namespace pyjac {

// Number of threads a call may use: n_threads > 0 is taken as given, -1 (or 0
// after validation upstream) means every core the OpenMP runtime offers.
int resolve_threads(int n_threads);

// Sets OpenBLAS's thread count for the lifetime of the scope and restores it
// afterwards. Sequential-over-layers kernels give BLAS the whole budget; kernels
// that parallelise over independent items with OpenMP give BLAS one thread, so the
// two pools never multiply.
class BlasThreadScope {
 public:
  explicit BlasThreadScope(int n_threads);
  ~BlasThreadScope();
  BlasThreadScope(const BlasThreadScope&) = delete;
  BlasThreadScope& operator=(const BlasThreadScope&) = delete;

 private:
  int previous_;
};

int blas_num_threads();
int max_threads();

}  // namespace pyjac
