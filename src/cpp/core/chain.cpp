// Forward and backward pass through a feed-forward chain in one call.
#include "pyjac/chain.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <omp.h>
#include <string>

#include "loss.hpp"
#include "norm_layers.hpp"
#include "pyjac/activation.hpp"
#include "pyjac/blas.hpp"
#include "pyjac/threads.hpp"
#include "reduce.hpp"

namespace pyjac {
namespace {

using blas::Trans;
using detail::frobenius_norm;
using detail::worth_parallel;

template <typename T>
using Buffer = std::unique_ptr<T[]>;

// new T[n] leaves memory untouched until written, so peak RSS is what is used.
template <typename T>
Buffer<T> make_buffer(std::size_t n) {
  return Buffer<T>(new T[std::max<std::size_t>(n, 1)]);
}

template <typename T>
bool needs_preactivations(const ChainView<T>& c, int layer) {
  return c.residual || c.norm != Norm::None || !derivative_from_output(c.activations[layer]);
}

// Everything the forward pass keeps for the backward pass.
template <typename T>
struct Tape {
  std::vector<Buffer<T>> h;         // h_1..h_L (h_0 is the caller's x)
  std::vector<Buffer<T>> u;         // normalised pre-activations, where needed
  std::vector<Buffer<T>> inv_std;   // per row (layernorm) or per unit (batchnorm)
  std::vector<std::vector<double>> row_sq;  // ||h_l[i]||^2, l = 0..L
  const T* x = nullptr;
  const T* layer_input(int l) const { return l == 0 ? x : h[l - 1].get(); }  // h_l
};

template <typename T>
struct LayerForwardStats {
  double derivative_sum = 0.0;
  std::size_t saturated = 0;
  std::size_t dead_units = 0;
};

// u = norm(W h + b); h_out = phi(u) or h_in + s * phi(u); statistics of phi'(u).
template <typename T>
LayerForwardStats<T> forward_layer(const ChainView<T>& c, int l, int batch, const T* h_in,
                                   T* u, T* h_out, T* inv_std, int nt) {
  const int n_in = c.widths[l], n_out = c.widths[l + 1];
  const Activation act = c.activations[l];
  const T* w = c.weights[l];
  const T* b = c.biases[l];
  const std::size_t total = static_cast<std::size_t>(batch) * n_out;
  // Bias rows first, then one GEMM accumulating onto them (beta = 1).
  for (int i = 0; i < batch; ++i) std::memcpy(u + static_cast<std::size_t>(i) * n_out, b, sizeof(T) * n_out);
  blas::gemm_reproducible(Trans::No, Trans::Yes, batch, n_out, n_in, T(1), h_in, n_in, w, n_in,
                          T(1), u, n_out, nt);
  detail::norm_forward(c.norm, u, batch, n_out, inv_std, nt);

  const T scale = static_cast<T>(c.residual_scale);
  const double saturation = kSaturationFraction * max_derivative(act);
  const bool saturating = is_saturating(act);
  std::vector<double> row_dsum(batch, 0.0);
  std::vector<std::size_t> row_sat(batch, 0);
  // A unit is dead when phi' vanishes for every example: OR of per-thread flags,
  // which does not depend on how rows were split.
  std::vector<unsigned char> alive(n_out, 0);
#pragma omp parallel num_threads(nt) if (worth_parallel(total))
  {
    std::vector<unsigned char> alive_local(n_out, 0);
#pragma omp for schedule(static)
    for (int i = 0; i < batch; ++i) {
      const std::size_t off = static_cast<std::size_t>(i) * n_out;
      double dsum = 0.0;
      std::size_t sat = 0;
      for (int j = 0; j < n_out; ++j) {
        const auto a = activate(act, u[off + j]);
        h_out[off + j] = c.residual ? h_in[off + j] + scale * a.value : a.value;
        dsum += a.derivative;
        sat += saturating && a.derivative < saturation;
        alive_local[j] |= a.derivative != T(0);
      }
      row_dsum[i] = dsum;
      row_sat[i] = sat;
    }
#pragma omp critical(pyjac_alive)
    for (int j = 0; j < n_out; ++j) alive[j] |= alive_local[j];
  }
  LayerForwardStats<T> s;
  for (int i = 0; i < batch; ++i) {
    s.derivative_sum += row_dsum[i];
    s.saturated += row_sat[i];
  }
  for (int j = 0; j < n_out; ++j) s.dead_units += alive[j] == 0;
  return s;
}

// du = g * branch_scale * phi'(u_l), reading phi' from u or from h_l.
template <typename T>
void times_derivative(const ChainView<T>& c, int l, int batch, const T* g, const Tape<T>& tape,
                      T* du, int nt) {
  const int n = c.widths[l + 1];
  const Activation act = c.activations[l];
  const T branch = c.residual ? static_cast<T>(c.residual_scale) : T(1);
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  const long long ntotal = static_cast<long long>(total);
  if (tape.u[l]) {
    const T* u = tape.u[l].get();
#pragma omp parallel for num_threads(nt) if (worth_parallel(total)) schedule(static)
    for (long long k = 0; k < ntotal; ++k) du[k] = branch * g[k] * activate(act, u[k]).derivative;
  } else {
    const T* h = tape.h[l].get();
#pragma omp parallel for num_threads(nt) if (worth_parallel(total)) schedule(static)
    for (long long k = 0; k < ntotal; ++k) du[k] = branch * g[k] * derivative_of_output(act, h[k]);
  }
}

// ||dz^T h||_F from the two batch Gram matrices (the "ghost norm"): with G = dz dz^T
// and K = h h^T, ||dz^T h||_F^2 = sum_ij G_ij K_ij. Cheaper than forming dW when the
// batch is smaller than the layer. Only the lower triangles are needed; they are formed
// as a fixed set of row-block GEMMs, each single-threaded, shared out by OpenMP: a fixed
// decomposition is what makes the sums identical at every thread count (OpenBLAS's
// threaded SYRK and thin GEMMs do not reproduce their single-threaded results).
template <typename T>
double ghost_norm(const T* dz, int n_out, const T* h, int n_in, int batch, T* gram_dz,
                  T* gram_h, int nt) {
  constexpr int kBlocks = 4;
  const int block = (batch + kBlocks - 1) / kBlocks;
  const double flops = static_cast<double>(batch) * batch * (n_in + n_out);
  {
    BlasThreadScope single(1);
#pragma omp parallel for num_threads(nt) if (flops > 4.0 * detail::kParallelThreshold * 64) schedule(dynamic, 1)
    for (int task = 0; task < 2 * kBlocks; ++task) {
      const bool of_dz = task < kBlocks;
      const int r0 = (task % kBlocks) * block;
      const int r1 = std::min(batch, r0 + block);
      if (r0 >= r1) continue;
      const T* a = of_dz ? dz : h;
      const int k = of_dz ? n_out : n_in;
      T* g = of_dz ? gram_dz : gram_h;
      blas::gemm(Trans::No, Trans::Yes, r1 - r0, r1, k, T(1),
                 a + static_cast<std::size_t>(r0) * k, k, a, k, T(0),
                 g + static_cast<std::size_t>(r0) * batch, batch);
    }
  }
  double diag = 0.0, off = 0.0;
  for (int i = 0; i < batch; ++i) {
    const std::size_t r = static_cast<std::size_t>(i) * batch;
    diag += static_cast<double>(gram_dz[r + i]) * gram_h[r + i];
    for (int j = 0; j < i; ++j) off += static_cast<double>(gram_dz[r + j]) * gram_h[r + j];
  }
  return std::sqrt(std::max(0.0, diag + 2.0 * off));
}

bool prefer_ghost_norm(int batch, int n_in, int n_out) {
  // The two Grams cost ~1.25 batch^2 (n_in + n_out) flops, the explicit GEMM
  // 2 batch n_in n_out.
  return 1.25 * static_cast<double>(batch) * (n_in + n_out) < 2.0 * n_in * n_out;
}

template <typename T>
void record_nonfinite(BackpropStats& s, int layer, int stage) {
  if (s.first_nonfinite_stage == 0) {
    s.first_nonfinite_layer = layer;
    s.first_nonfinite_stage = stage;
  }
}

}  // namespace

template <typename T>
void ChainView<T>::validate() const {
  const int d = depth();
  if (d < 1) throw std::invalid_argument("depth must be at least 1");
  if (static_cast<int>(widths.size()) != d + 1)
    throw std::invalid_argument("widths must have depth + 1 entries");
  if (static_cast<int>(biases.size()) != d || static_cast<int>(activations.size()) != d)
    throw std::invalid_argument("biases and activations need one entry per layer");
  for (int w : widths)
    if (w < 1) throw std::invalid_argument("every width must be at least 1");
  for (int l = 0; l < d; ++l)
    if (!weights[l] || !biases[l]) throw std::invalid_argument("weights: missing layer");
  if (residual)
    for (int w : widths)
      if (w != widths[0])
        throw std::invalid_argument("residual=True needs every layer to have the same width");
}

std::int64_t backprop_workspace_bytes(const std::vector<int>& widths, int batch, int dtype_size,
                                      bool store_preactivations) {
  std::int64_t per_example = 0, widest = 0;
  for (std::size_t l = 1; l < widths.size(); ++l) {
    per_example += widths[l] * (store_preactivations ? 2 : 1);
    widest = std::max<std::int64_t>(widest, widths[l]);
  }
  widest = std::max<std::int64_t>(widest, widths[0]);
  return static_cast<std::int64_t>(dtype_size) * batch * (per_example + 3 * widest) +
         2 * dtype_size * static_cast<std::int64_t>(batch) * batch;
}

template <typename T>
BackpropStats backprop(const ChainView<T>& c, const T* x, int batch, const T* target,
                       const std::int64_t* labels, const BackpropOptions& o,
                       const BackpropOutputs<T>& out) {
  c.validate();
  if (batch < 1) throw std::invalid_argument("x: batch must be at least 1");
  if (c.norm == Norm::BatchNorm && batch < 2)
    throw std::invalid_argument("x: norm='batchnorm' needs a batch of at least 2 examples");
  if ((o.loss == Loss::Mse || o.loss == Loss::GradOutput) && !target)
    throw std::invalid_argument("target: required by this loss");
  const int L = c.depth();
  const int n_last = c.widths[L];
  if (o.loss == Loss::CrossEntropy) {
    if (!labels) throw std::invalid_argument("target: cross_entropy needs integer labels");
    for (int i = 0; i < batch; ++i)
      if (labels[i] < 0 || labels[i] >= n_last)
        throw std::invalid_argument("target: label " + std::to_string(labels[i]) +
                                    " out of range [0, " + std::to_string(n_last) + ")");
  }
  if (o.keep_grads && (static_cast<int>(out.weight_grads.size()) != L ||
                       static_cast<int>(out.bias_grads.size()) != L))
    throw std::invalid_argument("keep_grads: one destination per layer is required");

  const int nt = resolve_threads(o.n_threads);
  // Every GEMM below runs as fixed single-threaded tiles shared out by OpenMP (see
  // gemm_reproducible), so BLAS stays at one thread for the whole pass.
  BlasThreadScope blas_scope(1);

  BackpropStats s;
  s.grad_norm.assign(L + 1, 0.0);
  s.activation_norm.assign(L + 1, 0.0);
  s.weight_grad_norm.assign(L, 0.0);
  s.bias_grad_norm.assign(L, 0.0);
  s.per_example_weight_grad_norm.assign(static_cast<std::size_t>(L) * batch, 0.0);
  s.derivative_mean.assign(L, 0.0);
  s.saturated_fraction.assign(L, 0.0);
  s.dead_fraction.assign(L, 0.0);

  // ---- forward ------------------------------------------------------------
  Tape<T> tape;
  tape.x = x;
  tape.h.resize(L);
  tape.u.resize(L);
  tape.inv_std.resize(L);
  tape.row_sq.assign(L + 1, std::vector<double>(batch));
  {
    const auto n0 = frobenius_norm(x, batch, c.widths[0], nt, tape.row_sq[0].data());
    s.activation_norm[0] = n0.norm;
  }
  for (int l = 0; l < L; ++l) {
    const int n = c.widths[l + 1];
    const std::size_t total = static_cast<std::size_t>(batch) * n;
    tape.h[l] = make_buffer<T>(total);
    T* pre = tape.h[l].get();
    if (needs_preactivations(c, l)) {
      tape.u[l] = make_buffer<T>(total);
      pre = tape.u[l].get();
    }
    if (c.norm != Norm::None)
      tape.inv_std[l] = make_buffer<T>(c.norm == Norm::LayerNorm ? batch : n);
    const auto fs = forward_layer(c, l, batch, tape.layer_input(l), pre, tape.h[l].get(),
                                  tape.inv_std[l].get(), nt);
    s.derivative_mean[l] = fs.derivative_sum / static_cast<double>(total);
    s.saturated_fraction[l] = static_cast<double>(fs.saturated) / static_cast<double>(total);
    s.dead_fraction[l] = static_cast<double>(fs.dead_units) / n;
    const auto hn = frobenius_norm(tape.h[l].get(), batch, n, nt, tape.row_sq[l + 1].data());
    s.activation_norm[l + 1] = hn.norm;
    if (!hn.finite) record_nonfinite<T>(s, l + 1, 1);
  }
  const T* h_last = tape.layer_input(L);
  if (out.output)
    std::memcpy(out.output, h_last, sizeof(T) * static_cast<std::size_t>(batch) * n_last);

  // ---- loss ---------------------------------------------------------------
  int widest = 0;
  for (int w : c.widths) widest = std::max(widest, w);
  const std::size_t slab = static_cast<std::size_t>(batch) * widest;
  Buffer<T> g = make_buffer<T>(slab), g_prev = make_buffer<T>(slab), dz = make_buffer<T>(slab);
  s.loss = detail::loss_and_gradient(o.loss, h_last, batch, n_last, target, labels, g.get(), nt);
  {
    const auto gn = frobenius_norm(g.get(), batch, n_last, nt);
    s.grad_norm[L] = gn.norm;
    if (!gn.finite) record_nonfinite<T>(s, L, 2);
  }

  // ---- backward -----------------------------------------------------------
  Buffer<T> gram_dz, gram_h, dw_scratch;
  std::vector<double> dz_row_sq(batch);
  std::vector<double> bias_grad;
  for (int l = L - 1; l >= 0; --l) {
    const int n_in = c.widths[l], n_out = c.widths[l + 1];
    const std::size_t total = static_cast<std::size_t>(batch) * n_out;
    const T* h_in = tape.layer_input(l);
    T* dzl = dz.get();
    times_derivative(c, l, batch, g.get(), tape, dzl, nt);
    if (c.norm != Norm::None)
      detail::norm_backward(c.norm, dzl, tape.u[l].get(), batch, n_out, tape.inv_std[l].get(), nt);

    // Bias gradient: column sums, parallel over units, rows in a fixed order.
    bias_grad.assign(n_out, 0.0);
#pragma omp parallel for num_threads(nt) if (worth_parallel(total)) schedule(static)
    for (int j = 0; j < n_out; ++j) {
      double acc = 0.0;
      for (int i = 0; i < batch; ++i) acc += dzl[static_cast<std::size_t>(i) * n_out + j];
      bias_grad[j] = acc;
    }
    double bsq = 0.0;
    for (double v : bias_grad) bsq += v * v;
    s.bias_grad_norm[l] = std::sqrt(bsq);
    if (o.keep_grads)
      for (int j = 0; j < n_out; ++j) out.bias_grads[l][j] = static_cast<T>(bias_grad[j]);

    // Weight gradient dW = dz^T h_{l-1}: its norm, per-example norms, optionally itself.
    const auto dzn = frobenius_norm(dzl, batch, n_out, nt, dz_row_sq.data());
    for (int i = 0; i < batch; ++i)
      s.per_example_weight_grad_norm[static_cast<std::size_t>(l) * batch + i] =
          std::sqrt(dz_row_sq[i]) * std::sqrt(tape.row_sq[l][i]);
    if (o.keep_grads || !prefer_ghost_norm(batch, n_in, n_out)) {
      T* dw = o.keep_grads ? out.weight_grads[l] : nullptr;
      if (!dw) {
        if (!dw_scratch) {
          int biggest = 0;
          for (int k = 0; k < L; ++k) biggest = std::max(biggest, c.widths[k] * c.widths[k + 1]);
          dw_scratch = make_buffer<T>(static_cast<std::size_t>(biggest));
        }
        dw = dw_scratch.get();
      }
      blas::gemm_reproducible(Trans::Yes, Trans::No, n_out, n_in, batch, T(1), dzl, n_out, h_in,
                              n_in, T(0), dw, n_in, nt);
      s.weight_grad_norm[l] = frobenius_norm(dw, n_out, n_in, nt).norm;
    } else {
      if (!gram_dz) {
        gram_dz = make_buffer<T>(static_cast<std::size_t>(batch) * batch);
        gram_h = make_buffer<T>(static_cast<std::size_t>(batch) * batch);
      }
      s.used_ghost_norm = true;
      s.weight_grad_norm[l] =
          dzn.finite ? ghost_norm(dzl, n_out, h_in, n_in, batch, gram_dz.get(), gram_h.get(), nt)
                     : dzn.norm;
    }

    // dL/dh_{l-1} = dz W_l (+ dL/dh_l through the skip connection).
    if (c.residual)
      std::memcpy(g_prev.get(), g.get(), sizeof(T) * static_cast<std::size_t>(batch) * n_in);
    blas::gemm_reproducible(Trans::No, Trans::No, batch, n_in, n_out, T(1), dzl, n_out,
                            c.weights[l], n_in, c.residual ? T(1) : T(0), g_prev.get(), n_in, nt);
    std::swap(g, g_prev);
    const auto gn = frobenius_norm(g.get(), batch, n_in, nt);
    s.grad_norm[l] = gn.norm;
    if (!gn.finite) record_nonfinite<T>(s, l, 2);
  }
  return s;
}

template struct ChainView<float>;
template struct ChainView<double>;
template BackpropStats backprop<float>(const ChainView<float>&, const float*, int, const float*,
                                       const std::int64_t*, const BackpropOptions&,
                                       const BackpropOutputs<float>&);
template BackpropStats backprop<double>(const ChainView<double>&, const double*, int,
                                        const double*, const std::int64_t*,
                                        const BackpropOptions&, const BackpropOutputs<double>&);

}  // namespace pyjac
