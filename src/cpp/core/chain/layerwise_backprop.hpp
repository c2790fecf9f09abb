// The layer-at-a-time forward and backward pass, shared by chains whose weights are
// stored (chain.cpp, for the norm layers) and chains that draw them again per layer
// (regenerated.cpp): the tape, one layer forward with its statistics, and the backward
// steps over it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <omp.h>
#include <vector>

#include "chain/chain_common.hpp"
#include "chain/loss.hpp"
#include "chain/norm_layers.hpp"
#include "common/reduce.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/precision.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace layerwise {

using blas::Trans;
using detail::Buffer;
using detail::frobenius_norm;
using detail::make_buffer;
using detail::needs_preactivations;
using detail::parallel_for;
using detail::record_nonfinite;
using detail::worth_parallel;

// out = alpha a op(W_l) + beta out for a (m rows), with tiled_gemm's tiles: op(W) = W^T
// (tw = Yes: a is m x n_in, out m x n_out), as the forward pass uses it, or W (tw = No:
// a is m x n_out, out m x n_in), as the backward pass does. A source that draws blocks
// draws each tile's rows (W^T) or columns (W) of W_l on the thread that uses them: the
// same products, so the same bits as from the stored layer, with the block in cache and
// no whole layer written out and read back.
template <typename T>
void weight_gemm(const ChainView<T>& c, int l, Trans tw, int m, T alpha, const T* a, T beta,
                 T* out, int nt) {
  const int n_in = c.widths[l], n_out = c.widths[l + 1];
  const bool transposed = tw == Trans::Yes;
  const int n = transposed ? n_out : n_in, k = transposed ? n_in : n_out;
  if (!c.source || !c.source->draws_blocks(l)) {
    detail::tiled_gemm(Trans::No, tw, m, n, k, alpha, a, k, c.weight(l), n_in, beta, out, n,
                       nt);
    return;
  }
  const LayerSource<T>* source = c.source;
  detail::tiled_gemm_drawn_b<T>(
      Trans::No, tw, m, n, k, alpha, a, k,
      [&](int j0, int nj, T* block) {
        if (transposed)
          source->weight_block(l, j0, j0 + nj, 0, n_in, block, static_cast<std::size_t>(n_in));
        else
          source->weight_block(l, 0, n_out, j0, j0 + nj, block, static_cast<std::size_t>(nj));
      },
      beta, out, n, nt);
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

struct LayerForwardStats {
  double derivative_sum = 0.0;
  std::size_t saturated = 0;
  std::size_t dead_units = 0;
};

// Per-call scratch, sized once for the widest layer so the layer loop never allocates.
struct Scratch {
  std::vector<double> row_a, row_b;       // per-example partial sums
  std::vector<std::size_t> row_count;     // per-example counts
  std::vector<unsigned char> alive;       // per-unit "phi' was ever non-zero"
  std::vector<double> column;             // per-unit sums (bias gradient)
  std::vector<double> values;             // one row of T (derivatives), as raw storage
  Scratch(int batch, int widest)
      : row_a(batch), row_b(batch), row_count(batch), alive(widest), column(widest),
        values(widest) {}
  template <typename T>
  T* row_values(int n) {
    static_assert(sizeof(T) <= sizeof(double));
    if (values.size() < static_cast<std::size_t>(n)) values.resize(n);
    return reinterpret_cast<T*>(values.data());
  }
};

// u = norm(W h + b); h_out = phi(u) or h_in + s * phi(u); statistics of phi'(u); and
// ||h_out[i]||^2 per example into row_sq, fused into the same pass over the layer.
template <typename T>
LayerForwardStats forward_layer(const ChainView<T>& c, int l, int batch, const T* h_in, T* u,
                                T* h_out, T* inv_std, double* row_sq, Scratch& ws, int nt) {
  const int n_out = c.widths[l + 1];
  const std::size_t total = static_cast<std::size_t>(batch) * n_out;
  // Bias rows first, then one GEMM accumulating onto them (beta = 1).
  for (int i = 0; i < batch; ++i)
    std::memcpy(u + static_cast<std::size_t>(i) * n_out, c.bias(l), sizeof(T) * n_out);
  weight_gemm(c, l, Trans::Yes, batch, T(1), h_in, T(1), u, nt);
  detail::norm_forward(c.norm, u, batch, n_out, inv_std, nt);

  const Activation act = c.activations[l];
  const T scale = static_cast<T>(c.residual_scale);
  const bool residual = c.residual_at(l);
  const double saturation = kSaturationFraction * max_derivative(act);
  const bool saturating = is_saturating(act);
  double* row_dsum = ws.row_a.data();
  std::size_t* row_sat = ws.row_count.data();
  unsigned char* alive = ws.alive.data();
  std::fill(alive, alive + n_out, 0);
  // Branch-free inner loops (the activation and the residual flag are compile-time
  // constants inside) so that the compiler vectorises them.
  auto run = [&](auto tag, auto residual_tag) {
    constexpr Activation A = decltype(tag)::value;
    constexpr bool kResidual = decltype(residual_tag)::value;
    // One row in three simple passes (values, derivatives, reductions) that each
    // vectorise; `d` is a row of scratch.
    auto row = [&](int i, unsigned char* alive_out, T* d) {
      const int n = n_out;
      const T s = scale;
      const T sat_level = static_cast<T>(saturation);
      const std::size_t off = static_cast<std::size_t>(i) * n;
      const T* hin = kResidual ? h_in + off : nullptr;
      const int sat = detail::activate_row<A, kResidual>(u + off, h_out + off, hin, n, s,
                                                         sat_level, d, alive_out, row_dsum[i],
                                                         row_sq[i]);
      row_sat[i] = saturating ? static_cast<std::size_t>(sat) : 0;
    };
    if (worth_parallel(total)) {
      // A unit is dead when phi' vanishes for every example: an OR of per-thread flags,
      // which does not depend on how the rows were split.
#pragma omp parallel num_threads(nt)
      {
        std::vector<unsigned char> local(n_out, 0);
        std::vector<T> d(n_out);
#pragma omp for schedule(static)
        for (int i = 0; i < batch; ++i) row(i, local.data(), d.data());
#pragma omp critical(pyjac_alive)
        for (int j = 0; j < n_out; ++j) alive[j] |= local[j];
      }
    } else {
      T* d = ws.row_values<T>(n_out);
      for (int i = 0; i < batch; ++i) row(i, alive, d);
    }
  };
  dispatch_activation(act, [&](auto tag) {
    if (residual)
      run(tag, std::true_type{});
    else
      run(tag, std::false_type{});
  });
  LayerForwardStats s;
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
  const T branch = static_cast<T>(c.branch_scale(l));
  const std::size_t total = static_cast<std::size_t>(batch) * n;
  constexpr std::size_t kRun = 8192;
  const long long runs = static_cast<long long>((total + kRun - 1) / kRun);
  const T* u = tape.u[l].get();
  const T* h = tape.h[l].get();
  dispatch_activation(c.activations[l], [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    parallel_for(runs, nt, worth_parallel(total), [&](long long r) {
      const std::size_t k0 = static_cast<std::size_t>(r) * kRun;
      const std::size_t len = std::min(kRun, total - k0);
      if (u)
        detail::derivative_run<A, false>(g + k0, u + k0, du + k0, len, branch);
      else if constexpr (detail::kOutputForm<A>)
        detail::derivative_run<A, true>(g + k0, h + k0, du + k0, len, branch);
    });
  });
}

// Column sums of a (rows x cols) block into out (double), each column summed over the rows
// in order, whatever the thread count; blocks of columns keep the reads contiguous.
template <typename T>
void column_sums(const T* a, int rows, int cols, double* out, int nt) {
  constexpr int kBlock = 256;
  const int blocks = (cols + kBlock - 1) / kBlock;
  std::fill(out, out + cols, 0.0);
  parallel_for(blocks, nt, worth_parallel(std::size_t(rows) * cols), [&](int blk) {
    const int j0 = blk * kBlock, j1 = std::min(cols, j0 + kBlock);
    for (int i = 0; i < rows; ++i) {
      const T* r = a + static_cast<std::size_t>(i) * cols;
      for (int j = j0; j < j1; ++j) out[j] += r[j];
    }
  });
}

// Row blocks of the lower-triangular Gram products: one block (a full square GEMM) for
// small batches, where call overhead dominates, four above.
inline int gram_blocks(int batch) { return batch >= 128 ? 4 : 1; }

// Multiply-adds of the two Gram matrices against the explicit weight gradient's.
inline bool prefer_ghost_norm(int batch, int n_in, int n_out) {
  const int kb = gram_blocks(batch);
  const double fraction = (kb + 1.0) / (2.0 * kb);  // of each square actually formed
  return fraction * batch * static_cast<double>(batch) * (static_cast<double>(n_in) + n_out) <
         static_cast<double>(batch) * n_in * n_out;
}

// ||dz^T h||_F from the two batch Gram matrices (the "ghost norm"): with G = dz dz^T
// and K = h h^T, ||dz^T h||_F^2 = sum_ij G_ij K_ij. Cheaper than forming dW when the
// batch is smaller than the layer. Only the lower triangles are needed; they are formed
// as a fixed set of row-block GEMMs, each single-threaded, shared out by OpenMP: a fixed
// decomposition is what makes the sums identical at every thread count (OpenBLAS's
// threaded SYRK and thin GEMMs do not reproduce their single-threaded results). dz and h
// are prescaled by powers of two (into `scaled`, two slabs) when their Grams would leave
// T's range.
template <typename T>
double ghost_norm(const T* dz, int n_out, double dz_norm, const T* h, int n_in, double h_norm,
                  int batch, T* gram_dz, T* gram_h, T* scaled, int nt) {
  const int e_dz = detail::gram_exponent<T>(dz_norm), e_h = detail::gram_exponent<T>(h_norm);
  const std::size_t slab = static_cast<std::size_t>(batch) * std::max(n_in, n_out);
  dz = detail::scaled_copy(dz, static_cast<std::size_t>(batch) * n_out, e_dz, scaled);
  h = detail::scaled_copy(h, static_cast<std::size_t>(batch) * n_in, e_h, scaled + slab);
  const int kBlocks = gram_blocks(batch);
  const int block = (batch + kBlocks - 1) / kBlocks;
  const double flops = static_cast<double>(batch) * batch * (n_in + n_out);
  {
    BlasThreadScope single(1);
    auto gram_task = [&](int task) {
      const bool of_dz = task < kBlocks;
      const int r0 = (task % kBlocks) * block;
      const int r1 = std::min(batch, r0 + block);
      if (r0 >= r1) return;
      const T* a = of_dz ? dz : h;
      const int k = of_dz ? n_out : n_in;
      T* g = of_dz ? gram_dz : gram_h;
      blas::gemm(Trans::No, Trans::Yes, r1 - r0, r1, k, T(1),
                 a + static_cast<std::size_t>(r0) * k, k, a, k, T(0),
                 g + static_cast<std::size_t>(r0) * batch, batch);
    };
    if (nt > 1 && flops >= 1 << 21) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
      for (int task = 0; task < 2 * kBlocks; ++task) gram_task(task);
    } else {
      for (int task = 0; task < 2 * kBlocks; ++task) gram_task(task);
    }
  }
  return detail::ghost_norm_value(detail::lower_gram_contraction(gram_dz, gram_h, batch),
                                 e_dz + e_h);
}


// The layer-at-a-time pass (chains with norm layers, and chains whose parameters a
// LayerSource draws) as named steps over shared state: the forward pass with its tape,
// the loss, then one backward step per layer.
template <typename T>
class LayerwiseBackprop {
 public:
  // checkpoint_every = K > 1 keeps the tape only for h_K, h_2K, ... and the top segment;
  // the backward pass recomputes each segment of K layers from its checkpoint, which
  // holds O(depth / K + K) activations instead of O(depth). K <= 1 keeps the whole tape.
  LayerwiseBackprop(const ChainView<T>& c, const T* x, int batch, const BackpropOptions& o,
                    const BackpropOutputs<T>& out, int nt, int checkpoint_every = 0)
      : c_(c), x_(x), batch_(batch), o_(o), out_(out), nt_(nt), L_(c.depth()),
        widest_(*std::max_element(c.widths.begin(), c.widths.end())),
        slab_(static_cast<std::size_t>(batch) * widest_), ws_(batch, widest_),
        s_(detail::empty_stats(L_, batch)), unscale_(1.0 / o.loss_scale),
        rounding_(o.count_rounding || o.grad_format != GradFormat::Native),
        every_(checkpoint_every > 1 ? checkpoint_every : 0),
        top_(every_ > 0 ? segment_start(L_ - 1) : 0), scratch_row_sq_(batch) {}

  BackpropStats run(const T* target, const std::int64_t* labels) {
    forward();
    start(target, labels);
    for (int l = L_ - 1; l >= 0; --l) {
      check_interrupt();
      if (every_ > 0) restore_tape(l);
      backward_layer(l);
      if (every_ > 0) release_layer(l);
    }
    return std::move(s_);
  }

 private:
  int segment_start(int l) const { return (l / every_) * every_; }

  // ---- forward, keeping what the backward pass needs ------------------------------------
  void forward() {
    tape_.x = x_;
    tape_.h.resize(L_);
    tape_.u.resize(L_);
    tape_.inv_std.resize(L_);
    tape_.row_sq.assign(L_ + 1, std::vector<double>(batch_));
    s_.activation_norm[0] =
        frobenius_norm(x_, batch_, c_.widths[0], nt_, tape_.row_sq[0].data()).norm;
    for (int l = 0; l < L_; ++l) {
      check_interrupt();
      forward_step(l, true);
      if (every_ > 0) drop_below_top(l);
    }
    if (out_.output)
      std::memcpy(out_.output, tape_.layer_input(L_),
                  sizeof(T) * static_cast<std::size_t>(batch_) * c_.widths[L_]);
  }

  // Layer l forward into its tape entries (allocated where missing). `record`: store its
  // statistics; a recomputation (the same numbers again) leaves them, and row_sq, alone.
  void forward_step(int l, bool record) {
    const int n = c_.widths[l + 1];
    const std::size_t total = static_cast<std::size_t>(batch_) * n;
    if (!tape_.h[l]) tape_.h[l] = make_buffer<T>(total);
    T* pre = tape_.h[l].get();
    if (needs_preactivations(c_, l)) {
      if (!tape_.u[l]) tape_.u[l] = make_buffer<T>(total);
      pre = tape_.u[l].get();
    }
    if (c_.norm != Norm::None && !tape_.inv_std[l])
      tape_.inv_std[l] = make_buffer<T>(c_.norm == Norm::LayerNorm ? batch_ : n);
    double* row_sq = record ? tape_.row_sq[l + 1].data() : scratch_row_sq_.data();
    const auto fs = forward_layer(c_, l, batch_, tape_.layer_input(l), pre, tape_.h[l].get(),
                                  tape_.inv_std[l].get(), row_sq, ws_, nt_);
    if (!record) return;
    s_.derivative_mean[l] = fs.derivative_sum / static_cast<double>(total);
    s_.saturated_fraction[l] = static_cast<double>(fs.saturated) / static_cast<double>(total);
    s_.dead_fraction[l] = static_cast<double>(fs.dead_units) / n;
    double hsq = 0.0;
    for (int i = 0; i < batch_; ++i) hsq += row_sq[i];
    detail::store_activation_norm(s_, l + 1, tape_.h[l].get(), batch_, n, hsq, nt_, row_sq);
  }

  // ---- checkpoints ---------------------------------------------------------------------
  // h_m is tape_.h[m - 1]: kept when m is a multiple of K or feeds the top segment.
  bool keeps_output(int l) const { return (l + 1) % every_ == 0 || l + 1 >= top_; }

  // After layer l's forward step below the top segment: its input (unless a checkpoint)
  // and its pre-activations go; the backward pass recomputes them.
  void drop_below_top(int l) {
    if (l >= top_) return;
    if (l >= 1 && !keeps_output(l - 1)) tape_.h[l - 1].reset();
    tape_.u[l].reset();
    tape_.inv_std[l].reset();
  }

  bool has_tape(int l) const {
    if (l >= 1 && !tape_.h[l - 1]) return false;
    if (!tape_.h[l]) return false;
    if (needs_preactivations(c_, l) && !tape_.u[l]) return false;
    return c_.norm == Norm::None || tape_.inv_std[l];
  }

  // Before layer l's backward step: its segment forward again from the checkpoint below.
  void restore_tape(int l) {
    if (has_tape(l)) return;
    for (int m = segment_start(l); m <= l; ++m) {
      check_interrupt();
      forward_step(m, false);
    }
  }

  void release_layer(int l) {
    tape_.h[l].reset();
    tape_.u[l].reset();
    tape_.inv_std[l].reset();
  }

  // ---- the loss and dL/dh_L ----------------------------------------------------------------
  void start(const T* target, const std::int64_t* labels) {
    g_ = make_buffer<T>(slab_);
    g_prev_ = make_buffer<T>(slab_);
    dz_ = make_buffer<T>(slab_);
    g_norm_ = detail::start_backward(o_, tape_.layer_input(L_), batch_, c_.widths[L_], target,
                                     labels, g_.get(), s_, nt_);
  }

  void store_low_precision(T* a, std::size_t n, std::int64_t& under, std::int64_t& over,
                           std::int64_t* zeros) {
    if (!rounding_) return;
    const auto counts = round_to_format(a, n, o_.grad_format, nt_);
    under = counts.underflow;
    over = counts.overflow;
    if (zeros) *zeros = counts.zeros;
  }

  // ---- one layer back: dz_l, its bias and weight gradients, then dL/dh_{l-1} ----------
  void backward_layer(int l) {
    const int n_in = c_.widths[l], n_out = c_.widths[l + 1];
    T* dzl = dz_.get();
    times_derivative(c_, l, batch_, g_.get(), tape_, dzl, nt_);
    if (c_.norm != Norm::None)
      detail::norm_backward(c_.norm, dzl, tape_.u[l].get(), batch_, n_out,
                            tape_.inv_std[l].get(), nt_);
    store_low_precision(dzl, static_cast<std::size_t>(batch_) * n_out, s_.dz_underflow_count[l],
                        s_.dz_overflow_count[l], nullptr);
    const auto dzn = frobenius_norm(dzl, batch_, n_out, nt_, ws_.row_a.data());
    if (o_.weight_grads) {
      bias_gradient(l, dzl, n_out);
      weight_gradient(l, dzl, dzn);
    }
    propagate(l, dzl, dzn.norm, n_in);
  }

  void bias_gradient(int l, const T* dzl, int n_out) {
    double* bias_grad = ws_.column.data();
    column_sums(dzl, batch_, n_out, bias_grad, nt_);
    detail::store_norm(detail::vector_norm(bias_grad, static_cast<std::size_t>(n_out)),
                       exponent_, unscale_, s_.bias_grad_norm[l], s_.log_bias_grad_norm[l]);
    if (o_.keep_grads)
      for (int j = 0; j < n_out; ++j)
        out_.bias_grads[l][j] =
            static_cast<T>(detail::unscaled_value(bias_grad[j], exponent_, unscale_));
  }

  // dW = dz^T h_{l-1}: its norm, the per-example norms, and (kept) itself.
  void weight_gradient(int l, const T* dzl, const detail::NormResult& dzn) {
    const int n_in = c_.widths[l], n_out = c_.widths[l + 1];
    const T* h_in = tape_.layer_input(l);
    const double* dz_row_sq = ws_.row_a.data();
    for (int i = 0; i < batch_; ++i)
      s_.per_example_weight_grad_norm[static_cast<std::size_t>(l) * batch_ + i] =
          detail::unscaled_value(
              detail::row_norm(dzl + static_cast<std::size_t>(i) * n_out, n_out, dz_row_sq[i]) *
                  detail::row_norm(h_in + static_cast<std::size_t>(i) * n_in, n_in,
                                   tape_.row_sq[l][i]),
              exponent_, unscale_);
    if (o_.keep_grads || !prefer_ghost_norm(batch_, n_in, n_out)) {
      T* dw = o_.keep_grads ? out_.weight_grads[l] : nullptr;
      if (!dw) {
        if (!dw_scratch_) {
          int biggest = 0;
          for (int k = 0; k < L_; ++k)
            biggest = std::max(biggest, c_.widths[k] * c_.widths[k + 1]);
          dw_scratch_ = make_buffer<T>(static_cast<std::size_t>(biggest));
        }
        dw = dw_scratch_.get();
      }
      detail::tiled_gemm(Trans::Yes, Trans::No, n_out, n_in, batch_, static_cast<T>(unscale_),
                         dzl, n_out, h_in, n_in, T(0), dw, n_in, nt_);
      detail::store_norm(frobenius_norm(dw, n_out, n_in, nt_).norm, exponent_, 1.0,
                         s_.weight_grad_norm[l], s_.log_weight_grad_norm[l]);
      if (o_.keep_grads)
        detail::unscale_entries(dw, static_cast<std::size_t>(n_out) * n_in, exponent_);
      return;
    }
    if (!gram_dz_) {
      gram_dz_ = make_buffer<T>(static_cast<std::size_t>(batch_) * batch_);
      gram_h_ = make_buffer<T>(static_cast<std::size_t>(batch_) * batch_);
      gram_scaled_ = make_buffer<T>(2 * slab_);
    }
    s_.used_ghost_norm = true;
    const double stored =
        dzn.finite ? ghost_norm(dzl, n_out, dzn.norm, h_in, n_in, s_.activation_norm[l], batch_,
                                gram_dz_.get(), gram_h_.get(), gram_scaled_.get(), nt_)
                   : dzn.norm;
    detail::store_norm(stored, exponent_, unscale_, s_.weight_grad_norm[l],
                       s_.log_weight_grad_norm[l]);
  }

  // dL/dh_{l-1} = 2^k (dz W_l (+ dL/dh_l through the skip connection)), and its norm.
  void propagate(int l, const T* dzl, double dz_norm, int n_in) {
    const bool skip = c_.residual_at(l);
    const int k =
        rounding_ ? 0 : detail::backward_rescale_exponent<T>(dz_norm, skip ? g_norm_ : 0.0);
    const T factor = std::ldexp(T(1), k);
    if (skip)
      std::memcpy(g_prev_.get(), g_.get(), sizeof(T) * static_cast<std::size_t>(batch_) * n_in);
    weight_gemm(c_, l, Trans::No, batch_, factor, dzl, skip ? factor : T(0), g_prev_.get(), nt_);
    exponent_ += k;
    std::swap(g_, g_prev_);
    store_low_precision(g_.get(), static_cast<std::size_t>(batch_) * n_in, s_.underflow_count[l],
                        s_.overflow_count[l], &s_.zero_count[l]);
    const auto gn = frobenius_norm(g_.get(), batch_, n_in, nt_, ws_.row_b.data());
    g_norm_ = gn.norm;
    detail::store_norm(gn.norm, exponent_, unscale_, s_.grad_norm[l], s_.log_grad_norm[l]);
    if (!std::isfinite(s_.grad_norm[l])) record_nonfinite(s_, l, 2);
    detail::record_underflow(s_, l);
  }

  const ChainView<T>& c_;
  const T* x_;
  const int batch_;
  const BackpropOptions& o_;
  const BackpropOutputs<T>& out_;
  const int nt_, L_, widest_;
  const std::size_t slab_;
  Scratch ws_;
  BackpropStats s_;
  const double unscale_;
  const bool rounding_;
  Tape<T> tape_;
  Buffer<T> g_, g_prev_, dz_, gram_dz_, gram_h_, gram_scaled_, dw_scratch_;
  int exponent_ = 0;      // g (and dz) are stored at 2^exponent_ times their value
  double g_norm_ = 0.0;   // ||g|| as stored
  const int every_;
  const int top_;
  std::vector<double> scratch_row_sq_;
};

}  // namespace layerwise
}  // namespace pyjac
