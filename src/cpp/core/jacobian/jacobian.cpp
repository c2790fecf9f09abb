// Feed-forward chains at one input: the explicit input-output Jacobian, the norms
// of the Jacobian product at every depth, and Lyapunov exponents.
#include "pyjac/jacobian/jacobian.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "jacobian/linearize.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

template <typename T>
std::vector<int> prefix_widths(const ChainView<T>& c, int layers) {
  return std::vector<int>(c.widths.begin(), c.widths.begin() + layers + 1);
}

}  // namespace

template <typename T>
void chain_jacobian(const ChainView<T>& c, const T* x, int depth, T* out, int n_threads) {
  const int nt = resolve_threads(n_threads);
  BlasThreadScope blas_scope(1);  // OpenMP over fixed tiles instead: thread-count independent
  const auto lin = detail::linearize(c, x, depth, nt);
  const int n0 = c.widths[0], nd = c.widths[depth];
  int widest = 0;
  for (int l = 0; l <= depth; ++l) widest = std::max(widest, c.widths[l]);
  if (depth == 0) {
    std::fill(out, out + static_cast<std::size_t>(n0) * n0, T(0));
    for (int i = 0; i < n0; ++i) out[static_cast<std::size_t>(i) * n0 + i] = T(1);
    return;
  }
  // Forward accumulation pushes n_0 vectors through every layer, reverse
  // accumulation n_depth: take the cheaper one.
  const bool reverse = nd < n0;
  const int k = reverse ? nd : n0;
  std::vector<T> cur(static_cast<std::size_t>(k) * widest, T(0)), next(cur.size());
  for (int i = 0; i < k; ++i) cur[static_cast<std::size_t>(i) * k + i] = T(1);
  if (reverse) {
    for (int l = depth - 1; l >= 0; --l) {
      check_interrupt();
      detail::apply_layer_transpose(lin, l, cur.data(), k, next.data(), nt);
      cur.swap(next);
    }
    std::memcpy(out, cur.data(), sizeof(T) * static_cast<std::size_t>(nd) * n0);
  } else {
    for (int l = 0; l < depth; ++l) {
      check_interrupt();
      detail::apply_layer(lin, l, cur.data(), k, next.data(), nt);
      cur.swap(next);
    }
    // cur holds P^T (n_0 x n_depth).
    for (int i = 0; i < nd; ++i)
      for (int j = 0; j < n0; ++j)
        out[static_cast<std::size_t>(i) * n0 + j] = cur[static_cast<std::size_t>(j) * nd + i];
  }
}

template <typename T>
ChainProductResult chain_jacobian_norms(const ChainView<T>& c, const T* x,
                                        const ProductOptions& options) {
  const int nt = resolve_threads(options.n_threads);
  ChainProductResult res;
  detail::Linearization<T> lin;
  {
    BlasThreadScope blas_scope(1);
    lin = detail::linearize(c, x, c.depth(), nt);
  }
  res.first_nonfinite_layer = lin.first_nonfinite_layer;
  const BlockApply<T> apply = [&lin, nt](int t, const T* in, int k, T* out) {
    detail::apply_layer(lin, t, in, k, out, nt);
  };
  res.product = track_product<T>(prefix_widths(c, c.depth()), apply, options);
  return res;
}

template <typename T>
std::vector<double> chain_lyapunov_exponents(const ChainView<T>& c, const T* x, int k,
                                             std::uint64_t seed, int n_threads,
                                             int* first_nonfinite_layer) {
  c.validate();
  const int n0 = c.widths[0];
  const int narrowest = *std::min_element(c.widths.begin(), c.widths.end());
  if (k < 0) k = narrowest;
  if (k < 1 || k > narrowest)
    throw std::invalid_argument("k: must lie in [1, " + std::to_string(narrowest) +
                                "] (the narrowest width), got " + std::to_string(k));
  // The first k columns of the Q factor of one seeded Gaussian n_0 x n_0 matrix, one
  // column per random stream: QR is nested, so any k gives the leading columns of
  // the same Haar frame.
  std::vector<double> frame(static_cast<std::size_t>(k) * n0), tau(k);
  for (int j = 0; j < k; ++j) {
    Rng rng(seed, static_cast<std::uint64_t>(j));
    for (int i = 0; i < n0; ++i) frame[static_cast<std::size_t>(j) * n0 + i] = rng.normal();
  }
  BlasThreadScope blas_scope(1);
  if (blas::geqrf_colmajor(n0, k, frame.data(), n0, tau.data()) != 0 ||
      blas::orgqr_colmajor(n0, k, frame.data(), n0, tau.data()) != 0)
    throw std::runtime_error("lyapunov_exponents: LAPACK QR failed");
  ProductOptions o;
  o.method = ProductMethod::Qr;
  o.norms = false;
  o.k = k;
  o.initial_frame = std::move(frame);
  o.n_threads = n_threads;
  const auto res = chain_jacobian_norms(c, x, o);
  if (first_nonfinite_layer) *first_nonfinite_layer = res.first_nonfinite_layer;
  std::vector<double> exponents = res.product.log_diag_sum;
  for (double& e : exponents) e /= c.depth();
  return exponents;
}

#define PYJAC_INSTANTIATE(T)                                                                   \
  template void chain_jacobian<T>(const ChainView<T>&, const T*, int, T*, int);                \
  template ChainProductResult chain_jacobian_norms<T>(const ChainView<T>&, const T*,           \
                                                      const ProductOptions&);                  \
  template std::vector<double> chain_lyapunov_exponents<T>(const ChainView<T>&, const T*, int, \
                                                           std::uint64_t, int, int*);
PYJAC_INSTANTIATE(float)
PYJAC_INSTANTIATE(double)
#undef PYJAC_INSTANTIATE

}  // namespace pyjac
