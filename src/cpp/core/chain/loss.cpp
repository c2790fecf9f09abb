#include "chain/loss.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/reduce.hpp"

namespace pyjac::detail {

template <typename T>
double loss_and_gradient(Loss loss, const T* h, int batch, int n, const T* target,
                         const std::int64_t* labels, T* grad, int n_threads) {
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  std::vector<double> row_loss(batch, 0.0);
  switch (loss) {
    case Loss::GradOutput:
      std::copy(target, target + total, grad);
      return std::numeric_limits<double>::quiet_NaN();
    case Loss::SumSquares:
      parallel_for(batch, n_threads, worth_parallel(total), [&](int i) {
        double s = 0.0;
        for (int j = 0; j < n; ++j) {
          const std::size_t k = static_cast<std::size_t>(i) * n + j;
          grad[k] = h[k];
          s += static_cast<double>(h[k]) * h[k];
        }
        row_loss[i] = 0.5 * s;
      });
      break;
    case Loss::Mse: {
      const double scale = 2.0 / static_cast<double>(total);
      parallel_for(batch, n_threads, worth_parallel(total), [&](int i) {
        double s = 0.0;
        for (int j = 0; j < n; ++j) {
          const std::size_t k = static_cast<std::size_t>(i) * n + j;
          const double d = static_cast<double>(h[k]) - target[k];
          grad[k] = static_cast<T>(scale * d);
          s += d * d;
        }
        row_loss[i] = s / static_cast<double>(total);
      });
      break;
    }
    case Loss::CrossEntropy: {
      parallel_for(batch, n_threads, worth_parallel(total), [&](int i) {
        const T* r = h + static_cast<std::size_t>(i) * n;
        T* g = grad + static_cast<std::size_t>(i) * n;
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < n; ++j) m = std::max(m, static_cast<double>(r[j]));
        // exp once per entry: kept in g, then normalised in place.
        double z = 0.0;
        for (int j = 0; j < n; ++j) {
          const double e = std::exp(r[j] - m);
          g[j] = static_cast<T>(e);
          z += e;
        }
        const double lse = m + std::log(z);
        const auto y = static_cast<int>(labels[i]);
        const double inv = 1.0 / (z * batch);
        for (int j = 0; j < n; ++j) g[j] = static_cast<T>(g[j] * inv);
        // p_y - 1 cancels when p_y is near 1: from the double exponential, not from g.
        g[y] = static_cast<T>((std::exp(r[y] - m) / z - 1.0) / batch);
        row_loss[i] = (lse - r[y]) / batch;
      });
      break;
    }
  }
  double sum = 0.0;
  for (double v : row_loss) sum += v;
  return sum;
}

template <typename T>
void loss_hessian_product(Loss loss, const T* h, int batch, int n, const T* rh, T* out,
                          int n_threads) {
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  switch (loss) {
    case Loss::GradOutput:
      std::fill(out, out + total, T(0));
      return;
    case Loss::SumSquares:
      std::copy(rh, rh + total, out);
      return;
    case Loss::Mse: {
      const double scale = 2.0 / static_cast<double>(total);
      for (std::size_t k = 0; k < total; ++k) out[k] = static_cast<T>(scale * rh[k]);
      return;
    }
    case Loss::CrossEntropy:
      parallel_for(batch, n_threads, worth_parallel(total), [&](int i) {
        const T* r = h + static_cast<std::size_t>(i) * n;
        const T* v = rh + static_cast<std::size_t>(i) * n;
        T* o = out + static_cast<std::size_t>(i) * n;
        double m = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < n; ++j) m = std::max(m, static_cast<double>(r[j]));
        double z = 0.0, pv = 0.0;
        for (int j = 0; j < n; ++j) {
          const double e = std::exp(r[j] - m);
          z += e;
          pv += e * v[j];
        }
        pv /= z;
        for (int j = 0; j < n; ++j) {
          const double p = std::exp(r[j] - m) / z;
          o[j] = static_cast<T>(p * (v[j] - pv) / batch);
        }
      });
      return;
  }
}

template void loss_hessian_product<float>(Loss, const float*, int, int, const float*, float*,
                                          int);
template void loss_hessian_product<double>(Loss, const double*, int, int, const double*,
                                           double*, int);
template double loss_and_gradient<float>(Loss, const float*, int, int, const float*,
                                         const std::int64_t*, float*, int);
template double loss_and_gradient<double>(Loss, const double*, int, int, const double*,
                                          const std::int64_t*, double*, int);

}  // namespace pyjac::detail
