// Backprop through a chain without norm layers, tile at a time: the forward region
// (chain_tiled_forward.cpp), the loss, then one OpenMP region for the backward pass with
// one barrier per layer. Each backward tile of dL/dh_{l-1} = dz_l W_l is one
// single-threaded GEMM, finished in cache by the thread that formed it (rounding, norms,
// and dz_{l-1} with its row norms and column sums), so no thread waits for a serial step
// between layers. Every partial sum is kept per tile and reduced in tile order after the
// region, which makes the numbers the same at every thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "chain/chain_common.hpp"
#include "chain/chain_tiled_forward.hpp"
#include "common/layer_grid.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/chain/precision.hpp"
#include "pyjac/common/threads.hpp"
#include "common/reduce.hpp"

namespace pyjac::detail {
namespace {

using blas::Trans;

// What the backward pass measured in layer l: dz_l = dL/dz_l (batch x n_out), the
// gradient dL/dh_{l-1} it sends down (batch x n_in) and dW_l.
struct BackwardParts {
  LayerGrid dz_grid;                 // the tiles dz_l was formed in
  std::vector<BlockSquares> dz_sq;   // per dz tile
  std::vector<double> dz_row_sq;     // per column tile and example
  std::vector<double> dz_row_scale;  // float64 only: dz_row_sq is in units of its square
  std::vector<double> bias_part;     // per row tile and unit: column sums of dz
  LayerGrid g_grid;
  std::vector<BlockSquares> g_sq;    // per tile of dL/dh_{l-1}
  LayerGrid dw_grid;
  std::vector<BlockSquares> dw_sq;   // per tile of an explicit dW
  bool ghost = false;
  double ghost_sq = 0.0;             // ||dW||^2 / 4^(dz_exponent + h_exponent) from the Grams
  int dz_exponent = 0, h_exponent = 0;  // the power-of-two prescaling of dz and h
};


// Everything the backward region reads and writes besides the per-layer parts.
template <typename T>
struct BackwardState {
  const ChainView<T>* c;
  int batch;
  std::vector<const T*> h;  // h_l, l = 0..L (h_0 = x)
  std::vector<const T*> u;  // u_l of layer l, or null when phi' is read from h_{l+1}
  T* g[2];                  // dL/dh_l lives in g[l % 2]
  T* dz[2];                 // dL/dz_l lives in dz[l % 2]
  T* gram_dz[2];
  T* gram_h[2];
  T* scaled_dz = nullptr;   // prescaled copies for the Grams, when needed
  T* scaled_h = nullptr;
  const double* activation_norm;
  std::vector<T*> dw;       // explicit dW_l destinations (or a shared scratch), or null
  T unscale;
  double top_norm;          // ||dL/dh_L|| as stored (times the loss scale)
  GradFormat format;
  bool rounding;
  bool keep_grads;
  BackpropStats* stats;
};

// The sum of squares of one tile of a (.. x ld) matrix.
template <typename T>
BlockSquares tile_squares(const T* a, std::size_t ld, const Tile& tile) {
  return block_sum_squares(a + static_cast<std::size_t>(tile.i0) * ld + tile.j0,
                           static_cast<std::size_t>(tile.rows()),
                           static_cast<std::size_t>(tile.cols()), ld);
}

// Rounds a tile's rows to the gradient format and adds the counts.
template <typename T>
void round_rows(T* a, std::size_t ld, const Tile& tile, GradFormat format, std::int64_t* under,
                std::int64_t* over, std::int64_t* zeros) {
  std::int64_t u = 0, o = 0, z = 0;
  for (int i = tile.i0; i < tile.i1; ++i) {
    const auto r = round_to_format(a + static_cast<std::size_t>(i) * ld + tile.j0,
                                   static_cast<std::size_t>(tile.cols()), format, 1);
    u += r.underflow;
    o += r.overflow;
    z += r.zeros;
  }
#pragma omp atomic
  *under += u;
#pragma omp atomic
  *over += o;
  if (zeros) {
#pragma omp atomic
    *zeros += z;
  }
}

// dz_l = branch * g * phi'(u_l) over one tile of (batch x n_out), g = dL/dh_{l+1}; its
// rounding, row norms and column sums.
template <typename T>
void dz_tile(const BackwardState<T>& st, int l, const Tile& tile, int t, BackwardParts& p) {
  const ChainView<T>& c = *st.c;
  const int n = c.widths[l + 1];
  const T branch = static_cast<T>(c.branch_scale(l));
  const T* g = st.g[(l + 1) % 2];
  T* dz = st.dz[l % 2];
  const T* u = st.u[l];
  const T* h = st.h[l + 1];
  const std::size_t len = static_cast<std::size_t>(tile.cols());
  double* bias = p.bias_part.data() + static_cast<std::size_t>(tile.row_tile) * n + tile.j0;
  // Rounding changes dz after it is formed, so its column sums wait for it; otherwise
  // they are taken in the same pass (thin layers have short rows, where a pass costs
  // more in loop overhead than in arithmetic).
  double* sums = st.rounding ? nullptr : bias;
  dispatch_activation(c.activations[l], [&](auto tag) {
    constexpr Activation A = decltype(tag)::value;
    for (int i = tile.i0; i < tile.i1; ++i) {
      const std::size_t off = static_cast<std::size_t>(i) * n + tile.j0;
      if (u)
        derivative_run<A, false>(g + off, u + off, dz + off, len, branch, sums);
      else if constexpr (kOutputForm<A>)
        derivative_run<A, true>(g + off, h + off, dz + off, len, branch, sums);
    }
  });
  if (st.rounding)
    round_rows(dz, n, tile, st.format, &st.stats->dz_underflow_count[l],
               &st.stats->dz_overflow_count[l], nullptr);
  double* row_sq = p.dz_row_sq.data() + static_cast<std::size_t>(tile.col_tile) * st.batch;
  double total = 0.0;
  for (int i = tile.i0; i < tile.i1; ++i) {
    const T* r = dz + static_cast<std::size_t>(i) * n + tile.j0;
    row_sq[i] = row_sum_squares(r, len);
    total += row_sq[i];
    // float64 squares that over- or underflowed: keep the row's scale (float32 squares
    // stay in double's range, so only a non-finite entry gets here, with scale 1).
    if (!plain_sum_is_exact<T>(row_sq[i])) {
      const BlockSquares b = block_squares(r, 1, tile.cols(), n, row_sq[i]);
      row_sq[i] = b.sum;
      if (!p.dz_row_scale.empty())
        p.dz_row_scale[static_cast<std::size_t>(tile.col_tile) * st.batch + i] = b.scale;
    }
    if (st.rounding)
      for (std::size_t j = 0; j < len; ++j) bias[j] += r[j];
  }
  p.dz_sq[t] = block_squares(dz + static_cast<std::size_t>(tile.i0) * n + tile.j0, tile.rows(),
                             tile.cols(), n, total);
}

// dL/dh_l = dz_l W_l (+ dL/dh_{l+1} through the skip) over one tile, then, for l > 0,
// dz_{l-1} on the same tile.
template <typename T>
void g_tile(const BackwardState<T>& st, int l, int t, T factor, std::vector<BackwardParts>& parts) {
  const ChainView<T>& c = *st.c;
  BackwardParts& p = parts[l];
  const Tile tile = p.g_grid.at(t);
  const int n_in = c.widths[l], n_out = c.widths[l + 1];
  T* g = st.g[l % 2];
  T* gt = g + static_cast<std::size_t>(tile.i0) * n_in + tile.j0;
  if (c.residual_at(l)) {
    const T* above = st.g[(l + 1) % 2];
    for (int i = tile.i0; i < tile.i1; ++i)
      std::memcpy(g + static_cast<std::size_t>(i) * n_in + tile.j0,
                  above + static_cast<std::size_t>(i) * n_in + tile.j0, sizeof(T) * tile.cols());
  }
  blas::gemm(Trans::No, Trans::No, tile.rows(), tile.cols(), n_out, factor,
             st.dz[l % 2] + static_cast<std::size_t>(tile.i0) * n_out, n_out,
             c.weights[l] + tile.j0, n_in, c.residual_at(l) ? factor : T(0), gt, n_in);
  if (st.rounding)
    round_rows(g, n_in, tile, st.format, &st.stats->underflow_count[l],
               &st.stats->overflow_count[l], &st.stats->zero_count[l]);
  p.g_sq[t] = tile_squares(g, n_in, tile);
  if (l > 0) {
    prefetch_weights(c, l - 1, t, p.g_grid.count());
    dz_tile(st, l - 1, tile, t, parts[l - 1]);
  }
}

// dW_l = unscale * dz_l^T h_l over one tile of (n_out x n_in), and its sum of squares;
// a kept dW then loses the pass's scale 2^exponent.
template <typename T>
void dw_tile(const BackwardState<T>& st, int l, int t, int exponent, BackwardParts& p) {
  const ChainView<T>& c = *st.c;
  const Tile tile = p.dw_grid.at(t);
  const int n_in = c.widths[l], n_out = c.widths[l + 1];
  T* dw = st.dw[l];
  blas::gemm(Trans::Yes, Trans::No, tile.rows(), tile.cols(), st.batch, st.unscale,
             st.dz[l % 2] + tile.i0, n_out, st.h[l] + tile.j0, n_in, T(0),
             dw + static_cast<std::size_t>(tile.i0) * n_in + tile.j0, n_in);
  p.dw_sq[t] = tile_squares(dw, n_in, tile);
  if (exponent != 0 && st.keep_grads)
    for (int i = tile.i0; i < tile.i1; ++i)
      unscale_entries(dw + static_cast<std::size_t>(i) * n_in + tile.j0,
                      static_cast<std::size_t>(tile.cols()), exponent);
}

// ||dz[i]|| over the column tiles it was formed in; float64 rows whose squares underflowed
// carry a scale (dz_tile), and are then combined relative to the largest part.
inline double example_dz_norm(const BackwardParts& p, int i, int batch) {
  const int cols = p.dz_grid.cols;
  double plain = 0.0;
  bool scaled = false;
  for (int col = 0; col < cols; ++col) {
    const std::size_t k = static_cast<std::size_t>(col) * batch + i;
    plain += p.dz_row_sq[k];
    scaled |= !p.dz_row_scale.empty() && p.dz_row_scale[k] != 1.0;
  }
  if (!scaled && std::isfinite(plain)) return std::sqrt(plain);
  ScaledNorm acc;
  for (int col = 0; col < cols; ++col) {
    const std::size_t k = static_cast<std::size_t>(col) * batch + i;
    BlockSquares part;
    part.sum = p.dz_row_sq[k];
    if (!p.dz_row_scale.empty()) part.scale = p.dz_row_scale[k];
    acc.add(part);
  }
  return acc.value();
}

// One layer's tasks in the backward region, largest first: the two Grams of the ghost
// norm, the explicit dW tiles, the tiles of dL/dh_{l-1}; and, first of all, the
// contraction of the previous layer's Grams (deferred so that the Grams need no
// barrier of their own).
struct LayerTasks {
  int contract = 0, grams = 0, dw = 0, g = 0;
  int count() const { return contract + grams + dw + g; }
};

template <typename T>
void run_task(const BackwardState<T>& st, int l, const LayerTasks& k, int task, int exponent,
              int step, std::vector<BackwardParts>& parts) {
  const int batch = st.batch;
  if (task < k.contract) {
    parts[l + 1].ghost_sq =
        lower_gram_contraction(st.gram_dz[(l + 1) % 2], st.gram_h[(l + 1) % 2], batch);
    return;
  }
  task -= k.contract;
  if (task < k.grams) {
    const ChainView<T>& c = *st.c;
    BackwardParts& p = parts[l];
    const bool of_dz = task == 0;
    const int n = of_dz ? c.widths[l + 1] : c.widths[l];
    // Norms known before this step (dz_l's tiles were finished in the previous one).
    const double norm = of_dz ? combine_block_squares(p.dz_sq).norm : st.activation_norm[l];
    const int e = gram_exponent<T>(norm);
    (of_dz ? p.dz_exponent : p.h_exponent) = e;
    const T* a = scaled_copy(of_dz ? st.dz[l % 2] : st.h[l], static_cast<std::size_t>(batch) * n,
                             e, of_dz ? st.scaled_dz : st.scaled_h);
    blas::syrk_lower(batch, n, T(1), a, n, T(0), of_dz ? st.gram_dz[l % 2] : st.gram_h[l % 2],
                     batch);
    return;
  }
  task -= k.grams;
  if (task < k.dw) {
    dw_tile(st, l, task, exponent, parts[l]);
    return;
  }
  g_tile(st, l, task - k.dw, std::ldexp(T(1), step), parts);
}

// The power of two that layer l's dL/dh_{l-1} is formed with (see
// backward_rescale_exponent): a function of norms finished before the layer's step, so
// every thread of the region computes the same value without waiting for one of them.
template <typename T>
int step_exponent(const BackwardState<T>& st, int l, const std::vector<BackwardParts>& parts) {
  if (st.rounding) return 0;
  const double dz_norm = combine_block_squares(parts[l].dz_sq).norm;
  double carried = 0.0;
  if (st.c->residual_at(l))
    carried = l + 1 < st.c->depth() ? combine_block_squares(parts[l + 1].g_sq).norm : st.top_norm;
  return backward_rescale_exponent<T>(dz_norm, carried);
}

// One tiled backprop call as named steps over shared state: the forward region and its
// per-layer statistics, the loss, the plan of the backward region, the region itself,
// and the reductions in a fixed order.
template <typename T>
class TiledBackprop {
 public:
  TiledBackprop(const ChainView<T>& c, const T* x, int batch, const BackpropOptions& o,
                const BackpropOutputs<T>& out, int nt)
      : c_(c), x_(x), batch_(batch), o_(o), out_(out), nt_(nt), L_(c.depth()),
        s_(empty_stats(L_, batch)) {
    for (int w : c.widths) widest_ = std::max(widest_, w);
  }

  BackpropStats run(const T* target, const std::int64_t* labels) {
    forward();
    forward_statistics();
    start(target, labels);
    plan_backward();
    backward_region();
    reduce_backward();
    return std::move(s_);
  }

 private:
  // ---- forward ------------------------------------------------------------------------
  void forward() {
    h_store_.resize(L_);
    u_store_.resize(L_);
    std::vector<const T*> in(L_);
    std::vector<T*> pre(L_);
    h_out_.resize(L_);
    for (int l = 0; l < L_; ++l) {
      const std::size_t total = static_cast<std::size_t>(batch_) * c_.widths[l + 1];
      h_store_[l] = make_buffer<T>(total);
      h_out_[l] = h_store_[l].get();
      pre[l] = h_out_[l];
      if (needs_preactivations(c_, l)) {
        u_store_[l] = make_buffer<T>(total);
        pre[l] = u_store_[l].get();
      }
      in[l] = l == 0 ? x_ : h_out_[l - 1];
    }
    reset_forward_parts(c_.widths, batch_, fparts_);
    x_row_sq_.assign(batch_, 0.0);
    s_.activation_norm[0] = frobenius_norm(x_, batch_, c_.widths[0], nt_, x_row_sq_.data()).norm;
    std::vector<T> thread_rows(static_cast<std::size_t>(nt_) * widest_);
    BlasThreadScope single(1);
    forward_region(c_, batch_, in, pre, h_out_, fparts_, thread_rows.data(), widest_, nt_);
  }

  // The per-layer forward measurements from the region's per-tile parts.
  void forward_statistics() {
    for (int l = 0; l < L_; ++l) {
      const ForwardParts& p = fparts_[l];
      const int n = c_.widths[l + 1];
      const double total = static_cast<double>(batch_) * n;
      double dsum = 0.0, hsq = 0.0;
      std::int64_t sat = 0;
      for (int t = 0; t < p.grid.count(); ++t) {
        dsum += p.derivative_sum[t];
        sat += p.saturated[t];
      }
      int dead = 0;
      for (int j = 0; j < n; ++j) {
        unsigned char alive = 0;
        for (int r = 0; r < p.grid.rows; ++r) alive |= p.alive[static_cast<std::size_t>(r) * n + j];
        dead += alive == 0;
      }
      for (int i = 0; i < batch_; ++i) hsq += p.example_sq(i, batch_);
      s_.derivative_mean[l] = dsum / total;
      s_.saturated_fraction[l] = static_cast<double>(sat) / total;
      s_.dead_fraction[l] = static_cast<double>(dead) / n;
      store_activation_norm(s_, l + 1, h_out_[l], batch_, n, hsq, nt_);
    }
    if (out_.output)
      std::memcpy(out_.output, h_out_[L_ - 1],
                  sizeof(T) * static_cast<std::size_t>(batch_) * c_.widths[L_]);
  }

  // ---- the loss and dL/dh_L --------------------------------------------------------------
  void start(const T* target, const std::int64_t* labels) {
    slab_ = static_cast<std::size_t>(batch_) * widest_;
    for (int k = 0; k < 2; ++k) {
      g_store_[k] = make_buffer<T>(slab_);
      dz_store_[k] = make_buffer<T>(slab_);
    }
    top_norm_ = start_backward(o_, h_out_[L_ - 1], batch_, c_.widths[L_], target, labels,
                               g_store_[L_ % 2].get(), s_, nt_);
  }

  // ---- what the backward region reads and writes, and its tasks per layer -----------
  void plan_backward() {
    BackwardState<T>& st = st_;
    st.c = &c_;
    st.batch = batch_;
    st.h.assign(L_ + 1, nullptr);
    st.u.assign(L_, nullptr);
    st.h[0] = x_;
    for (int l = 0; l < L_; ++l) {
      st.h[l + 1] = h_out_[l];
      st.u[l] = u_store_[l].get();
    }
    for (int k = 0; k < 2; ++k) {
      st.g[k] = g_store_[k].get();
      st.dz[k] = dz_store_[k].get();
    }
    st.unscale = static_cast<T>(1.0 / o_.loss_scale);
    st.top_norm = top_norm_;
    st.format = o_.grad_format;
    st.rounding = o_.count_rounding || o_.grad_format != GradFormat::Native;
    st.keep_grads = o_.keep_grads;
    st.stats = &s_;
    st.activation_norm = s_.activation_norm.data();

    parts_.resize(L_);
    tasks_.resize(L_);
    std::size_t biggest = 0;
    bool any_ghost = false, any_scratch = false;
    // Top-down: layer l forms dz_l in the tiles of layer l+1's dL/dh_{l+1}.
    for (int l = L_ - 1; l >= 0; --l) {
      const int n_in = c_.widths[l], n_out = c_.widths[l + 1];
      BackwardParts& p = parts_[l];
      p.dz_grid = l == L_ - 1 ? layer_grid(batch_, n_out, n_out) : parts_[l + 1].g_grid;
      p.g_grid = layer_grid(batch_, n_in, n_out);
      p.ghost = o_.weight_grads && !o_.keep_grads && ghost_norm_preferred(batch_, n_in, n_out);
      p.dz_sq.resize(p.dz_grid.count());
      p.dz_row_sq.assign(static_cast<std::size_t>(p.dz_grid.cols) * batch_, 0.0);
      if (sizeof(T) == sizeof(double))
        p.dz_row_scale.assign(static_cast<std::size_t>(p.dz_grid.cols) * batch_, 1.0);
      p.bias_part.assign(static_cast<std::size_t>(p.dz_grid.rows) * n_out, 0.0);
      p.g_sq.resize(p.g_grid.count());
      if (!p.ghost && o_.weight_grads) {
        p.dw_grid = layer_grid(n_out, n_in, batch_);
        p.dw_sq.resize(p.dw_grid.count());
        any_scratch |= !o_.keep_grads;
      }
      any_ghost |= p.ghost;
      biggest = std::max(biggest, static_cast<std::size_t>(n_in) * n_out);
      LayerTasks& k = tasks_[l];
      k.contract = l + 1 < L_ && parts_[l + 1].ghost ? 1 : 0;
      k.grams = p.ghost ? 2 : 0;
      k.dw = p.ghost || !o_.weight_grads ? 0 : p.dw_grid.count();
      k.g = p.g_grid.count();
    }
    const std::size_t gram_size = static_cast<std::size_t>(batch_) * batch_;
    if (any_ghost) {
      gram_store_ = make_buffer<T>(4 * gram_size);
      for (int k = 0; k < 2; ++k) {
        st.gram_dz[k] = gram_store_.get() + k * gram_size;
        st.gram_h[k] = gram_store_.get() + (2 + k) * gram_size;
      }
      scaled_store_ = make_buffer<T>(2 * slab_);
      st.scaled_dz = scaled_store_.get();
      st.scaled_h = scaled_store_.get() + slab_;
      s_.used_ghost_norm = true;
    }
    if (any_scratch) dw_scratch_ = make_buffer<T>(biggest);
    st.dw.assign(L_, nullptr);
    for (int l = 0; l < L_ && o_.weight_grads; ++l)
      if (!parts_[l].ghost) st.dw[l] = o_.keep_grads ? out_.weight_grads[l] : dw_scratch_.get();
  }

  // ---- the backward region: one barrier per layer ---------------------------------------
  void backward_region() {
    BlasThreadScope single(1);
    const BackwardState<T>& cst = st_;
    std::vector<BackwardParts>& parts = parts_;
    const std::vector<LayerTasks>& tasks = tasks_;
    const int L = L_;
    TeamInterrupt interrupt;
    run_team(nt_, true, [&] {
      const int first = parts[L - 1].dz_grid.count();
#pragma omp for schedule(dynamic, 1)
      for (int t = 0; t < first; ++t)
        dz_tile(cst, L - 1, parts[L - 1].dz_grid.at(t), t, parts[L - 1]);
      int exponent = 0;  // of dz_l: the sum of the steps above
      for (int l = L - 1; l >= 0; --l) {
        if (interrupt.stop_at(L - 1 - l)) break;  // the whole team, at the same layer
        const int step = step_exponent(cst, l, parts);
        const int count = tasks[l].count();
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < count; ++task)
          run_task(cst, l, tasks[l], task, exponent, step, parts);
        exponent += step;
      }
    });
    interrupt.rethrow();
    if (parts_[0].ghost)
      parts_[0].ghost_sq = lower_gram_contraction(st_.gram_dz[0], st_.gram_h[0], batch_);
  }

  // ---- reductions, in a fixed order -----------------------------------------------------
  void reduce_backward() {
    const double unscale = 1.0 / o_.loss_scale;
    std::vector<double> bias_grad;
    int exponent = 0;  // of dz_l
    for (int l = L_ - 1; l >= 0; --l) {
      const BackwardParts& p = parts_[l];
      const int n_out = c_.widths[l + 1];
      const int g_exponent = exponent + step_exponent(st_, l, parts_);
      const auto gn = combine_block_squares(p.g_sq);
      store_norm(gn.norm, g_exponent, unscale, s_.grad_norm[l], s_.log_grad_norm[l]);
      if (!std::isfinite(s_.grad_norm[l])) record_nonfinite(s_, l, 2);
      record_underflow(s_, l);
      if (!o_.weight_grads) {
        exponent = g_exponent;
        continue;
      }

      bias_grad.assign(n_out, 0.0);
      for (int r = 0; r < p.dz_grid.rows; ++r)
        for (int j = 0; j < n_out; ++j)
          bias_grad[j] += p.bias_part[static_cast<std::size_t>(r) * n_out + j];
      store_norm(vector_norm(bias_grad.data(), bias_grad.size()), exponent, unscale,
                 s_.bias_grad_norm[l], s_.log_bias_grad_norm[l]);
      if (o_.keep_grads)
        for (int j = 0; j < n_out; ++j)
          out_.bias_grads[l][j] = static_cast<T>(unscaled_value(bias_grad[j], exponent, unscale));

      const ForwardParts* hp = l > 0 ? &fparts_[l - 1] : nullptr;
      const int n_in = c_.widths[l];
      for (int i = 0; i < batch_; ++i) {
        const double hsq = hp ? hp->example_sq(i, batch_) : x_row_sq_[i];
        s_.per_example_weight_grad_norm[static_cast<std::size_t>(l) * batch_ + i] =
            unscaled_value(example_dz_norm(p, i, batch_) *
                               row_norm(st_.h[l] + static_cast<std::size_t>(i) * n_in, n_in, hsq),
                           exponent, unscale);
      }
      if (p.ghost) {
        const auto dzn = combine_block_squares(p.dz_sq);
        store_norm(dzn.finite ? ghost_norm_value(p.ghost_sq, p.dz_exponent + p.h_exponent)
                              : dzn.norm,
                   exponent, unscale, s_.weight_grad_norm[l], s_.log_weight_grad_norm[l]);
      } else {
        store_norm(combine_block_squares(p.dw_sq).norm, exponent, 1.0, s_.weight_grad_norm[l],
                   s_.log_weight_grad_norm[l]);
      }
      exponent = g_exponent;
    }
  }

  const ChainView<T>& c_;
  const T* x_;
  const int batch_;
  const BackpropOptions& o_;
  const BackpropOutputs<T>& out_;
  const int nt_, L_;
  int widest_ = 0;
  std::size_t slab_ = 0;
  double top_norm_ = 0.0;  // ||dL/dh_L|| as stored
  BackpropStats s_;
  std::vector<Buffer<T>> h_store_, u_store_;
  std::vector<T*> h_out_;
  std::vector<ForwardParts> fparts_;
  std::vector<double> x_row_sq_;
  Buffer<T> g_store_[2], dz_store_[2];
  BackwardState<T> st_;
  std::vector<BackwardParts> parts_;
  std::vector<LayerTasks> tasks_;
  Buffer<T> gram_store_, scaled_store_, dw_scratch_;
};

}  // namespace

template <typename T>
BackpropStats backprop_tiled(const ChainView<T>& c, const T* x, int batch, const T* target,
                             const std::int64_t* labels, const BackpropOptions& o,
                             const BackpropOutputs<T>& out, int nt) {
  return TiledBackprop<T>(c, x, batch, o, out, nt).run(target, labels);
}

template BackpropStats backprop_tiled<float>(const ChainView<float>&, const float*, int,
                                             const float*, const std::int64_t*,
                                             const BackpropOptions&,
                                             const BackpropOutputs<float>&, int);
template BackpropStats backprop_tiled<double>(const ChainView<double>&, const double*, int,
                                              const double*, const std::int64_t*,
                                              const BackpropOptions&,
                                              const BackpropOutputs<double>&, int);

}  // namespace pyjac::detail
