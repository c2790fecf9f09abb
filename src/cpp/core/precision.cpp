#include "pyjac/precision.hpp"

#include "low_precision.hpp"
#include "reduce.hpp"

namespace pyjac {

template <typename T>
RoundingCounts round_to_format(T* a, std::size_t n, GradFormat format, int n_threads) {
  RoundingCounts c;
  const long long total = static_cast<long long>(n);
  // Counts are integers, so the reductions do not depend on the thread count.
  long long under = 0, over = 0, zeros = 0;
  if (format == GradFormat::Native) {
#pragma omp parallel for num_threads(n_threads) if (detail::worth_parallel(n)) \
    schedule(static) reduction(+ : zeros)
    for (long long k = 0; k < total; ++k) zeros += a[k] == T(0) ? 1 : 0;
    c.zeros = zeros;
    return c;
  }
  const detail::FormatSpec f = detail::format_spec(format);
#pragma omp parallel for num_threads(n_threads) if (detail::worth_parallel(n)) \
    schedule(static) reduction(+ : under, over, zeros)
  for (long long k = 0; k < total; ++k) {
    const double x = static_cast<double>(a[k]);
    const double r = detail::round_to_format(x, f);
    under += (x != 0.0 && r == 0.0) ? 1 : 0;
    over += (std::isfinite(x) && !std::isfinite(r)) ? 1 : 0;
    zeros += r == 0.0 ? 1 : 0;
    a[k] = static_cast<T>(r);
  }
  c.underflow = under;
  c.overflow = over;
  c.zeros = zeros;
  return c;
}

template RoundingCounts round_to_format<float>(float*, std::size_t, GradFormat, int);
template RoundingCounts round_to_format<double>(double*, std::size_t, GradFormat, int);

}  // namespace pyjac
