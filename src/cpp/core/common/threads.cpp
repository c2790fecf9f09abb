#include "pyjac/common/threads.hpp"

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

#include <omp.h>

#include "pyjac/common/blas.hpp"

namespace pyjac {

int max_threads() { return omp_get_max_threads(); }

int thread_limit() { return std::min(1024, std::max(64, 4 * omp_get_num_procs())); }

int resolve_threads(int n_threads) {
  if (n_threads > thread_limit())
    throw std::invalid_argument("n_threads: " + std::to_string(n_threads) +
                                " is more than this machine can use (at most " +
                                std::to_string(thread_limit()) + ")");
  return n_threads > 0 ? n_threads : omp_get_max_threads();
}

int blas_num_threads() { return blas::get_num_threads(); }

// OpenBLAS's thread count is one process-wide setting (this build has no thread-local
// setter), so concurrent calls share it: while any scope that needs one BLAS thread is
// active it stays 1, otherwise it is the largest count asked for, and the caller's
// setting comes back when the last scope ends. Guarded by one mutex, so two calls never
// save or restore each other's values.
namespace {

struct BlasThreadBudget {
  std::mutex mutex;
  int saved = 1;                  // the setting before the first active scope
  std::multiset<int> requests;    // one entry per active scope
};

BlasThreadBudget& budget() {
  static BlasThreadBudget b;
  return b;
}

void apply_budget(BlasThreadBudget& b) {
  const int want = b.requests.empty()        ? b.saved
                   : *b.requests.begin() == 1 ? 1
                                              : *b.requests.rbegin();
  if (blas::get_num_threads() != want) blas::set_num_threads(want);
}

}  // namespace

BlasThreadScope::BlasThreadScope(int n_threads) : requested_(std::max(1, n_threads)) {
  BlasThreadBudget& b = budget();
  std::lock_guard<std::mutex> lock(b.mutex);
  if (b.requests.empty()) b.saved = blas::get_num_threads();
  b.requests.insert(requested_);
  apply_budget(b);
}

BlasThreadScope::~BlasThreadScope() {
  BlasThreadBudget& b = budget();
  std::lock_guard<std::mutex> lock(b.mutex);
  b.requests.erase(b.requests.find(requested_));
  apply_budget(b);
}

}  // namespace pyjac
