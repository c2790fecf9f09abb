#include "jacobian/linearize.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "chain/norm_layers.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "common/reduce.hpp"
#include "common/tiled_blas.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

// Applies the symmetric LayerNorm Jacobian inv_std * (I - 11^T/n - u u^T/n) to each
// row of a (k x n) block in place.
template <typename T>
void layernorm_jacobian_rows(T* a, int k, int n, const T* u, T inv_std, int nt) {
  const double inv = inv_std;
  parallel_for(k, nt, worth_parallel(std::size_t(k) * n), [&](int i) {
    T* r = a + static_cast<std::size_t>(i) * n;
    double m1 = 0.0, m2 = 0.0;
    for (int j = 0; j < n; ++j) {
      m1 += r[j];
      m2 += static_cast<double>(r[j]) * u[j];
    }
    m1 /= n;
    m2 /= n;
    for (int j = 0; j < n; ++j) r[j] = static_cast<T>(inv * (r[j] - m1 - u[j] * m2));
  });
}

template <typename T>
void scale_columns(T* a, int k, int n, const T* d, int nt) {
  parallel_for(k, nt, worth_parallel(std::size_t(k) * n), [&](int i) {
    T* r = a + static_cast<std::size_t>(i) * n;
    for (int j = 0; j < n; ++j) r[j] *= d[j];
  });
}

template <typename T>
void add_into(T* out, const T* in, std::size_t n, int nt) {
  const long long nn = static_cast<long long>(n);
  parallel_for(nn, nt, worth_parallel(n), [&](long long i) { out[i] += in[i]; });
}

}  // namespace

template <typename T>
Linearization<T> linearize(const ChainView<T>& c, const T* x, int layers, int nt) {
  c.validate();
  if (c.norm == Norm::BatchNorm)
    throw std::invalid_argument(
        "norm: 'batchnorm' normalises over a batch, so the Jacobian at one input is not "
        "defined; use norm=None or 'layernorm'");
  if (layers < 0 || layers > c.depth())
    throw std::invalid_argument("depth: must lie in [0, " + std::to_string(c.depth()) + "]");
  Linearization<T> lin;
  lin.chain = &c;
  lin.layers = layers;
  lin.d.resize(layers);
  lin.u.resize(layers);
  lin.inv_std.assign(layers, T(1));
  int widest = 0;
  for (int w : c.widths) widest = std::max(widest, w);
  std::vector<T> h(x, x + c.widths[0]), z(widest);
  for (int l = 0; l < layers; ++l) {
    check_interrupt();
    const T branch = static_cast<T>(c.branch_scale(l));
    const bool skip = c.residual_at(l);
    const int n_in = c.widths[l], n_out = c.widths[l + 1];
    std::memcpy(z.data(), c.bias(l), sizeof(T) * n_out);
    tiled_gemv(Trans::No, n_out, n_in, T(1), c.weight(l), n_in, h.data(), T(1), z.data(), nt);
    if (c.norm == Norm::LayerNorm) {
      norm_forward(c.norm, z.data(), 1, n_out, &lin.inv_std[l], 1);
      lin.u[l].assign(z.begin(), z.begin() + n_out);
    }
    lin.d[l].resize(n_out);
    std::vector<T> h_next(n_out);
    bool finite = true;
    for (int j = 0; j < n_out; ++j) {
      const auto a = activate(c.activations[l], z[j]);
      h_next[j] = skip ? h[j] + branch * a.value : a.value;
      lin.d[l][j] = branch * a.derivative;
      finite = finite && std::isfinite(static_cast<double>(h_next[j]));
    }
    if (!finite && lin.first_nonfinite_layer < 0) lin.first_nonfinite_layer = l + 1;
    h.swap(h_next);
  }
  return lin;
}

template <typename T>
void apply_layer(const Linearization<T>& lin, int l, const T* in, int k, T* out, int nt) {
  const ChainView<T>& c = *lin.chain;
  const int n_in = lin.n_in(l), n_out = lin.n_out(l);
  if (k == 1)
    tiled_gemv(Trans::No, n_out, n_in, T(1), c.weight(l), n_in, in, T(0), out, nt);
  else
    tiled_gemm(Trans::No, Trans::Yes, k, n_out, n_in, T(1), in, n_in, c.weight(l), n_in, T(0),
               out, n_out, nt);
  if (c.norm == Norm::LayerNorm)
    layernorm_jacobian_rows(out, k, n_out, lin.u[l].data(), lin.inv_std[l], nt);
  scale_columns(out, k, n_out, lin.d[l].data(), nt);
  if (c.residual_at(l)) add_into(out, in, static_cast<std::size_t>(k) * n_out, nt);
}

template <typename T>
void apply_layer_transpose(const Linearization<T>& lin, int l, const T* in, int k, T* out,
                           int nt) {
  const ChainView<T>& c = *lin.chain;
  const int n_in = lin.n_in(l), n_out = lin.n_out(l);
  std::vector<T> g(in, in + static_cast<std::size_t>(k) * n_out);
  scale_columns(g.data(), k, n_out, lin.d[l].data(), nt);
  if (c.norm == Norm::LayerNorm)
    layernorm_jacobian_rows(g.data(), k, n_out, lin.u[l].data(), lin.inv_std[l], nt);
  if (c.residual_at(l)) std::memcpy(out, in, sizeof(T) * static_cast<std::size_t>(k) * n_in);
  const T beta = c.residual_at(l) ? T(1) : T(0);
  if (k == 1)
    tiled_gemv(Trans::Yes, n_out, n_in, T(1), c.weight(l), n_in, g.data(), beta, out, nt);
  else
    tiled_gemm(Trans::No, Trans::No, k, n_in, n_out, T(1), g.data(), n_out, c.weight(l), n_in,
               beta, out, n_in, nt);
}

template <typename T>
Rescaled rescale_pow2(T* a, std::size_t n, int nt) {
  (void)nt;
  // Scale by the largest |entry| first: a sum of squares of tiny (or huge) entries
  // would underflow (overflow) although the block itself is representable.
  const double biggest = max_abs(a, n);
  if (!std::isfinite(biggest)) return {0.0, NAN};
  if (biggest == 0.0) return {0.0, 0.0};
  int e = 0;
  std::frexp(biggest, &e);  // biggest = f * 2^e, f in [0.5, 1)
  if (e != 0) scale_pow2(a, n, e);
  double sq = 0.0;
  for (std::size_t i = 0; i < n; ++i) sq += static_cast<double>(a[i]) * a[i];
  return {e * 0.69314718055994530942, std::sqrt(sq)};
}

#define PYJAC_INSTANTIATE(T)                                                                  \
  template Linearization<T> linearize<T>(const ChainView<T>&, const T*, int, int);            \
  template void apply_layer<T>(const Linearization<T>&, int, const T*, int, T*, int);         \
  template void apply_layer_transpose<T>(const Linearization<T>&, int, const T*, int, T*, int); \
  template Rescaled rescale_pow2<T>(T*, std::size_t, int);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac::detail
