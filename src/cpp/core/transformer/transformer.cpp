// Forward and backward pass through a stack of transformer encoder blocks, with the
// gradient measured at every point of the residual stream and for every parameter.
//
// Rows are tokens: x is (batch * seq_len, width). Per block, with s the residual scale:
//   pre-LN:  a = x + s SA(LN1(x)),      x' = a + s FF(LN2(a))
//   post-LN: a = LN1(x + s SA(x)),      x' = LN2(a + s FF(a))
//   none:    a = x + s SA(x),           x' = a + s FF(a)
// without residual connections the "x +" and "a +" terms go. SA is multi-head softmax
// attention, softmax(Q K^T / sqrt(d_head)) V then the output projection; FF is
// W_2 phi(W_1 . + b_1) + b_2.
#include "pyjac/transformer/transformer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "chain/layerwise_backprop.hpp"
#include "chain/loss.hpp"
#include "chain/norm_layers.hpp"
#include "common/reduce.hpp"
#include "common/slab.hpp"
#include "common/sizes.hpp"
#include "common/tiled_blas.hpp"
#include "pyjac/common/activation.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {

BlockNorm parse_block_norm(const std::string& name) {
  if (name == "pre") return BlockNorm::Pre;
  if (name == "post") return BlockNorm::Post;
  if (name == "none") return BlockNorm::None;
  throw std::invalid_argument("norm: expected 'pre', 'post' or None, got '" + name + "'");
}

const char* transformer_parameter_name(int index) {
  static const char* names[kTransformerParameters] = {
      "W_Q",         "W_K",         "W_V",          "in_proj_bias", "W_O",
      "out_proj_bias", "W_1",       "b_1",          "W_2",          "b_2",
      "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"};
  if (index < 0 || index >= kTransformerParameters)
    throw std::invalid_argument("index: no such transformer parameter");
  return names[index];
}

template <typename T>
void TransformerView<T>::validate() const {
  if (blocks.empty()) throw std::invalid_argument("depth: must be at least 1");
  if (width < 1) throw std::invalid_argument("width: must be at least 1");
  if (heads < 1 || width % heads != 0)
    throw std::invalid_argument("heads: " + std::to_string(heads) + " does not divide width " +
                                std::to_string(width));
  if (hidden < 0) throw std::invalid_argument("mlp_ratio: the MLP's width cannot be negative");
  if (activation != Activation::Relu && activation != Activation::Gelu)
    throw std::invalid_argument("activation: the MLP takes 'relu' or 'gelu', as PyTorch's does");
  for (std::size_t l = 0; l < blocks.size(); ++l) {
    const auto& b = blocks[l];
    const bool mlp = hidden > 0;  // hidden 0: attention blocks without an MLP
    const bool missing = !b.in_proj_weight || !b.in_proj_bias || !b.out_proj_weight ||
                         !b.out_proj_bias ||
                         (mlp && (!b.linear1_weight || !b.linear1_bias || !b.linear2_weight ||
                                  !b.linear2_bias)) ||
                         (norm != BlockNorm::None && (!b.norm1_weight || !b.norm1_bias ||
                                                      !b.norm2_weight || !b.norm2_bias));
    if (missing)
      throw std::invalid_argument("parameters: block " + std::to_string(l) + " lacks some");
  }
}

std::int64_t transformer_workspace_bytes(int depth, int width, int heads, int hidden, int batch,
                                         int seq_len, int dtype_size) {
  using detail::sat_add;
  using detail::sat_mul;
  const std::int64_t rows = sat_mul(batch, seq_len);
  // Per block: x, LN1 (x-hat, u), qkv (3), attention output, a, LN2 (x-hat, v), the MLP's
  // pre-activation and output, the probabilities; plus the backward pass's slabs.
  std::int64_t per_block = sat_mul(rows, sat_add(sat_mul(10, width), sat_mul(2, hidden)));
  per_block = sat_add(per_block, sat_mul(sat_mul(batch, heads), sat_mul(seq_len, seq_len)));
  std::int64_t total = sat_mul(depth, per_block);
  total = sat_add(total, sat_mul(rows, sat_add(sat_mul(12, width), sat_mul(2, hidden))));
  total = sat_add(total, sat_mul(4, sat_mul(width, sat_add(sat_mul(4, width), hidden))));
  return sat_mul(total, dtype_size);
}

namespace {

using blas::Trans;
using detail::parallel_for;
using detail::worth_parallel;
template <typename T>
using Vec = std::vector<T>;

using detail::Slab;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The projections and MLP are a few large GEMMs a block: tiles of at least this many
// multiply-adds (a grid still fixed by the shapes alone) pack each operand fewer times.
constexpr double kTileMacs = double(1 << 24);

template <typename T>
void fill_rows(T* a, std::size_t rows, int cols, const T* row) {
  for (std::size_t i = 0; i < rows; ++i) std::memcpy(a + i * cols, row, sizeof(T) * cols);
}

// y = x W^T + b for x (rows x n_in), W (n_out x n_in).
template <typename T>
void linear(const T* x, std::size_t rows, int n_in, const T* w, const T* b, int n_out, T* y,
            int nt) {
  fill_rows(y, rows, n_out, b);
  detail::tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(rows), n_out, n_in, T(1), x, n_in,
                     w, n_in, T(1), y, n_out, nt, kTileMacs);
}

// LayerNorm over each row (norm_layers.hpp: PyTorch's biased variance and eps), then the
// affine map: hat and rstd for the backward pass, y = hat * gamma + beta.
template <typename T>
void layer_norm(const T* x, std::size_t rows, int n, const T* gamma, const T* beta, T* hat,
                T* rstd, T* y, int nt) {
  std::copy(x, x + rows * n, hat);
  detail::norm_forward(Norm::LayerNorm, hat, static_cast<int>(rows), n, rstd, nt);
  parallel_for(static_cast<long long>(rows), nt, worth_parallel(rows * n), [&](long long i) {
    for (int j = 0; j < n; ++j) y[i * n + j] = hat[i * n + j] * gamma[j] + beta[j];
  });
}

// The LayerNorm's Jacobian (symmetric) on each row of g, in place: g <- N'(x) g. With g =
// gamma * dy it is the backward pass, with g = dx (then times gamma) the tangent.
template <typename T>
void layer_norm_jacobian(T* g, const T* hat, const T* rstd, std::size_t rows, int n, int nt) {
  detail::norm_backward(Norm::LayerNorm, g, hat, static_cast<int>(rows), n, rstd, nt);
}

// dx (+)= N'(x)^T (gamma * dy), per row; g is scratch of dy's size.
template <typename T>
void layer_norm_backward(const T* dy, const T* hat, const T* rstd, const T* gamma,
                         std::size_t rows, int n, T* dx, bool accumulate, T* g, int nt) {
  parallel_for(static_cast<long long>(rows), nt, worth_parallel(rows * n), [&](long long i) {
    for (int j = 0; j < n; ++j) g[i * n + j] = dy[i * n + j] * gamma[j];
  });
  layer_norm_jacobian(g, hat, rstd, rows, n, nt);
  parallel_for(static_cast<long long>(rows), nt, worth_parallel(rows * n), [&](long long i) {
    for (int j = 0; j < n; ++j) dx[i * n + j] = (accumulate ? dx[i * n + j] : T(0)) + g[i * n + j];
  });
}

// Norms of the LayerNorm's weight and bias gradients: sum over rows of dy * hat and dy.
template <typename T>
void layer_norm_grad_norms(const T* dy, const T* hat, std::size_t rows, int n, Slab<T>& scratch,
                           Vec<double>& column, int nt, double& weight_norm,
                           double& bias_norm) {
  const std::size_t total = rows * n;
  scratch.resize(total);
  for (std::size_t k = 0; k < total; ++k) scratch[k] = dy[k] * hat[k];
  layerwise::column_sums(scratch.data(), static_cast<int>(rows), n, column.data(), nt);
  weight_norm = detail::vector_norm(column.data(), n);
  layerwise::column_sums(dy, static_cast<int>(rows), n, column.data(), nt);
  bias_norm = detail::vector_norm(column.data(), n);
}

template <typename T>
double norm_of(const T* a, std::size_t rows, std::size_t cols, int nt) {
  return detail::frobenius_norm(a, rows, cols, nt).norm;
}

// out = base + s * branch, or s * branch alone (no residual connection); over the
// threads in fixed chunks (the same numbers at any count).
template <typename T>
void residual_sum(const T* base, const T* branch, T s, std::size_t n, bool residual, T* out,
                  int nt) {
  constexpr std::size_t kChunk = 1 << 14;
  const long long chunks = static_cast<long long>((n + kChunk - 1) / kChunk);
  parallel_for(chunks, nt, worth_parallel(n), [&](long long c) {
    const std::size_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
    if (residual)
      for (std::size_t k = lo; k < hi; ++k) out[k] = base[k] + s * branch[k];
    else
      for (std::size_t k = lo; k < hi; ++k) out[k] = s * branch[k];
  });
}

// One power iteration's outcome.
struct PowerResult {
  double log_value = std::numeric_limits<double>::quiet_NaN();
  int iterations = 0;
  bool converged = false;
};

void append(TransformerSpectralStats& s, const PowerResult& r) {
  s.log_value.push_back(r.log_value);
  s.iterations.push_back(r.iterations);
  s.converged.push_back(r.converged);
}

template <typename T>
struct BlockTape {
  Slab<T> x;                    // the block's input
  Slab<T> hat1, rstd1, u;       // LN1 (pre: of x; post: of x + s SA), sublayer-1 input (pre)
  Slab<T> qkv, probs, attn;     // projections, attention probabilities, heads' outputs
  Slab<T> a;                    // the stream after the attention sublayer
  Slab<T> hat2, rstd2, v;       // LN2 and the MLP's input (pre)
  Slab<T> g, dphi;              // phi and phi' of the MLP's pre-activation
};

template <typename T>
class Pass {
 public:
  // measure: false for a pass that only propagates (power iteration), which keeps no
  // statistics.
  Pass(const TransformerView<T>& net, int batch, int seq_len, int nt, bool measure = true)
      : measure_(measure), net_(net), B_(batch), T_(seq_len), N_(static_cast<std::size_t>(batch) * seq_len),
        d_(net.width), h_(net.heads), dh_(net.width / net.heads), m_(net.hidden), nt_(nt),
        s_(static_cast<T>(net.residual_scale)), column_(std::max(3 * net.width, net.hidden)) {}

  TransformerStats run(const T* x, const T* target, Loss loss, T* output) {
    const int L = net_.depth();
    stats_.grad_norm.assign(2 * L + 1, 0.0);
    stats_.activation_norm.assign(2 * L + 1, 0.0);
    stats_.parameter_grad_norm.assign(static_cast<std::size_t>(L) * kTransformerParameters, kNaN);
    stats_.query_grad_norm.assign(L, 0.0);
    stats_.key_grad_norm.assign(L, 0.0);
    stats_.attention_entropy.assign(static_cast<std::size_t>(L) * h_, 0.0);
    stats_.token_similarity.assign(L + 1, 0.0);
    stats_.rank_one_distance.assign(L + 1, 0.0);
    const std::size_t nd = N_ * d_;
    Slab<T> out;
    forward_all(x, out);
    record_point(0, tape_[0].x.data(), 1);
    rank_collapse(0, tape_[0].x.data());
    for (int l = 0; l < L; ++l) {
      const T* after = l + 1 < L ? tape_[l + 1].x.data() : out.data();
      record_point(2 * l + 1, tape_[l].a.data(), 1);
      record_point(2 * l + 2, after, 1);
      rank_collapse(l + 1, after);
    }
    if (output) std::copy(out.begin(), out.end(), output);
    Slab<T> g, g_in;
    g.resize(nd);
    g_in.resize(nd);
    stats_.loss = detail::loss_and_gradient(loss, out.data(), static_cast<int>(N_), d_, target,
                                            nullptr, g.data(), nt_);
    stats_.grad_norm[2 * L] = norm_of(g.data(), N_, d_, nt_);
    note_backward(2 * L, stats_.grad_norm[2 * L]);
    for (int l = L - 1; l >= 0; --l) {
      check_interrupt();
      backward_block(l, g.data(), g_in.data());
      std::swap(g, g_in);
    }
    return stats_;
  }

  // Power iteration on J^T J of the blocks [lo, hi] at the forward pass's tape: J v by
  // tangent passes, J^T u by the backward pass without its measurements; each block's
  // result is brought to unit norm and the log of its norm carried.
  PowerResult spectral(int lo, int hi, const TransformerSpectralOptions& o) {
    PowerResult result;
    double& log_value = result.log_value;
    int& iterations = result.iterations;
    bool& converged = result.converged;
    const std::size_t nd = N_ * d_;
    Slab<T> v(nd), w(nd);
    {
      Rng rng(o.seed, static_cast<std::uint64_t>(lo));  // each block its own start
      for (std::size_t k = 0; k < nd; ++k) v[k] = static_cast<T>(rng.normal());
    }
    normalise(v.data(), nd);
    double previous = kNaN, last_change = kNaN;
    for (iterations = 1; iterations <= o.iters; ++iterations) {
      check_interrupt();
      // u = J v, normalised block by block.
      double log_norm = 0.0;
      for (int l = lo; l <= hi; ++l) {
        tangent_block(l, v.data(), w.data());
        log_norm += normalise(w.data(), nd);
        std::swap(v, w);
      }
      log_value = log_norm;
      // v = J^T u, normalised likewise; its scale does not matter.
      for (int l = hi; l >= lo; --l) {
        backward_block(l, v.data(), w.data());
        normalise(w.data(), nd);
        std::swap(v, w);
      }
      if (!std::isfinite(log_value)) return result;
      if (std::isfinite(previous)) {
        const double change = std::abs(log_value - previous);
        // The remaining error of a geometrically converging sequence: change r / (1 - r).
        const double rate = std::isfinite(last_change) && last_change > 0.0
                                ? change / last_change : 1.0;
        const double remaining = rate < 1.0 ? change * rate / (1.0 - rate) : change;
        if (change <= o.tol && remaining <= o.tol) {
          converged = true;
          return result;
        }
        last_change = change;
      }
      previous = log_value;
    }
    iterations = o.iters;
    return result;
  }

  // ||J_l||_F^2 for l = lo+1..L (J_l: blocks 0..l-1) in log form, from probes pushed
  // through the tangent passes: the basis vectors (count = 0) or `count` Gaussian ones.
  // Each probe's tangent is normalised after every block and its log scale carried.
  void frobenius(int count, std::uint64_t seed, std::vector<double>& log_squares,
                 std::vector<double>& relative_error) {
    const int L = net_.depth();
    const std::size_t nd = N_ * d_;
    const bool exact = count == 0;
    const std::size_t n_probes = exact ? nd : static_cast<std::size_t>(count);
    // Per depth: the running log-sum-exp of 2 log ||J z|| and, for the estimate, the
    // sum of squares of the per-probe values relative to the first probe's scale.
    std::vector<double> log_sum(L, -std::numeric_limits<double>::infinity());
    std::vector<std::vector<double>> values(exact ? 0 : L);
    Slab<T> v(nd), w(nd);
    for (std::size_t probe = 0; probe < n_probes; ++probe) {
      check_interrupt();
      if (exact) {
        std::fill(v.begin(), v.end(), T(0));
        v[probe] = T(1);
      } else {
        Rng rng(seed, 1000 + probe);
        for (std::size_t k = 0; k < nd; ++k) v[k] = static_cast<T>(rng.normal());
      }
      double log_scale = normalise(v.data(), nd);
      for (int l = 0; l < L; ++l) {
        tangent_block(l, v.data(), w.data());
        log_scale += normalise(w.data(), nd);
        std::swap(v, w);
        const double term = 2.0 * log_scale;
        const double hi = std::max(log_sum[l], term);
        log_sum[l] = std::isfinite(hi) ? hi + std::log(std::exp(log_sum[l] - hi) +
                                                       std::exp(term - hi))
                                       : hi;
        if (!exact) values[l].push_back(term);
      }
    }
    log_squares.assign(L, 0.0);
    relative_error.assign(L, 0.0);
    for (int l = 0; l < L; ++l) {
      log_squares[l] = exact ? log_sum[l] : log_sum[l] - std::log(static_cast<double>(n_probes));
      if (exact || n_probes < 2) {
        relative_error[l] = exact ? 0.0 : kNaN;
        continue;
      }
      // Sample standard error of the mean of exp(values), relative to the mean.
      double sq = 0.0;
      for (double t : values[l]) {
        const double r = std::exp(t - log_squares[l]) - 1.0;
        sq += r * r;
      }
      relative_error[l] = std::sqrt(sq / static_cast<double>(n_probes - 1) /
                                    static_cast<double>(n_probes));
    }
  }

  // The stack's forward pass, keeping every block's tape; out: the output.
  void forward_all(const T* x, Slab<T>& out) {
    const int L = net_.depth();
    tape_.resize(L);
    const std::size_t nd = N_ * d_;
    out.resize(nd);
    for (auto* slab : {&d_buf_, &dff_, &dsub_, &da_, &dattn_, &ln_scratch_}) slab->resize(nd);
    dqkv_.resize(3 * nd);
    dg_.resize(N_ * m_);
    for (int l = 0; l < L; ++l) {
      check_interrupt();
      if (l == 0) {
        tape_[0].x.resize(nd);
        std::copy(x, x + nd, tape_[0].x.data());
      }
      T* next = l + 1 < L ? (tape_[l + 1].x.resize(nd), tape_[l + 1].x.data()) : out.data();
      forward_block(l, next);
    }
  }

  // The first stream point (forward order) holding a NaN/Inf, or -1.
  int first_nonfinite(const Slab<T>& out) {
    const int L = net_.depth();
    for (int l = 0; l < L; ++l) {
      if (!detail::frobenius_norm(tape_[l].x.data(), N_, d_, nt_).finite) return 2 * l;
      if (!detail::frobenius_norm(tape_[l].a.data(), N_, d_, nt_).finite) return 2 * l + 1;
    }
    return detail::frobenius_norm(out.data(), N_, d_, nt_).finite ? -1 : 2 * L;
  }

 private:
  // v /= ||v||; returns log ||v|| (the scaled norm: exact over the whole range).
  double normalise(T* v, std::size_t n) {
    const double norm = detail::frobenius_norm(v, 1, n, nt_).norm;
    if (!(norm > 0.0) || !std::isfinite(norm)) return std::log(norm);
    const T inv = static_cast<T>(1.0 / norm);
    if (std::isfinite(static_cast<double>(inv)) && inv != T(0)) {
      for (std::size_t k = 0; k < n; ++k) v[k] *= inv;
    } else {
      for (std::size_t k = 0; k < n; ++k) v[k] = static_cast<T>(v[k] / norm);
    }
    return std::log(norm);
  }

  // dy = gamma * N'(x) dx for a LayerNorm with the given x-hat and 1/std.
  void layer_norm_tangent(const T* dx, const T* hat, const T* rstd, const T* gamma, T* dy) {
    const std::size_t nd = N_ * d_;
    std::copy(dx, dx + nd, ln_scratch_.data());
    layer_norm_jacobian(ln_scratch_.data(), hat, rstd, N_, d_, nt_);
    const T* g = ln_scratch_.data();
    parallel_for(static_cast<long long>(N_), nt_, worth_parallel(nd), [&](long long i) {
      for (int j = 0; j < d_; ++j) dy[i * d_ + j] = gamma[j] * g[i * d_ + j];
    });
  }

  // dout = J_l dx: the block's tangent (forward-mode) pass on its tape.
  void tangent_block(int l, const T* dx, T* dout) {
    const auto& p = block(l);
    const BlockTape<T>& t = tape_[l];
    const std::size_t nd = N_ * d_;
    const T* t1 = dx;
    if (pre()) {
      layer_norm_tangent(dx, t.hat1.data(), t.rstd1.data(), p.norm1_weight, d_buf_.data());
      t1 = d_buf_.data();
    }
    detail::tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(N_), 3 * d_, d_, T(1), t1, d_,
                       p.in_proj_weight, d_, T(0), dqkv_.data(), 3 * d_, nt_, kTileMacs);
    attention_tangent(l);
    T* dsa = dsub_.data();
    detail::tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(N_), d_, d_, T(1), dattn_.data(),
                       d_, p.out_proj_weight, d_, T(0), dsa, d_, nt_, kTileMacs);
    T* da = da_.data();
    residual_sum(dx, dsa, s_, nd, net_.residual, da, nt_);
    if (post()) {
      layer_norm_tangent(da, t.hat1.data(), t.rstd1.data(), p.norm1_weight, dff_.data());
      std::copy(dff_.begin(), dff_.end(), da);
    }
    if (m_ == 0) {
      std::copy(da, da + nd, dout);
      return;
    }
    const T* t2 = da;
    if (pre()) {
      layer_norm_tangent(da, t.hat2.data(), t.rstd2.data(), p.norm2_weight, d_buf_.data());
      t2 = d_buf_.data();
    }
    const std::size_t nm = N_ * m_;
    detail::tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(N_), m_, d_, T(1), t2, d_,
                       p.linear1_weight, d_, T(0), dg_.data(), m_, nt_, kTileMacs);
    T* dg = dg_.data();
    const T* dphi = t.dphi.data();
    parallel_for(static_cast<long long>(N_), nt_, worth_parallel(nm), [&](long long i) {
      for (int j = 0; j < m_; ++j) dg[i * m_ + j] *= dphi[i * m_ + j];
    });
    T* dff = dff_.data();
    detail::tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(N_), d_, m_, T(1), dg, m_,
                       p.linear2_weight, m_, T(0), dff, d_, nt_, kTileMacs);
    if (post()) {
      residual_sum(da, dff, s_, nd, net_.residual, dff, nt_);
      layer_norm_tangent(dff, t.hat2.data(), t.rstd2.data(), p.norm2_weight, dout);
    } else {
      residual_sum(da, dff, s_, nd, net_.residual, dout, nt_);
    }
  }

  // body(example, head, offset of the head's columns in its example's qkv rows, the
  // head's attention probabilities) for every (example, head), shared over the threads.
  template <typename Body>
  void each_head(const BlockTape<T>& t, Body&& body) {
    const std::size_t work = static_cast<std::size_t>(B_) * h_ * T_ * T_ * dh_;
    parallel_for(B_ * h_, nt_, worth_parallel(work), [&](int item) {
      const int b = item / h_, hd = item % h_;
      const std::size_t base = static_cast<std::size_t>(b) * T_ * 3 * d_ + hd * dh_;
      body(b, hd, base, t.probs.data() + static_cast<std::size_t>(item) * T_ * T_);
    });
  }

  // Each row of ds <- p * (ds - sum_j p_j ds_j): the softmax's (symmetric) Jacobian at p,
  // for the tangent and the backward pass alike.
  void softmax_jacobian_rows(T* ds, const T* p) const {
    for (int i = 0; i < T_; ++i) {
      T* row = ds + static_cast<std::size_t>(i) * T_;
      const T* pr = p + static_cast<std::size_t>(i) * T_;
      double dot = 0.0;
      for (int j = 0; j < T_; ++j) dot += static_cast<double>(pr[j]) * row[j];
      for (int j = 0; j < T_; ++j) row[j] = static_cast<T>(pr[j] * (row[j] - dot));
    }
  }

  // dO from dQ, dK, dV (in dqkv_) per (example, head): dS = scale (dQ K^T + Q dK^T),
  // dP = P (dS - rowsum(P dS)), dO = dP V + P dV; into dattn_.
  void attention_tangent(int l) {
    const BlockTape<T>& t = tape_[l];
    const T scale = attention_scale();
    const int ld = 3 * d_;
    each_head(t, [&](int b, int hd, std::size_t base, const T* p) {
      const T* q = t.qkv.data() + base;
      const T* k = q + d_;
      const T* v = q + 2 * d_;
      const T* dq = dqkv_.data() + base;
      const T* dk = dq + d_;
      const T* dv = dq + 2 * d_;
      T* dout = dattn_.data() + static_cast<std::size_t>(b) * T_ * d_ + hd * dh_;
      Vec<T> ds(static_cast<std::size_t>(T_) * T_);
      blas::gemm(Trans::No, Trans::Yes, T_, T_, dh_, scale, dq, ld, k, ld, T(0), ds.data(), T_);
      blas::gemm(Trans::No, Trans::Yes, T_, T_, dh_, scale, q, ld, dk, ld, T(1), ds.data(), T_);
      softmax_jacobian_rows(ds.data(), p);
      blas::gemm(Trans::No, Trans::No, T_, dh_, T_, T(1), ds.data(), T_, v, ld, T(0), dout, d_);
      blas::gemm(Trans::No, Trans::No, T_, dh_, T_, T(1), p, T_, dv, ld, T(1), dout, d_);
    });
  }

  const TransformerBlock<T>& block(int l) const { return net_.blocks[l]; }
  bool pre() const { return net_.norm == BlockNorm::Pre; }
  bool post() const { return net_.norm == BlockNorm::Post; }

  void record_point(int index, const T* values, int stage) {
    const auto r = detail::frobenius_norm(values, N_, d_, nt_);
    stats_.activation_norm[index] = r.norm;
    if (!r.finite && stats_.first_nonfinite_stage == 0) {
      stats_.first_nonfinite_layer = index;
      stats_.first_nonfinite_stage = stage;
    }
  }
  void note_backward(int index, double norm) {
    if (!std::isfinite(norm) && stats_.first_nonfinite_stage == 0) {
      stats_.first_nonfinite_layer = index;
      stats_.first_nonfinite_stage = 2;
    }
  }

  void forward_block(int l, T* x_out) {
    const auto& p = block(l);
    BlockTape<T>& t = tape_[l];
    const std::size_t nd = N_ * d_;
    const T* sub1 = t.x.data();
    if (pre()) {
      t.hat1.resize(nd), t.rstd1.resize(N_), t.u.resize(nd);
      layer_norm(t.x.data(), N_, d_, p.norm1_weight, p.norm1_bias, t.hat1.data(),
                 t.rstd1.data(), t.u.data(), nt_);
      sub1 = t.u.data();
    }
    t.qkv.resize(N_ * 3 * d_);
    linear(sub1, N_, d_, p.in_proj_weight, p.in_proj_bias, 3 * d_, t.qkv.data(), nt_);
    attention_forward(l);
    t.a.resize(nd);
    Slab<T>& sa = scratch_;
    sa.resize(nd);
    linear(t.attn.data(), N_, d_, p.out_proj_weight, p.out_proj_bias, d_, sa.data(), nt_);
    if (post()) {
      residual_sum(t.x.data(), sa.data(), s_, nd, net_.residual, sa.data(), nt_);
      t.hat1.resize(nd), t.rstd1.resize(N_);
      layer_norm(sa.data(), N_, d_, p.norm1_weight, p.norm1_bias, t.hat1.data(), t.rstd1.data(),
                 t.a.data(), nt_);
    } else {
      residual_sum(t.x.data(), sa.data(), s_, nd, net_.residual, t.a.data(), nt_);
    }
    if (m_ == 0) {  // attention alone: the block ends after its first sublayer
      std::copy(t.a.begin(), t.a.end(), x_out);
      return;
    }
    const T* sub2 = t.a.data();
    if (pre()) {
      t.hat2.resize(nd), t.rstd2.resize(N_), t.v.resize(nd);
      layer_norm(t.a.data(), N_, d_, p.norm2_weight, p.norm2_bias, t.hat2.data(),
                 t.rstd2.data(), t.v.data(), nt_);
      sub2 = t.v.data();
    }
    const std::size_t nm = N_ * m_;
    t.dphi.resize(nm), t.g.resize(nm);
    linear(sub2, N_, d_, p.linear1_weight, p.linear1_bias, m_, t.g.data(), nt_);
    // phi and phi' together, once: the backward pass reads phi' from the tape.
    const Activation act = net_.activation;
    parallel_for(static_cast<long long>(N_), nt_, worth_parallel(nm), [&](long long i) {
      for (int j = 0; j < m_; ++j) {
        const auto v = activate(act, t.g[i * m_ + j]);
        t.g[i * m_ + j] = v.value;
        t.dphi[i * m_ + j] = v.derivative;
      }
    });
    Slab<T>& ff = scratch_;
    linear(t.g.data(), N_, m_, p.linear2_weight, p.linear2_bias, d_, ff.data(), nt_);
    if (post()) {
      residual_sum(t.a.data(), ff.data(), s_, nd, net_.residual, ff.data(), nt_);
      t.hat2.resize(nd), t.rstd2.resize(N_);
      layer_norm(ff.data(), N_, d_, p.norm2_weight, p.norm2_bias, t.hat2.data(), t.rstd2.data(),
                 x_out, nt_);
    } else {
      residual_sum(t.a.data(), ff.data(), s_, nd, net_.residual, x_out, nt_);
    }
  }

  // Per (example, head): P = softmax(scale Q K^T) (causal: j <= i), O = P V, and the
  // entropy of each row of P, summed per item and reduced in item order.
  void attention_forward(int l) {
    BlockTape<T>& t = tape_[l];
    t.probs.resize(static_cast<std::size_t>(B_) * h_ * T_ * T_);
    t.attn.resize(N_ * d_);
    const T scale = attention_scale();
    const int ld = 3 * d_;
    Vec<double> entropy(static_cast<std::size_t>(B_) * h_);
    each_head(t, [&](int b, int hd, std::size_t base, const T* probs) {
      const T* q = t.qkv.data() + base;
      const T* k = q + d_;
      const T* v = q + 2 * d_;
      T* p = const_cast<T*>(probs);  // this pass writes them
      Vec<double> exps(T_);
      blas::gemm(Trans::No, Trans::Yes, T_, T_, dh_, scale, q, ld, k, ld, T(0), p, T_);
      double h_sum = 0.0;
      for (int i = 0; i < T_; ++i) {
        T* row = p + static_cast<std::size_t>(i) * T_;
        const int last = net_.causal ? i + 1 : T_;
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < last; ++j) mx = std::max(mx, static_cast<double>(row[j]));
        // One exp per entry; the entropy -sum p log p = log z - sum p (s - max) needs no
        // log of each p.
        double z = 0.0, weighted = 0.0;
        for (int j = 0; j < last; ++j) {
          const double shifted = row[j] - mx;
          const double e = std::exp(shifted);
          exps[j] = e;
          z += e;
          weighted += e * shifted;
        }
        const double inv = 1.0 / z;
        for (int j = 0; j < last; ++j) row[j] = static_cast<T>(exps[j] * inv);
        for (int j = last; j < T_; ++j) row[j] = T(0);
        h_sum += std::log(z) - weighted * inv;
      }
      entropy[static_cast<std::size_t>(b) * h_ + hd] = h_sum / T_;
      blas::gemm(Trans::No, Trans::No, T_, dh_, T_, T(1), p, T_, v, ld, T(0),
                 t.attn.data() + static_cast<std::size_t>(b) * T_ * d_ + hd * dh_, d_);
    });
    if (measure_)
      for (int item = 0; item < B_ * h_; ++item)
        stats_.attention_entropy[static_cast<std::size_t>(l) * h_ + item % h_] +=
            entropy[item] / B_;
  }

  // Rank collapse of the stream x (each example's seq_len tokens): the mean cosine of
  // distinct token pairs, and the relative distance from the rank-one matrix of the mean
  // token.
  void rank_collapse(int point, const T* x) {
    Vec<double> similarity(B_), distance(B_);
    parallel_for(B_, nt_, worth_parallel(N_ * d_), [&](int b) {
      const T* X = x + static_cast<std::size_t>(b) * T_ * d_;
      Vec<double> mean(d_, 0.0), unit_sum(d_, 0.0), centred(static_cast<std::size_t>(T_) * d_);
      for (int i = 0; i < T_; ++i)
        for (int j = 0; j < d_; ++j) mean[j] += X[static_cast<std::size_t>(i) * d_ + j];
      for (double& v : mean) v /= T_;
      for (int i = 0; i < T_; ++i) {
        const T* row = X + static_cast<std::size_t>(i) * d_;
        const double n = detail::vector_norm(row, d_);
        for (int j = 0; j < d_; ++j) {
          unit_sum[j] += n > 0.0 ? row[j] / n : 0.0;
          centred[static_cast<std::size_t>(i) * d_ + j] = row[j] - mean[j];
        }
      }
      const double total = detail::block_norm(X, T_, d_, d_);
      distance[b] = total > 0.0 ? detail::vector_norm(centred.data(), centred.size()) / total
                                : kNaN;
      const double s = detail::vector_norm(unit_sum.data(), d_);
      similarity[b] = T_ > 1 ? (s * s - T_) / (static_cast<double>(T_) * (T_ - 1)) : kNaN;
    });
    double sim = 0.0, dist = 0.0;
    for (int b = 0; b < B_; ++b) {
      sim += similarity[b];
      dist += distance[b];
    }
    stats_.token_similarity[point] = sim / B_;
    stats_.rank_one_distance[point] = dist / B_;
  }

  double* params(int l) {
    return stats_.parameter_grad_norm.data() + static_cast<std::size_t>(l) * kTransformerParameters;
  }

  // ||dY^T X|| (a weight gradient) and ||column sums of dY|| (its bias's).
  void weight_grad_norms(const T* dy, int n_out, const T* x, int n_in, double* w_norm,
                         double* b_norm) {
    wgrad_.resize(static_cast<std::size_t>(n_out) * n_in);
    detail::tiled_gemm(Trans::Yes, Trans::No, n_out, n_in, static_cast<int>(N_), T(1), dy, n_out,
                       x, n_in, T(0), wgrad_.data(), n_in, nt_, kTileMacs);
    *w_norm = norm_of(wgrad_.data(), n_out, n_in, nt_);
    layerwise::column_sums(dy, static_cast<int>(N_), n_out, column_.data(), nt_);
    *b_norm = detail::vector_norm(column_.data(), n_out);
  }

  // The MLP sublayer's backward pass: from g (at the block's output) to da (at the stream
  // after attention), with the MLP's and (post-LN) norm2's gradient norms; d, dff and
  // dsub are scratch of the stream's size.
  void mlp_backward(int l, const T* g, Slab<T>& d, Slab<T>& dff, Slab<T>& dsub, Slab<T>& da) {
    const auto& p = block(l);
    BlockTape<T>& t = tape_[l];
    const std::size_t nd = N_ * d_, nm = N_ * m_;
    double* pn = measure_ ? params(l) : nullptr;
    if (post()) {
      if (measure_)
        layer_norm_grad_norms(g, t.hat2.data(), N_, d_, scratch_, column_, nt_, pn[12], pn[13]);
      layer_norm_backward(g, t.hat2.data(), t.rstd2.data(), p.norm2_weight, N_, d_, d.data(),
                          false, ln_scratch_.data(), nt_);
    } else {
      std::copy(g, g + nd, d.begin());
    }
    residual_sum(d.data(), d.data(), s_, nd, false, dff.data(), nt_);  // dff = s d
    const T* sub2 = pre() ? t.v.data() : t.a.data();
    if (measure_) weight_grad_norms(dff.data(), d_, t.g.data(), m_, &pn[8], &pn[9]);
    Slab<T>& dg = dg_;
    detail::tiled_gemm(Trans::No, Trans::No, static_cast<int>(N_), m_, d_, T(1), dff.data(), d_,
                       p.linear2_weight, m_, T(0), dg.data(), m_, nt_, kTileMacs);
    const T* dphi = t.dphi.data();
    parallel_for(static_cast<long long>(N_), nt_, worth_parallel(nm), [&](long long i) {
      for (int j = 0; j < m_; ++j) dg[i * m_ + j] *= dphi[i * m_ + j];
    });
    if (measure_) weight_grad_norms(dg.data(), m_, sub2, d_, &pn[6], &pn[7]);
    detail::tiled_gemm(Trans::No, Trans::No, static_cast<int>(N_), d_, m_, T(1), dg.data(), m_,
                       p.linear1_weight, d_, T(0), dsub.data(), d_, nt_, kTileMacs);
    // da: through the skip connection and through the sublayer's input.
    if (net_.residual)
      std::copy(d.begin(), d.end(), da.begin());
    else
      std::fill(da.begin(), da.end(), T(0));
    if (pre()) {
      if (measure_)
        layer_norm_grad_norms(dsub.data(), t.hat2.data(), N_, d_, scratch_, column_, nt_,
                              pn[12], pn[13]);
      layer_norm_backward(dsub.data(), t.hat2.data(), t.rstd2.data(), p.norm2_weight, N_, d_,
                          da.data(), true, ln_scratch_.data(), nt_);
    } else {
      residual_sum(da.data(), dsub.data(), T(1), nd, true, da.data(), nt_);
    }
  }

  // g: dL/dx_out on entry; g_in: dL/dx_in on return.
  void backward_block(int l, const T* g, T* g_in) {
    const auto& p = block(l);
    BlockTape<T>& t = tape_[l];
    const std::size_t nd = N_ * d_;
    double* pn = measure_ ? params(l) : nullptr;
    // The MLP sublayer (without one, the gradient passes through unchanged).
    Slab<T>&d = d_buf_, &dff = dff_, &dsub = dsub_, &da = da_;
    if (m_ == 0)
      std::copy(g, g + nd, da.begin());
    else
      mlp_backward(l, g, d, dff, dsub, da);
    if (measure_) {
      stats_.grad_norm[2 * l + 1] = norm_of(da.data(), N_, d_, nt_);
      note_backward(2 * l + 1, stats_.grad_norm[2 * l + 1]);
    }
    // The attention sublayer.
    if (post()) {
      if (measure_)
        layer_norm_grad_norms(da.data(), t.hat1.data(), N_, d_, scratch_, column_, nt_,
                              pn[10], pn[11]);
      layer_norm_backward(da.data(), t.hat1.data(), t.rstd1.data(), p.norm1_weight, N_, d_,
                          d.data(), false, ln_scratch_.data(), nt_);
    } else {
      std::copy(da.begin(), da.end(), d.begin());
    }
    Slab<T>& dsa = dff;
    residual_sum(d.data(), d.data(), s_, nd, false, dsa.data(), nt_);  // dsa = s d
    if (measure_) weight_grad_norms(dsa.data(), d_, t.attn.data(), d_, &pn[4], &pn[5]);
    Slab<T>&dattn = dattn_, &dqkv = dqkv_;
    detail::tiled_gemm(Trans::No, Trans::No, static_cast<int>(N_), d_, d_, T(1), dsa.data(), d_,
                       p.out_proj_weight, d_, T(0), dattn.data(), d_, nt_, kTileMacs);
    attention_backward(l, dattn.data(), dqkv.data());
    if (measure_) in_proj_measurements(l, dqkv.data(), pn);
    detail::tiled_gemm(Trans::No, Trans::No, static_cast<int>(N_), d_, 3 * d_, T(1), dqkv.data(),
                       3 * d_, p.in_proj_weight, d_, T(0), dsub.data(), d_, nt_, kTileMacs);
    if (net_.residual)
      std::copy(d.begin(), d.end(), g_in);
    else
      std::fill(g_in, g_in + nd, T(0));
    if (pre()) {
      if (measure_)
        layer_norm_grad_norms(dsub.data(), t.hat1.data(), N_, d_, scratch_, column_, nt_,
                              pn[10], pn[11]);
      layer_norm_backward(dsub.data(), t.hat1.data(), t.rstd1.data(), p.norm1_weight, N_, d_,
                          g_in, true, ln_scratch_.data(), nt_);
    } else {
      residual_sum(g_in, dsub.data(), T(1), nd, true, g_in, nt_);
    }
    if (measure_) {
      stats_.grad_norm[2 * l] = norm_of(g_in, N_, d_, nt_);
      note_backward(2 * l, stats_.grad_norm[2 * l]);
    }
  }

  // The queries' and keys' gradient norms, and W_Q, W_K, W_V's and in_proj_bias's.
  void in_proj_measurements(int l, const T* dqkv, double* pn) {
    const BlockTape<T>& t = tape_[l];
    stats_.query_grad_norm[l] = detail::block_norm(dqkv, N_, d_, 3 * d_);
    stats_.key_grad_norm[l] = detail::block_norm(dqkv + d_, N_, d_, 3 * d_);
    const T* sub1 = pre() ? t.u.data() : t.x.data();
    wgrad_.resize(static_cast<std::size_t>(3) * d_ * d_);
    detail::tiled_gemm(Trans::Yes, Trans::No, 3 * d_, d_, static_cast<int>(N_), T(1), dqkv,
                       3 * d_, sub1, d_, T(0), wgrad_.data(), d_, nt_, kTileMacs);
    for (int part = 0; part < 3; ++part)
      pn[part] = norm_of(wgrad_.data() + static_cast<std::size_t>(part) * d_ * d_, d_, d_, nt_);
    layerwise::column_sums(dqkv, static_cast<int>(N_), 3 * d_, column_.data(), nt_);
    pn[3] = detail::vector_norm(column_.data(), 3 * d_);
  }

  // dO -> dQ, dK, dV per (example, head): dP = dO V^T, dS = P (dP - rowsum(dP P)),
  // dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO.
  void attention_backward(int l, const T* dattn, T* dqkv) {
    const BlockTape<T>& t = tape_[l];
    const T scale = attention_scale();
    const int ld = 3 * d_;
    each_head(t, [&](int b, int hd, std::size_t base, const T* p) {
      const T* q = t.qkv.data() + base;
      const T* k = q + d_;
      const T* v = q + 2 * d_;
      T* dq = dqkv + base;
      T* dk = dq + d_;
      T* dv = dq + 2 * d_;
      const T* dout = dattn + static_cast<std::size_t>(b) * T_ * d_ + hd * dh_;
      Vec<T> ds(static_cast<std::size_t>(T_) * T_);
      blas::gemm(Trans::No, Trans::Yes, T_, T_, dh_, T(1), dout, d_, v, ld, T(0), ds.data(), T_);
      softmax_jacobian_rows(ds.data(), p);
      blas::gemm(Trans::Yes, Trans::No, T_, dh_, T_, T(1), p, T_, dout, d_, T(0), dv, ld);
      blas::gemm(Trans::No, Trans::No, T_, dh_, T_, scale, ds.data(), T_, k, ld, T(0), dq, ld);
      blas::gemm(Trans::Yes, Trans::No, T_, dh_, T_, scale, ds.data(), T_, q, ld, T(0), dk, ld);
    });
  }

  bool measure_;  // false: the passes propagate only (power iteration)
  const TransformerView<T>& net_;
  int B_, T_;
  std::size_t N_;
  // The 1 / sqrt(d_head) on the attention scores, in T, for the forward, tangent and
  // backward passes alike.
  T attention_scale() const { return static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh_))); }

  int d_, h_, dh_, m_, nt_;
  T s_;
  std::vector<BlockTape<T>> tape_;
  Slab<T> scratch_, wgrad_;
  // The backward pass's slabs, sized once per pass.
  Slab<T> d_buf_, dff_, dsub_, da_, dattn_, dqkv_, dg_, ln_scratch_;
  Vec<double> column_;
  TransformerStats stats_;
};

}  // namespace

template <typename T>
TransformerStats transformer_backprop(const TransformerView<T>& net, const T* x, int batch,
                                      int seq_len, const T* target,
                                      const TransformerOptions& options, T* output) {
  net.validate();
  if (batch < 1) throw std::invalid_argument("x: the batch is empty");
  if (seq_len < 1) throw std::invalid_argument("x: a sequence needs at least one token");
  if (options.loss == Loss::CrossEntropy)
    throw std::invalid_argument("loss: a transformer stack takes 'sum_squares', 'mse' or a "
                                "grad_output");
  if ((options.loss == Loss::Mse || options.loss == Loss::GradOutput) && !target)
    throw std::invalid_argument("target: the loss needs one");
  const int nt = resolve_threads(options.n_threads);
  BlasThreadScope blas_scope(1);  // fixed tiles and per-item calls: any thread count
  return Pass<T>(net, batch, seq_len, nt).run(x, target, options.loss, output);
}

namespace {

void check_power_iteration(int seq_len, const TransformerSpectralOptions& o) {
  if (seq_len < 1) throw std::invalid_argument("x: a sequence needs at least one token");
  if (o.iters < 1) throw std::invalid_argument("iters: must be at least 1");
  if (!(o.tol > 0.0)) throw std::invalid_argument("tol: must be positive");
}

}  // namespace

template <typename T>
TransformerSpectralStats transformer_spectral_norm(const TransformerView<T>& net, const T* x,
                                                   int seq_len,
                                                   const TransformerSpectralOptions& o) {
  net.validate();
  check_power_iteration(seq_len, o);
  BlasThreadScope blas_scope(1);
  Pass<T> pass(net, 1, seq_len, resolve_threads(o.n_threads), false);
  Slab<T> out;
  pass.forward_all(x, out);
  TransformerSpectralStats s;
  s.first_nonfinite_layer = pass.first_nonfinite(out);
  const int L = net.depth();
  for (int r = 0; r < (o.per_block ? L : 1); ++r) {
    // A forward pass that is not finite leaves nothing to iterate on.
    append(s, s.first_nonfinite_layer >= 0
                  ? PowerResult{}
                  : pass.spectral(o.per_block ? r : 0, o.per_block ? r : L - 1, o));
  }
  return s;
}

template <typename T>
TransformerJacobianStats transformer_jacobian_norms(const TransformerView<T>& net, const T* x,
                                                    int seq_len,
                                                    const TransformerSpectralOptions& o,
                                                    int probes) {
  if (probes < 0) throw std::invalid_argument("probes: must be positive (or 0: exact)");
  net.validate();
  check_power_iteration(seq_len, o);
  BlasThreadScope blas_scope(1);
  Pass<T> pass(net, 1, seq_len, resolve_threads(o.n_threads), false);
  Slab<T> out;
  pass.forward_all(x, out);
  TransformerJacobianStats s;
  s.spectral.first_nonfinite_layer = pass.first_nonfinite(out);
  const int L = net.depth();
  if (s.spectral.first_nonfinite_layer >= 0) {
    for (int l = 0; l < L; ++l) append(s.spectral, PowerResult{});
    s.log_frobenius.assign(L, kNaN);
    s.frobenius_relative_error.assign(L, kNaN);
    return s;
  }
  std::vector<double> log_squares;
  pass.frobenius(probes, o.seed, log_squares, s.frobenius_relative_error);
  for (double v : log_squares) s.log_frobenius.push_back(0.5 * v);
  for (int l = 0; l < L; ++l) append(s.spectral, pass.spectral(0, l, o));
  return s;
}

template void TransformerView<float>::validate() const;
template void TransformerView<double>::validate() const;
template TransformerStats transformer_backprop<float>(const TransformerView<float>&, const float*,
                                                      int, int, const float*,
                                                      const TransformerOptions&, float*);
template TransformerStats transformer_backprop<double>(const TransformerView<double>&,
                                                       const double*, int, int, const double*,
                                                       const TransformerOptions&, double*);

template TransformerSpectralStats transformer_spectral_norm<float>(
    const TransformerView<float>&, const float*, int, const TransformerSpectralOptions&);
template TransformerSpectralStats transformer_spectral_norm<double>(
    const TransformerView<double>&, const double*, int, const TransformerSpectralOptions&);

template TransformerJacobianStats transformer_jacobian_norms<float>(
    const TransformerView<float>&, const float*, int, const TransformerSpectralOptions&, int);
template TransformerJacobianStats transformer_jacobian_norms<double>(
    const TransformerView<double>&, const double*, int, const TransformerSpectralOptions&, int);

}  // namespace pyjac
