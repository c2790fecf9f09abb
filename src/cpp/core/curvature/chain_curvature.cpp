// Hessian-vector products of a chain's loss by forward-over-reverse differentiation
// (Pearlmutter 1994). With R the directional derivative along the parameter direction
// (V_l, c_l), the tangent forward pass is
//   R z_l = R h_{l-1} W_l^T + h_{l-1} V_l^T + c_l,  R u_l = N'(z_l) R z_l,
//   R h_l = s_l phi'(u_l) R u_l (+ R h_{l-1} on a residual layer),
// and the tangent of the backward pass, from R g_L = (d^2 L/dh_L^2) R h_L down, is
//   R ga_l = s_l R g_l,  R gu_l = phi' R ga_l + phi'' R u_l ga_l,
//   R gz_l = N'^T R gu_l + (the norm's second-order terms),
//   H v for W_l = R gz_l^T h_{l-1} + gz_l^T R h_{l-1},  for b_l = sum over rows of R gz_l,
//   R g_{l-1} = R gz_l W_l + gz_l V_l (+ R g_l on a residual layer).
// The Gauss-Newton product J^T H_L J v keeps only the first-order terms (phi' and N'):
// the same passes without the terms in ga, gz and phi''.
#include "pyjac/curvature/curvature.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "chain/layerwise_backprop.hpp"
#include "chain/loss.hpp"
#include "chain/norm_layers.hpp"
#include "common/reduce.hpp"
#include "common/slab.hpp"
#include "common/sizes.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {

CurvatureKind parse_curvature_kind(const std::string& name) {
  if (name == "hessian") return CurvatureKind::Hessian;
  if (name == "gauss_newton") return CurvatureKind::GaussNewton;
  throw std::invalid_argument("kind: expected 'hessian' or 'gauss_newton', got '" + name + "'");
}

namespace {

using blas::Trans;
using detail::parallel_for;
using detail::worth_parallel;
using detail::Slab;

// A norm layer normalises groups of a (batch x n) array: its rows (layernorm, one per
// example) or its columns (batchnorm, one per unit).
struct Groups {
  int count = 0, size = 0;
  std::size_t group_stride = 0, entry_stride = 0;
  std::size_t at(int g, int k) const {
    return static_cast<std::size_t>(g) * group_stride + static_cast<std::size_t>(k) * entry_stride;
  }
};

// The tangent passes run six small GEMMs a layer: tiles of at least this many
// multiply-adds keep each BLAS call efficient (the grid still depends on the shapes
// only, never on the thread count).
constexpr double kTileMacs = double(1 << 22);

Groups groups_of(Norm norm, int batch, int n) {
  if (norm == Norm::BatchNorm) return {n, batch, 1, static_cast<std::size_t>(n)};
  return {batch, n, static_cast<std::size_t>(n), 1};
}

// out = in, entry by entry in another precision, over the threads in fixed chunks.
template <typename From, typename To>
void convert(const From* in, To* out, std::int64_t n, int nt) {
  constexpr std::int64_t kChunk = 1 << 15;
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(chunks, nt, n >= (1 << 17), [&](std::int64_t c) {
    const std::int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    for (std::int64_t i = lo; i < hi; ++i) out[i] = static_cast<To>(in[i]);
  });
}

template <typename T>
void fill_rows(T* a, int rows, int cols, const T* row) {
  for (int i = 0; i < rows; ++i)
    std::memcpy(a + static_cast<std::size_t>(i) * cols, row, sizeof(T) * cols);
}

}  // namespace

template <typename T>
struct ChainCurvature<T>::State {
  ChainView<T> view;  // over the copies below
  std::vector<std::vector<T>> w, b;
  std::vector<std::int64_t> offset;  // of W_l in the flat vector; offset[depth] = size
  int batch = 0, nt = 1;
  Loss loss = Loss::SumSquares;
  CurvatureKind kind = CurvatureKind::Hessian;
  double loss_value = 0.0;
  // Forward tape: h[l] is layer l's input (h[0] = x, h[depth] the output); u[l] its
  // normalised pre-activation; inv_std[l] per norm group.
  std::vector<Slab<T>> h, u, inv_std;
  // Backward tape: phi'(u), ga = s dL/dh_{l+1}, gz = dL/dz; phi''(u) ga (Hessian only);
  // m2 = mean of (phi' ga) u over each norm group.
  std::vector<Slab<T>> d1, ga, gz, d2ga;
  std::vector<std::vector<double>> m2;
  // One product's tangents: R u_l, R h_{l+1}, and rho = mean of u R z per norm group.
  std::vector<Slab<T>> ru, rh;
  std::vector<std::vector<double>> rho;
  Slab<T> rg, rg_next, rgz;  // batch x widest
  Slab<T> vt, ot;            // v and out in T (float chains only)
  std::vector<double> column;

  int depth() const { return view.depth(); }
  bool hessian() const { return kind == CurvatureKind::Hessian; }
  Groups groups(int l) const { return groups_of(view.norm, batch, view.widths[l + 1]); }

  void copy_parameters(const ChainView<T>& chain);
  void forward(const T* x);
  void backward(const T* target, const std::int64_t* labels);
  void tangent_forward_layer(int l, int lo, const T* vw, const T* vb);
  void tangent_backward_layer(int l, int lo, const T* vw, T* ow, T* ob);
};

template <typename T>
void ChainCurvature<T>::State::copy_parameters(const ChainView<T>& chain) {
  view = chain;
  view.source = nullptr;
  const int L = chain.depth();
  w.resize(L);
  b.resize(L);
  offset.assign(L + 1, 0);
  for (int l = 0; l < L; ++l) {
    const std::size_t rows = chain.widths[l + 1], cols = chain.widths[l];
    const T* wl = chain.weight(l);
    w[l].assign(wl, wl + rows * cols);
    const T* bl = chain.bias(l);
    b[l].assign(bl, bl + rows);
    view.weights[l] = w[l].data();
    view.biases[l] = b[l].data();
    offset[l + 1] = offset[l] + static_cast<std::int64_t>(rows * cols + rows);
  }
}

template <typename T>
void ChainCurvature<T>::State::forward(const T* x) {
  const int L = depth();
  const auto& widths = view.widths;
  const int widest = *std::max_element(widths.begin(), widths.end());
  h.resize(L + 1);
  u.resize(L);
  inv_std.resize(L);
  h[0].resize(static_cast<std::size_t>(batch) * widths[0]);
  std::copy(x, x + h[0].size(), h[0].data());
  layerwise::Scratch scratch(batch, widest);
  std::vector<double> row_sq(batch);
  for (int l = 0; l < L; ++l) {
    check_interrupt();
    const std::size_t total = static_cast<std::size_t>(batch) * widths[l + 1];
    u[l].resize(total);
    h[l + 1].resize(total);
    inv_std[l].resize(std::max(groups(l).count, 1));
    layerwise::forward_layer(view, l, batch, h[l].data(), u[l].data(), h[l + 1].data(),
                             inv_std[l].data(), row_sq.data(), scratch, nt);
  }
}

template <typename T>
void ChainCurvature<T>::State::backward(const T* target, const std::int64_t* labels) {
  const int L = depth();
  const auto& widths = view.widths;
  d1.resize(L);
  ga.resize(L);
  gz.resize(L);
  d2ga.resize(L);
  m2.resize(L);
  Slab<T> g(static_cast<std::size_t>(batch) * widths[L]), g_in;
  loss_value = detail::loss_and_gradient(loss, h[L].data(), batch, widths[L], target, labels,
                                         g.data(), nt);
  for (int l = L - 1; l >= 0; --l) {
    check_interrupt();
    const int n = widths[l + 1], n_in = widths[l];
    const std::size_t total = static_cast<std::size_t>(batch) * n;
    const Activation act = view.activations[l];
    const T branch = static_cast<T>(view.branch_scale(l));
    d1[l].resize(total);
    ga[l].resize(total);
    gz[l].resize(total);
    if (hessian()) d2ga[l].resize(total);
    parallel_for(batch, nt, worth_parallel(total), [&](int i) {
      for (int j = 0; j < n; ++j) {
        const std::size_t k = static_cast<std::size_t>(i) * n + j;
        const T d = activate(act, u[l][k]).derivative;
        d1[l][k] = d;
        ga[l][k] = branch * g[k];
        gz[l][k] = d * ga[l][k];
        if (hessian()) d2ga[l][k] = second_derivative(act, u[l][k]) * ga[l][k];
      }
    });
    if (view.norm != Norm::None) {
      const Groups gr = groups(l);
      m2[l].assign(gr.count, 0.0);
      parallel_for(gr.count, nt, worth_parallel(total), [&](int q) {
        double s = 0.0;
        for (int k = 0; k < gr.size; ++k)
          s += static_cast<double>(gz[l][gr.at(q, k)]) * u[l][gr.at(q, k)];
        m2[l][q] = s / gr.size;
      });
      detail::norm_backward(view.norm, gz[l].data(), u[l].data(), batch, n, inv_std[l].data(),
                            nt);
    }
    if (l == 0) break;
    // dL/dh_l = gz W_l, plus dL/dh_{l+1} through the skip connection.
    g_in.resize(static_cast<std::size_t>(batch) * n_in);
    if (view.residual_at(l))
      std::copy(g.begin(), g.end(), g_in.begin());
    else
      std::fill(g_in.begin(), g_in.end(), T(0));
    detail::tiled_gemm(Trans::No, Trans::No, batch, n_in, n, T(1), gz[l].data(), n,
                       view.weight(l), n_in, T(1), g_in.data(), n_in, nt, kTileMacs);
    std::swap(g, g_in);
  }
}

// R z = R h_{l-1} W^T + h_{l-1} V^T + c, then R u = N'(z) R z and R h_{l+1}. vw and vb
// are null above the block whose parameters move.
template <typename T>
void ChainCurvature<T>::State::tangent_forward_layer(int l, int lo, const T* vw, const T* vb) {
  const int n = view.widths[l + 1], n_in = view.widths[l];
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  T* rz = ru[l].data();
  if (vb)
    fill_rows(rz, batch, n, vb);
  else
    std::fill(rz, rz + total, T(0));
  if (l > lo)
    detail::tiled_gemm(Trans::No, Trans::Yes, batch, n, n_in, T(1), rh[l - 1].data(), n_in,
                       view.weight(l), n_in, T(1), rz, n, nt, kTileMacs);
  if (vw)
    detail::tiled_gemm(Trans::No, Trans::Yes, batch, n, n_in, T(1), h[l].data(), n_in, vw, n_in,
                       T(1), rz, n, nt, kTileMacs);
  if (view.norm != Norm::None) {
    // N'(z) R z = r (R z - mean(R z) - u mean(u R z)); rho = mean(u R z) is also the
    // tangent of log r (R r / r = -r rho), which the backward pass needs.
    const Groups gr = groups(l);
    rho[l].assign(gr.count, 0.0);
    const T* ul = u[l].data();
    const T* r = inv_std[l].data();
    parallel_for(gr.count, nt, worth_parallel(total), [&](int q) {
      double mean = 0.0, mean_u = 0.0;
      for (int k = 0; k < gr.size; ++k) {
        mean += rz[gr.at(q, k)];
        mean_u += static_cast<double>(ul[gr.at(q, k)]) * rz[gr.at(q, k)];
      }
      mean /= gr.size;
      mean_u /= gr.size;
      rho[l][q] = mean_u;
      for (int k = 0; k < gr.size; ++k) {
        const std::size_t e = gr.at(q, k);
        rz[e] = static_cast<T>(r[q] * (rz[e] - mean - ul[e] * mean_u));
      }
    });
  }
  const T branch = static_cast<T>(view.branch_scale(l));
  const bool skip = view.residual_at(l) && l > lo;
  const T* d = d1[l].data();
  const T* prev = skip ? rh[l - 1].data() : nullptr;
  T* out = rh[l].data();
  parallel_for(batch, nt, worth_parallel(total), [&](int i) {
    for (int j = 0; j < n; ++j) {
      const std::size_t k = static_cast<std::size_t>(i) * n + j;
      out[k] = branch * d[k] * rz[k] + (prev ? prev[k] : T(0));
    }
  });
}

// From R g (at layer l's output) to R gz, the block's products when ow is given, and
// R g at its input (unless l is the lowest layer that moves).
template <typename T>
void ChainCurvature<T>::State::tangent_backward_layer(int l, int lo, const T* vw, T* ow, T* ob) {
  const int n = view.widths[l + 1], n_in = view.widths[l];
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  const T branch = static_cast<T>(view.branch_scale(l));
  const bool full = hessian();
  T* out = rgz.data();
  const T* d = d1[l].data();
  const T* rul = ru[l].data();
  parallel_for(batch, nt, worth_parallel(total), [&](int i) {
    for (int j = 0; j < n; ++j) {
      const std::size_t k = static_cast<std::size_t>(i) * n + j;
      out[k] = d[k] * branch * rg[k] + (full ? d2ga[l][k] * rul[k] : T(0));
    }
  });
  if (view.norm != Norm::None) {
    // N'^T R gu = r (R gu - mean(R gu) - u mean(u R gu)); the Hessian adds the
    // derivative of N'^T along R z at fixed gu: (R r / r) gz - r (R u m2 + u mean(gu R u)).
    const Groups gr = groups(l);
    const T* ul = u[l].data();
    const T* r = inv_std[l].data();
    const T* gal = ga[l].data();
    const T* gzl = gz[l].data();
    parallel_for(gr.count, nt, worth_parallel(total), [&](int q) {
      double mean = 0.0, mean_u = 0.0, mean_gu_ru = 0.0;
      for (int k = 0; k < gr.size; ++k) {
        const std::size_t e = gr.at(q, k);
        mean += out[e];
        mean_u += static_cast<double>(ul[e]) * out[e];
        if (full) mean_gu_ru += static_cast<double>(d[e]) * gal[e] * rul[e];
      }
      mean /= gr.size;
      mean_u /= gr.size;
      mean_gu_ru /= gr.size;
      const double rq = r[q];
      const double log_r_tangent = -rq * (full ? rho[l][q] : 0.0);
      const double m = full ? m2[l][q] : 0.0;
      for (int k = 0; k < gr.size; ++k) {
        const std::size_t e = gr.at(q, k);
        double v = rq * (out[e] - mean - ul[e] * mean_u);
        if (full) v += log_r_tangent * gzl[e] - rq * (rul[e] * m + ul[e] * mean_gu_ru);
        out[e] = static_cast<T>(v);
      }
    });
  }
  if (ow) {
    detail::tiled_gemm(Trans::Yes, Trans::No, n, n_in, batch, T(1), out, n, h[l].data(), n_in,
                       T(0), ow, n_in, nt, kTileMacs);
    if (full && l > lo)
      detail::tiled_gemm(Trans::Yes, Trans::No, n, n_in, batch, T(1), gz[l].data(), n,
                         rh[l - 1].data(), n_in, T(1), ow, n_in, nt, kTileMacs);
    layerwise::column_sums(out, batch, n, column.data(), nt);
    for (int j = 0; j < n; ++j) ob[j] = static_cast<T>(column[j]);
  }
  if (l == lo) return;
  const std::size_t in_total = static_cast<std::size_t>(batch) * n_in;
  if (view.residual_at(l))
    std::copy(rg.begin(), rg.begin() + in_total, rg_next.begin());
  else
    std::fill(rg_next.begin(), rg_next.begin() + in_total, T(0));
  detail::tiled_gemm(Trans::No, Trans::No, batch, n_in, n, T(1), out, n, view.weight(l), n_in,
                     T(1), rg_next.data(), n_in, nt, kTileMacs);
  if (full && vw)
    detail::tiled_gemm(Trans::No, Trans::No, batch, n_in, n, T(1), gz[l].data(), n, vw, n_in,
                       T(1), rg_next.data(), n_in, nt, kTileMacs);
  std::swap(rg, rg_next);
}

template <typename T>
ChainCurvature<T>::ChainCurvature(const ChainView<T>& chain, const T* x, int batch,
                                  const T* target, const std::int64_t* labels, Loss loss,
                                  CurvatureKind kind, int n_threads)
    : s_(std::make_unique<State>()) {
  chain.validate();
  if (batch < 1) throw std::invalid_argument("x: the batch is empty");
  if (chain.norm == Norm::BatchNorm && batch < 2)
    throw std::invalid_argument("x: norm='batchnorm' needs a batch of at least 2 examples");
  State& s = *s_;
  s.nt = resolve_threads(n_threads);
  s.batch = batch;
  s.loss = loss;
  s.kind = kind;
  BlasThreadScope blas_scope(1);  // fixed tiles: the same numbers at any thread count
  s.copy_parameters(chain);
  s.forward(x);
  s.backward(target, labels);
  const int L = s.depth();
  const auto& widths = s.view.widths;
  const int widest = *std::max_element(widths.begin(), widths.end());
  s.ru.resize(L);
  s.rh.resize(L);
  s.rho.resize(L);
  for (int l = 0; l < L; ++l) {
    s.ru[l].resize(static_cast<std::size_t>(batch) * widths[l + 1]);
    s.rh[l].resize(static_cast<std::size_t>(batch) * widths[l + 1]);
  }
  for (auto* buffer : {&s.rg, &s.rg_next, &s.rgz})
    buffer->resize(static_cast<std::size_t>(batch) * widest);
  s.column.resize(widest);
  if constexpr (!std::is_same_v<T, double>) {
    s.vt.resize(s.offset[L]);
    s.ot.resize(s.offset[L]);
  }
}

template <typename T>
ChainCurvature<T>::~ChainCurvature() = default;

template <typename T>
int ChainCurvature<T>::depth() const {
  return s_->depth();
}
template <typename T>
std::int64_t ChainCurvature<T>::size() const {
  return s_->offset.back();
}
template <typename T>
std::int64_t ChainCurvature<T>::block_offset(int layer) const {
  return s_->offset.at(layer);
}
template <typename T>
std::int64_t ChainCurvature<T>::block_size(int layer) const {
  return s_->offset.at(layer + 1) - s_->offset.at(layer);
}
template <typename T>
double ChainCurvature<T>::loss() const {
  return s_->loss_value;
}

template <typename T>
void ChainCurvature<T>::product(int block, const double* v, double* out) {
  State& s = *s_;
  const int L = s.depth();
  if (block >= L) throw std::invalid_argument("block: past the last layer");
  const int lo = block < 0 ? 0 : block, hi = block < 0 ? L - 1 : block;
  const std::int64_t base = s.offset[lo];
  const std::int64_t count = s.offset[hi + 1] - base;
  BlasThreadScope blas_scope(1);
  const T* vt;
  T* ot;
  if constexpr (std::is_same_v<T, double>) {
    vt = v;
    ot = out;
  } else {
    convert(v, s.vt.data(), count, s.nt);
    vt = s.vt.data();
    ot = s.ot.data();
  }
  auto weight_part = [&](auto* flat, int l) { return flat + (s.offset[l] - base); };
  auto bias_part = [&](auto* flat, int l) {
    return weight_part(flat, l) + static_cast<std::size_t>(s.view.widths[l + 1]) * s.view.widths[l];
  };
  for (int l = lo; l < L; ++l) {
    check_interrupt();
    const bool moves = l <= hi;
    s.tangent_forward_layer(l, lo, moves ? weight_part(vt, l) : nullptr,
                            moves ? bias_part(vt, l) : nullptr);
  }
  detail::loss_hessian_product(s.loss, s.h[L].data(), s.batch, s.view.widths[L],
                               s.rh[L - 1].data(), s.rg.data(), s.nt);
  for (int l = L - 1; l >= lo; --l) {
    check_interrupt();
    const bool moves = l <= hi;
    s.tangent_backward_layer(l, lo, moves ? weight_part(vt, l) : nullptr,
                             moves ? weight_part(ot, l) : nullptr,
                             moves ? bias_part(ot, l) : nullptr);
  }
  if constexpr (!std::is_same_v<T, double>)
    convert(ot, out, count, s.nt);
}

template <typename T>
SymmetricProduct ChainCurvature<T>::as_operator(int block) {
  return [this, block](const double* v, double* out) { product(block, v, out); };
}

std::int64_t curvature_workspace_bytes(const std::vector<int>& widths, int batch,
                                       int dtype_size) {
  using detail::sat_add;
  using detail::sat_mul;
  std::int64_t parameters = 0, activations = widths.empty() ? 0 : sat_mul(batch, widths[0]);
  for (std::size_t l = 1; l < widths.size(); ++l) {
    parameters = sat_add(parameters, sat_mul(widths[l], widths[l - 1] + 1));
    activations = sat_add(activations, sat_mul(batch, widths[l]));
  }
  const int widest = widths.empty() ? 0 : *std::max_element(widths.begin(), widths.end());
  // The copied parameters and v/out in the chain's dtype; h and seven tapes per layer
  // (u, phi', ga, gz, phi'' ga, R u, R h); three slabs of the widest layer.
  std::int64_t elements = sat_mul(3, parameters);
  elements = sat_add(elements, sat_mul(8, activations));
  elements = sat_add(elements, sat_mul(3, batch, widest));
  return sat_mul(elements, dtype_size);
}

template class ChainCurvature<float>;
template class ChainCurvature<double>;

}  // namespace pyjac
