// One thread budget for OpenMP and OpenBLAS together.
#pragma once

namespace pyjac {

// Number of threads a call may use: n_threads > 0 is taken as given, -1 (or 0
// after validation upstream) means every core the OpenMP runtime offers. Throws
// std::invalid_argument above thread_limit().
int resolve_threads(int n_threads);

// The most threads a call may ask for: 4x the cores, at least 64, at most 1024.
int thread_limit();

// Sets OpenBLAS's thread count for the lifetime of the scope and restores it
// afterwards, safely under concurrent calls (see threads.cpp). Kernels that parallelise
// over independent items with OpenMP give BLAS one thread, so the two pools never
// multiply.
class BlasThreadScope {
 public:
  explicit BlasThreadScope(int n_threads);
  ~BlasThreadScope();
  BlasThreadScope(const BlasThreadScope&) = delete;
  BlasThreadScope& operator=(const BlasThreadScope&) = delete;

 private:
  int requested_;
};

int blas_num_threads();
int max_threads();

}  // namespace pyjac
