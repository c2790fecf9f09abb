// LayerNorm (over units, per example) and BatchNorm (per unit, over the batch),
// without affine parameters: u = (z - mean) / sqrt(var + eps), biased variance,
// training-mode statistics as in PyTorch.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "pyjac/common/types.hpp"
#include "common/reduce.hpp"

namespace pyjac::detail {

// In place on z (batch x n); writes 1/sqrt(var+eps) per row (layernorm, batch entries)
// or per unit (batchnorm, n entries) to inv_std.
template <typename T>
void norm_forward(Norm norm, T* z, int batch, int n, T* inv_std, int n_threads) {
  if (norm == Norm::LayerNorm) {
    parallel_for(batch, n_threads, worth_parallel(std::size_t(batch) * n), [&](int i) {
      T* r = z + static_cast<std::size_t>(i) * n;
      double mean = 0.0;
      for (int j = 0; j < n; ++j) mean += r[j];
      mean /= n;
      double var = 0.0;
      for (int j = 0; j < n; ++j) var += (r[j] - mean) * (r[j] - mean);
      var /= n;
      const double inv = 1.0 / std::sqrt(var + kNormEps);
      for (int j = 0; j < n; ++j) r[j] = static_cast<T>((r[j] - mean) * inv);
      inv_std[i] = static_cast<T>(inv);
    });
  } else if (norm == Norm::BatchNorm) {
    parallel_for(n, n_threads, worth_parallel(std::size_t(batch) * n), [&](int j) {
      double mean = 0.0;
      for (int i = 0; i < batch; ++i) mean += z[static_cast<std::size_t>(i) * n + j];
      mean /= batch;
      double var = 0.0;
      for (int i = 0; i < batch; ++i) {
        const double d = z[static_cast<std::size_t>(i) * n + j] - mean;
        var += d * d;
      }
      var /= batch;
      const double inv = 1.0 / std::sqrt(var + kNormEps);
      for (int i = 0; i < batch; ++i) {
        T& v = z[static_cast<std::size_t>(i) * n + j];
        v = static_cast<T>((v - mean) * inv);
      }
      inv_std[j] = static_cast<T>(inv);
    });
  }
}

// In place on du (batch x n): du <- dL/dz given u (the normalised values) and inv_std.
// dz = inv_std * (du - mean(du) - u * mean(du * u)), means over the normalised axis.
template <typename T>
void norm_backward(Norm norm, T* du, const T* u, int batch, int n, const T* inv_std,
                   int n_threads) {
  if (norm == Norm::LayerNorm) {
    parallel_for(batch, n_threads, worth_parallel(std::size_t(batch) * n), [&](int i) {
      T* g = du + static_cast<std::size_t>(i) * n;
      const T* x = u + static_cast<std::size_t>(i) * n;
      double m1 = 0.0, m2 = 0.0;
      for (int j = 0; j < n; ++j) {
        m1 += g[j];
        m2 += static_cast<double>(g[j]) * x[j];
      }
      m1 /= n;
      m2 /= n;
      const double inv = inv_std[i];
      for (int j = 0; j < n; ++j) g[j] = static_cast<T>(inv * (g[j] - m1 - x[j] * m2));
    });
  } else if (norm == Norm::BatchNorm) {
    parallel_for(n, n_threads, worth_parallel(std::size_t(batch) * n), [&](int j) {
      double m1 = 0.0, m2 = 0.0;
      for (int i = 0; i < batch; ++i) {
        const std::size_t k = static_cast<std::size_t>(i) * n + j;
        m1 += du[k];
        m2 += static_cast<double>(du[k]) * u[k];
      }
      m1 /= batch;
      m2 /= batch;
      const double inv = inv_std[j];
      for (int i = 0; i < batch; ++i) {
        const std::size_t k = static_cast<std::size_t>(i) * n + j;
        du[k] = static_cast<T>(inv * (du[k] - m1 - u[k] * m2));
      }
    });
  }
}

}  // namespace pyjac::detail
