#include "pyjac/chain/precision.hpp"

#include "chain/low_precision.hpp"
#include "common/reduce.hpp"

namespace pyjac {

template <typename T>
RoundingCounts round_to_format(T* a, std::size_t n, GradFormat format, int n_threads) {
  RoundingCounts c;
  const long long total = static_cast<long long>(n);
  // Counts are integers, so the reductions do not depend on the thread count.
  long long under = 0, over = 0, zeros = 0;
  const bool parallel = n_threads > 1 && detail::worth_parallel(n);
  if (format == GradFormat::Native) {
    auto count = [&](long long k) { return a[k] == T(0) ? 1 : 0; };
    if (parallel) {
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(+ : zeros)
      for (long long k = 0; k < total; ++k) zeros += count(k);
    } else {
      for (long long k = 0; k < total; ++k) zeros += count(k);
    }
    c.zeros = zeros;
    return c;
  }
  const detail::FormatSpec f = detail::format_spec(format);
  auto round_one = [&](long long k, long long& u, long long& o, long long& z) {
    const double x = static_cast<double>(a[k]);
    const double r = detail::round_to_format(x, f);
    u += (x != 0.0 && r == 0.0) ? 1 : 0;
    o += (std::isfinite(x) && !std::isfinite(r)) ? 1 : 0;
    z += r == 0.0 ? 1 : 0;
    a[k] = static_cast<T>(r);
  };
  if (parallel) {
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(+ : under, over, zeros)
    for (long long k = 0; k < total; ++k) round_one(k, under, over, zeros);
  } else {
    for (long long k = 0; k < total; ++k) round_one(k, under, over, zeros);
  }
  c.underflow = under;
  c.overflow = over;
  c.zeros = zeros;
  return c;
}

template RoundingCounts round_to_format<float>(float*, std::size_t, GradFormat, int);
template RoundingCounts round_to_format<double>(double*, std::size_t, GradFormat, int);

}  // namespace pyjac
