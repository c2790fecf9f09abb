#include "pyjac/calibrate.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <vector>

#include "pyjac/blas.hpp"
#include "pyjac/threads.hpp"

namespace pyjac {
namespace {

template <typename T>
double best_seconds(int n, int repeats) {
  const std::size_t size = static_cast<std::size_t>(n) * n;
  std::vector<T> a(size), b(size), c(size);
  for (std::size_t i = 0; i < size; ++i) {
    a[i] = static_cast<T>((i % 7) * 0.25 - 0.75);
    b[i] = static_cast<T>((i % 5) * 0.5 - 1.0);
  }
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and threads
    const auto t0 = std::chrono::steady_clock::now();
    blas::gemm(blas::Trans::No, blas::Trans::No, n, n, n, T(1), a.data(), n, b.data(), n, T(0),
               c.data(), n);
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    if (r > 0) best = std::min(best, dt.count());
  }
  return best;
}

}  // namespace

double gemm_gflops(int n, int repeats, int n_threads, bool single) {
  if (n < 1) throw std::invalid_argument("n: must be at least 1");
  if (repeats < 1) throw std::invalid_argument("repeats: must be at least 1");
  BlasThreadScope scope(resolve_threads(n_threads));
  const double seconds = single ? best_seconds<float>(n, repeats) : best_seconds<double>(n, repeats);
  return 2.0 * n * static_cast<double>(n) * n / seconds * 1e-9;
}

}  // namespace pyjac
