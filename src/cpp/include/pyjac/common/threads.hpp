// One thread budget for OpenMP and OpenBLAS together.
#pragma once

namespace pyjac {

// Number of threads a call may use: n_threads > 0 is taken as given; -1 (or 0 after
// validation upstream) means every core the OpenMP runtime offers that other processes
// are not keeping busy (busy_cores_elsewhere), at least one. Throws
// std::invalid_argument above thread_limit().
int resolve_threads(int n_threads);

// Cores that other processes keep busy, as this process sees it over its recent calls:
// the kernel's count of running tasks (/proc/loadavg) less this process's own running
// threads (/proc/self/task), averaged over the last calls so that a momentary blip does
// not halve a call's threads. A team thread that shares its core with another process
// is descheduled for whole time slices while the others wait at the next barrier:
// beside one busy process on 2 cores, a 1000-layer chain took 65 ms on two threads and
// 13 ms on one. Linux only; 0 elsewhere, whenever /proc cannot be read, and when the
// process may run on only some of the machine's CPUs (the count is machine-wide).
int busy_cores_elsewhere();

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
