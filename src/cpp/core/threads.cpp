#include "pyjac/threads.hpp"

#include <omp.h>

#include "pyjac/blas.hpp"

namespace pyjac {

int max_threads() { return omp_get_max_threads(); }

int resolve_threads(int n_threads) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

int blas_num_threads() { return blas::get_num_threads(); }

BlasThreadScope::BlasThreadScope(int n_threads) : previous_(blas::get_num_threads()) {
  if (n_threads != previous_) blas::set_num_threads(n_threads);
}

BlasThreadScope::~BlasThreadScope() {
  if (blas::get_num_threads() != previous_) blas::set_num_threads(previous_);
}

}  // namespace pyjac
