// Backprop through time in one call: the forward tape, one backward GEMM with W per
// step, then the weight gradients of all steps in one large GEMM each (the per-step
// pre-activation gradients are kept, overwriting the gate activations they came
// from), and finally clipping.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <omp.h>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/recurrent/recurrent.hpp"
#include "pyjac/common/threads.hpp"
#include "common/gemm_ksplit.hpp"
#include "recurrent/recurrent_cells.hpp"
#include "recurrent/recurrent_tape.hpp"
#include "common/reduce.hpp"
#include "common/sizes.hpp"

namespace pyjac {
namespace {

using blas::Trans;
using detail::make_rbuffer;
using detail::RBuffer;
using detail::RecurrentTape;
using detail::parallel_for;
using detail::worth_parallel;

void record_nonfinite(RecurrentBackpropStats& s, int step, int stage) {
  if (s.first_nonfinite_stage == 0) {
    s.first_nonfinite_step = step;
    s.first_nonfinite_stage = stage;
  }
}

// ||sum_i a_i b_i^T||_F for the rows a_i of A (B x p) and b_i of B (B x q), from the
// two Gram matrices: cheaper than forming the (p x q) product when B is small.
// The A rows may be split in two column blocks (the GRU's W-side gradients). Either side
// is prescaled by a power of two (into `scaled`, B * (p1 + p2 + q) entries) when its Gram
// would leave T's range: early steps of a vanishing float32 RNN otherwise read 0.
template <typename T>
double ghost_norm(int B, const T* a1, int p1, int lda1, const T* a2, int p2, const T* bm, int q,
                  T* gram_a, T* gram_b, T* scaled) {
  const double norm_a = detail::norm_of_norms(
      {detail::block_norm(a1, B, p1, lda1), a2 ? detail::block_norm(a2, B, p2, p2) : 0.0});
  const int ea = detail::gram_exponent<T>(norm_a);
  const int eb = detail::gram_exponent<T>(detail::vector_norm(bm, std::size_t(B) * q));
  if (ea != 0) {  // [a1 a2] * 2^-ea as one contiguous (B x (p1 + p2)) block
    const int p = p1 + (a2 ? p2 : 0);
    for (int i = 0; i < B; ++i) {
      T* row = scaled + static_cast<std::size_t>(i) * p;
      detail::scaled_copy(a1 + static_cast<std::size_t>(i) * lda1, p1, ea, row);
      if (a2) detail::scaled_copy(a2 + static_cast<std::size_t>(i) * p2, p2, ea, row + p1);
    }
    a1 = scaled;
    p1 = lda1 = p;
    a2 = nullptr;
  }
  bm = detail::scaled_copy(bm, std::size_t(B) * q, eb,
                           scaled + static_cast<std::size_t>(B) * (p1 + (a2 ? p2 : 0)));
  blas::syrk_lower(B, p1, T(1), a1, lda1, T(0), gram_a, B);
  if (a2) blas::syrk_lower(B, p2, T(1), a2, p2, T(1), gram_a, B);
  blas::syrk_lower(B, q, T(1), bm, q, T(0), gram_b, B);
  return detail::ghost_norm_value(detail::lower_gram_contraction(gram_a, gram_b, B), ea + eb);
}

double sum_squares(const double* v, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += v[i] * v[i];
  return s;
}

// 2^-e with 2^e near |x|, for a dot product of values bounded by x that must neither
// overflow nor underflow; 1 for 0 and non-finite x. Exact: a power of two.
double unit_of(double x) {
  if (!(x > 0.0) || !std::isfinite(x)) return 1.0;
  int e = 0;
  std::frexp(x, &e);
  return std::ldexp(1.0, -std::clamp(e, -1000, 1000));
}

// Applies the clip to g in place; accumulates the changed count and the dot product of
// g and clip(g), taken in units (g_unit, c_unit) that keep every term in range.
template <typename T>
void clip_block(const ClipSpec& clip, double scale, T* g, std::size_t n, double g_unit,
                double c_unit, double& dot, std::size_t& changed) {
  for (std::size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(g[i]);
    double c = v;
    if (clip.kind == ClipKind::Norm) {
      c = v * scale;
    } else if (clip.kind == ClipKind::Value) {
      c = std::min(std::max(v, -clip.threshold), clip.threshold);
      changed += c != v;
    }
    const T ct = static_cast<T>(c);
    g[i] = ct;
    dot += (v * g_unit) * (static_cast<double>(ct) * c_unit);
  }
}

}  // namespace

std::int64_t recurrent_workspace_bytes(Cell cell, int width, int input_size, int steps,
                                       int batch, int dtype_size) {
  using detail::sat_add;
  using detail::sat_mul;
  const std::int64_t slab = sat_mul(batch, width);
  const std::int64_t G = cell_gates(cell);
  std::int64_t extra = sat_mul(4, slab, G);                            // g, g_prev, gc, scratch
  if (detail::is_plain(cell)) extra = sat_add(extra, sat_mul(steps, slab));  // dz
  const std::int64_t params = sat_mul(G, width, std::int64_t(width) + input_size + 1);
  extra = sat_add(extra, params);                                      // dW, dU, db
  extra = sat_add(extra, sat_mul(2, batch, batch, max_threads()));     // Gram matrices
  extra = sat_add(extra, sat_mul(16, params));                         // k-chunk partials
  return sat_add(detail::recurrent_tape_bytes(cell, width, steps, batch, dtype_size),
                 sat_mul(extra, dtype_size));
}

namespace {

// One call of backprop through time, as named steps over shared state: the forward tape
// and the loss's gradient, the backward pass through time, the norms per step, the
// per-step shares of dL/dW, the weight gradients over all steps, and clipping.
template <typename T>
class Bptt {
 public:
  Bptt(const RecurrentView<T>& cv, const RecurrentInputs<T>& in, const T* grad_output,
       const StateLoss<T>* state_loss, const RecurrentBackpropOptions& o,
       const RecurrentOutputs<T>& out, int nt)
      : cv_(cv), in_(in), grad_output_(grad_output), state_loss_(state_loss), o_(o), out_(out),
        nt_(nt),
        cell_(cv.cell), n_(cv.width), G_(cv.gates()), Gn_(G_ * n_), m_(cv.input_size),
        B_(in.batch), steps_(in.steps), slab_(static_cast<std::size_t>(B_) * n_),
        wp_(cv.W, G_, n_, nt),
        all_steps_(o.loss == RecurrentLoss::All || o.loss == RecurrentLoss::GradAll),
        gru_(cell_ == Cell::Gru) {}

  RecurrentBackpropStats run() {
    forward_and_loss();
    plan_backward();
    backward_through_time();
    reduce_step_norms();
    export_initial_gradients();
    if (o_.weight_grads) {
      align_step_scales();
      if (o_.step_shares) step_weight_shares();
      weight_gradients();
      clip();
    } else {
      s_.W_grad_norm = s_.U_grad_norm = s_.b_grad_norm = NAN;
      s_.total_grad_norm = s_.clipped_grad_norm = s_.clip_cosine = s_.clipped_fraction = NAN;
    }
    return std::move(s_);
  }

 private:
  // ---- the forward tape and dL/dh_T ---------------------------------------------------
  void forward_and_loss() {
    detail::recurrent_forward(cv_, in_, wp_, tape_, nt_);
    s_.state_norm = tape_.state_norm;
    if (tape_.first_nonfinite_step >= 0) record_nonfinite(s_, tape_.first_nonfinite_step, 1);
    if (out_.h_last) std::memcpy(out_.h_last, tape_.h_at(steps_), sizeof(T) * slab_);
    if (out_.c_last && cell_ == Cell::Lstm)
      std::memcpy(out_.c_last, tape_.c_at(steps_), sizeof(T) * slab_);

    g_ = make_rbuffer<T>(slab_);
    g_prev_ = make_rbuffer<T>(slab_);
    double state_loss = NAN;
    if (state_loss_) {  // the caller's loss of the states gives grad_output
      state_grad_ = make_rbuffer<T>((all_steps_ ? steps_ : 1) * slab_);
      state_loss = (*state_loss_)(tape_.h_at(1), state_grad_.get());
      grad_output_ = state_grad_.get();
    }
    switch (o_.loss) {
      case RecurrentLoss::Last:
        s_.loss = 0.5 * tape_.state_norm[steps_] * tape_.state_norm[steps_];
        std::memcpy(g_.get(), tape_.h_at(steps_), sizeof(T) * slab_);
        break;
      case RecurrentLoss::All:
        s_.loss = 0.5 * sum_squares(tape_.state_norm.data() + 1, steps_);
        std::memcpy(g_.get(), tape_.h_at(steps_), sizeof(T) * slab_);
        break;
      case RecurrentLoss::GradLast:
        s_.loss = NAN;
        std::memcpy(g_.get(), grad_output_, sizeof(T) * slab_);
        break;
      case RecurrentLoss::GradAll:
        s_.loss = NAN;
        std::memcpy(g_.get(), grad_output_ + (steps_ - 1) * slab_, sizeof(T) * slab_);
        break;
    }
    if (state_loss_) s_.loss = state_loss;
    if (cell_ == Cell::Lstm) {
      gc_ = make_rbuffer<T>(slab_);
      std::fill(gc_.get(), gc_.get() + slab_, T(0));
      s_.cell_grad_norm.assign(steps_ + 1, 0.0);
    }
    s_.grad_norm.assign(steps_ + 1, 0.0);
    if (o_.weight_grads && o_.step_shares) {
      s_.step_weight_grad_norm.assign(steps_, 0.0);
      s_.log_step_weight_grad_norm.assign(steps_, 0.0);
    }
  }

  // ---- how the backward pass is split, and what it keeps -------------------------------
  // Split as in the forward pass (recurrent_forward.cpp), by the batch size alone:
  //  - by rows: each fixed group of examples goes back through all T steps on one
  //    thread, with no synchronisation;
  //  - by units: phase A turns dL/dh_t of a thread's units into pre-activation
  //    gradients (all gates of those units); after the one barrier per step, phase B
  //    forms dL/dh_{t-1} of its units from every unit's pre-activation gradients.
  //    OpenMP gives a thread the same blocks in both loops (same static schedule and
  //    count), so phase A of the next step reads only what this thread wrote.
  void plan_backward() {
    // Pre-activation gradients of every step: W-side and input-side are the same for
    // plain cells and the LSTM; the GRU's differ in the n gate (dhn vs dxu_n).
    // Without weight gradients, step t's are dead once phase B of step t has read them:
    // two slabs, by the parity of t, suffice (phase A of step t-1 writes one while a
    // thread may still be in phase B of step t, reading the other; the barrier after
    // phase A keeps step t-2 from reaching it), and stay in cache.
    if (detail::is_plain(cell_))
      dz_plain_ = make_rbuffer<T>((o_.weight_grads ? steps_ : 2) * slab_);
    nb_ = wp_.blocks();
    ub_ = wp_.unit_block();
    by_rows_ = B_ >= detail::kRowModeBatch;
    group_ = detail::row_group(B_);
    groups_ = (B_ + group_ - 1) / group_;
    parts_ = by_rows_ ? groups_ : nb_;
    g_sq_.assign(static_cast<std::size_t>(steps_ + 1) * parts_, {});
    dc_sq_.assign(cell_ == Cell::Lstm ? g_sq_.size() : 0, {});
    // dL/dh_t (with dL/dc_t and the pre-activation gradients of step t) of part q is
    // stored at 2^g_exp[t * parts + q] times its value (backward_rescale_exponent).
    // Examples do not mix going back through time, so each group of rows may carry its
    // own scale.
    g_exp_.assign(g_sq_.size(), 0);
    // The norm of the loss's own gradient that phase B adds at step t (0 when none):
    // the scale must leave room for it.
    direct_norm_.assign(steps_ + 1, 0.0);
    if (all_steps_)
      for (int t = 2; t <= steps_; ++t)
        direct_norm_[t] = o_.loss == RecurrentLoss::All
                              ? tape_.state_norm[t - 1]
                              : detail::vector_norm(grad_output_ + (t - 2) * slab_, slab_);
  }

  T* dz_of(int t) const {
    if (!detail::is_plain(cell_)) return tape_.gate_of(t);
    return dz_plain_.get() + (o_.weight_grads ? t - 1 : t % 2) * slab_;
  }
  std::pair<int, int> part_rows(int q) const {
    return by_rows_ ? std::pair{q * group_, std::min(group_, B_ - q * group_)}
                    : std::pair{0, B_};
  }
  std::pair<int, int> part_blocks(int q) const {
    return by_rows_ ? std::pair{0, nb_} : std::pair{q, q + 1};
  }

  int step_exponent(int t, double carried, int exponent) const {
    int k = detail::backward_rescale_exponent<T>(carried, 0.0);
    const double d = direct_norm_[t];
    if (d > 0.0 && std::isfinite(d))
      k = std::min(k, std::numeric_limits<T>::max_exponent - 4 - std::ilogb(d) - exponent);
    return k;
  }
  double carried_norm(int t, int q) const {
    double v = g_sq_[static_cast<std::size_t>(t) * parts_ + q].norm();
    if (cell_ == Cell::Lstm)
      v = std::max(v, dc_sq_[static_cast<std::size_t>(t) * parts_ + q].block<T>().norm());
    return v;
  }

  // Part q covers rows [i0, i0 + rows) and unit blocks [b0, b1).
  // dL/dh_t is not kept past its step, so a part whose squares leave the range is
  // rescaled here, while it is still in memory.
  detail::BlockSquares sum_part(const T* v, int i0, int rows, int b0, int b1) const {
    const int j0 = b0 * ub_, j1 = std::min(n_, b1 * ub_);
    double acc = 0.0;
    for (int i = i0; i < i0 + rows; ++i)
      acc += detail::sum_sq(v + static_cast<std::size_t>(i) * n_ + j0, j1 - j0);
    return detail::block_squares(v + static_cast<std::size_t>(i0) * n_ + j0,
                                 static_cast<std::size_t>(rows),
                                 static_cast<std::size_t>(j1 - j0),
                                 static_cast<std::size_t>(n_), acc);
  }

  // Phase A at step t: pre-activation gradients from g = dL/dh_t (and gc).
  void phase_a(int t, T* g_t, T* g_p, int i0, int rows, int b0, int b1, int q) {
    const int j0 = b0 * ub_, j1 = std::min(n_, b1 * ub_);
    const T* hp = tape_.h_at(t - 1);
    T* dz = dz_of(t);
    const Activation act = detail::cell_activation(cell_);
    detail::CellSquares dcs;
    for (int i = i0; i < i0 + rows; ++i) {
      const std::size_t r = static_cast<std::size_t>(i) * n_;
      switch (cell_) {
        case Cell::Lstm:
          detail::lstm_vjp_row(tape_.gate_of(t) + r * G_, tape_.c_at(t - 1) + r,
                               tape_.tc_of(t) + r, g_t + r, gc_.get() + r, dz + r * G_, n_,
                               j0, j1, dcs);
          break;
        case Cell::Gru:
          // z * g, the path around W, goes straight to dL/dh_{t-1}.
          detail::gru_vjp_row(dz + r * G_, tape_.hn_of(t) + r, hp + r, g_t + r, dz + r * G_,
                              tape_.hn_of(t) + r, g_p + r, n_, j0, j1);
          break;
        default:
          detail::plain_vjp_row(act, g_t + r + j0, tape_.h_at(t) + r + j0, dz + r + j0,
                                j1 - j0);
      }
    }
    if (cell_ == Cell::Lstm) dc_sq_[static_cast<std::size_t>(t) * parts_ + q] = dcs;
  }

  // Phase B at step t: dL/dh_{t-1} = 2^k ((pre-activation gradients) W) (+ the loss's
  // own, at the new scale); the LSTM's dL/dc_{t-1} joins the new scale too.
  void phase_b(int t, T* g_p, int i0, int rows, int b0, int b1, int q, int k, int exponent) {
    const std::size_t r0 = static_cast<std::size_t>(i0) * n_;
    const T* dz = dz_of(t) + r0 * G_;
    const T factor = std::ldexp(T(1), k);
    for (int blk = b0; blk < b1; ++blk) {
      if (gru_) {
        wp_.backward_block(rows, dz, Gn_, 0, 2 * n_, blk, factor, g_p + r0, n_, factor);
        wp_.backward_block(rows, tape_.hn_of(t) + r0, n_, 2 * n_, Gn_, blk, T(1), g_p + r0,
                           n_, factor);
      } else {
        wp_.backward_block(rows, dz, Gn_, 0, Gn_, blk, T(0), g_p + r0, n_, factor);
      }
    }
    const int j0 = b0 * ub_, j1 = std::min(n_, b1 * ub_);
    if (all_steps_ && t >= 2) {
      const T* direct = o_.loss == RecurrentLoss::All ? tape_.h_at(t - 1)
                                                       : grad_output_ + (t - 2) * slab_;
      for (int i = i0; i < i0 + rows; ++i)
        for (int j = j0; j < j1; ++j) {
          const std::size_t e = static_cast<std::size_t>(i) * n_ + j;
          g_p[e] += exponent == 0 ? direct[e] : std::ldexp(direct[e], exponent);
        }
    }
    if (k != 0 && cell_ == Cell::Lstm)
      for (int i = i0; i < i0 + rows; ++i)
        for (int j = j0; j < j1; ++j) gc_[static_cast<std::size_t>(i) * n_ + j] *= factor;
    g_sq_[static_cast<std::size_t>(t - 1) * parts_ + q] = sum_part(g_p, i0, rows, b0, b1);
    g_exp_[static_cast<std::size_t>(t - 1) * parts_ + q] = exponent;
  }

  // One step split by units. The worksharing loops are orphaned: inside the caller's
  // parallel region they share the blocks out, outside any region they run on the
  // calling thread alone, with no barrier.
  void units_step(int t, T* g_t, T* g_p, int& exponent) {
#pragma omp for schedule(static)
    for (int blk = 0; blk < nb_; ++blk) phase_a(t, g_t, g_p, 0, B_, blk, blk + 1, blk);
    // (implicit barrier: every unit's pre-activation gradients are in place, and every
    // part's norm of dL/dh_t from the previous step's phase B)
    double carried = 0.0;
    for (int q = 0; q < parts_; ++q) carried = std::max(carried, carried_norm(t, q));
    const int k = step_exponent(t, carried, exponent);
    exponent += k;
#pragma omp for schedule(static) nowait
    for (int blk = 0; blk < nb_; ++blk) phase_b(t, g_p, 0, B_, blk, blk + 1, blk, k, exponent);
  }

  // ---- backward through time ------------------------------------------------------------
  void backward_through_time() {
    T* const buf0 = g_.get();
    T* const buf1 = g_prev_.get();
    const bool par = detail::time_loop_in_parallel<T>(nt_, by_rows_, B_, Gn_, n_);
    TeamInterrupt interrupt;
    if (by_rows_) {  // no barriers: each group stops at its next step
      detail::parallel_for_interruptible(groups_, nt_, par, interrupt, [&](int grp) {
        const int i0 = grp * group_, rows = std::min(group_, B_ - i0);
        g_sq_[static_cast<std::size_t>(steps_) * parts_ + grp] = sum_part(buf0, i0, rows, 0, nb_);
        T* g_t = buf0;
        T* g_p = buf1;
        int exponent = 0;
        for (int t = steps_; t >= 1 && !interrupt.requested(); --t) {
          phase_a(t, g_t, g_p, i0, rows, 0, nb_, grp);
          const int k = step_exponent(t, carried_norm(t, grp), exponent);
          exponent += k;
          phase_b(t, g_p, i0, rows, 0, nb_, grp, k, exponent);
          std::swap(g_t, g_p);
        }
      });
    } else {
      for (int blk = 0; blk < nb_; ++blk)
        g_sq_[static_cast<std::size_t>(steps_) * parts_ + blk] = sum_part(buf0, 0, B_, blk, blk + 1);
      // Every thread swaps its own copies of the two buffers in step and takes the same
      // steps (and so the same exponents).
      const auto all_steps = [&] {
        T* g_t = buf0;
        T* g_p = buf1;
        int exponent = 0;
        for (int t = steps_; t >= 1; --t) {
          if (interrupt.stop_at(steps_ - t)) break;  // the whole team, at the same step
          units_step(t, g_t, g_p, exponent);
          std::swap(g_t, g_p);
        }
      };
      detail::run_team(nt_, par, all_steps);
    }
    interrupt.rethrow();
    if (steps_ % 2 == 1) std::swap(g_, g_prev_);  // where the last step left dL/dh_0
  }

  // ---- ||dL/dh_t|| and ||dL/dc_t|| per step, and where they leave float64 -------------
  void reduce_step_norms() {
    s_.log_grad_norm.assign(steps_ + 1, 0.0);
    if (cell_ == Cell::Lstm) s_.log_cell_grad_norm.assign(steps_ + 1, 0.0);
    for (int t = steps_; t >= 0; --t) {
      const std::size_t first = static_cast<std::size_t>(t) * parts_;
      detail::combine_scaled_parts(g_sq_.data() + first, g_exp_.data() + first, parts_,
                                   s_.grad_norm[t], s_.log_grad_norm[t]);
      if (cell_ == Cell::Lstm) {
        std::vector<detail::BlockSquares> dc_parts;
        for (int q = 0; q < parts_; ++q) {
          if (t >= 1) {
            dc_parts.push_back(dc_sq_[first + q].template block<T>());
          } else {  // dL/dc_0, left in gc
            const auto [i0, rows] = part_rows(q);
            const auto [b0, b1] = part_blocks(q);
            dc_parts.push_back(sum_part(gc_.get(), i0, rows, b0, b1));
          }
        }
        detail::combine_scaled_parts(dc_parts.data(), g_exp_.data() + first, parts_,
                                     s_.cell_grad_norm[t], s_.log_cell_grad_norm[t]);
      }
    }
    for (int t = steps_; t >= 0; --t)
      if (!std::isfinite(s_.grad_norm[t])) {
        record_nonfinite(s_, t, 2);
        break;
      }
    for (int t = steps_; t >= 0; --t)
      if (std::isfinite(s_.log_grad_norm[t]) &&
          s_.grad_norm[t] < std::numeric_limits<double>::min()) {
        s_.first_underflow_step = t;
        break;
      }
  }

  // Multiplies the rows (and units) of part q of a (B x width) slab by 2^shift.
  void rescale_part(T* v, int width, int q, int shift) const {
    if (shift == 0) return;
    const auto [i0, rows] = part_rows(q);
    const auto [b0, b1] = part_blocks(q);
    const int j0 = width == n_ ? b0 * ub_ : 0;
    const int j1 = width == n_ ? std::min(n_, b1 * ub_) : width;
    for (int i = i0; i < i0 + rows; ++i)
      detail::unscale_entries(v + static_cast<std::size_t>(i) * width + j0,
                              static_cast<std::size_t>(j1 - j0), -shift);
  }

  // The pre-activation gradients of each step at one scale for all rows (the groups'
  // scales may differ), recorded in step_exp_.
  void align_step_scales() {
    step_exp_.assign(steps_ + 1, 0);
    for (int t = 1; t <= steps_; ++t) {
      const std::size_t first = static_cast<std::size_t>(t) * parts_;
      const int base = *std::min_element(g_exp_.begin() + first, g_exp_.begin() + first + parts_);
      step_exp_[t] = base;
      if (!by_rows_) continue;  // one scale per step already
      for (int q = 0; q < parts_; ++q) {
        rescale_part(dz_of(t), Gn_, q, base - g_exp_[first + q]);
        if (gru_) rescale_part(tape_.hn_of(t), n_, q, base - g_exp_[first + q]);
      }
    }
  }

  // ---- each step's share of dL/dW, ||(W-side pre-activation grads)^T h_{t-1}|| --------
  void step_weight_shares() {
    const bool ghost = static_cast<double>(B_) * (Gn_ + n_) < 2.0 * Gn_ * n_;
    // Scratch per thread, allocated here: nothing may throw inside the parallel region.
    const int nt_steps = std::min(nt_, steps_);
    const std::size_t scratch =
        ghost ? 2 * static_cast<std::size_t>(B_) * B_ + static_cast<std::size_t>(B_) * (Gn_ + 2 * n_)
              : static_cast<std::size_t>(Gn_) * n_;
    RBuffer<T> scratch_all = make_rbuffer<T>(scratch * nt_steps);
    TeamInterrupt step_interrupt;
#pragma omp parallel num_threads(nt_steps) if (nt_steps > 1)
    {
      T* mine = scratch_all.get() + scratch * omp_get_thread_num();
      T* gram_a = mine;
      T* gram_b = mine + static_cast<std::size_t>(B_) * B_;
      T* scaled = gram_b + static_cast<std::size_t>(B_) * B_;
      T* dw_step = mine;
#pragma omp for schedule(static)
      for (int t = 1; t <= steps_; ++t) {
        if (step_interrupt.requested()) continue;  // no barriers here: skip what is left
        const T* hp = tape_.h_at(t - 1);
        const T* dz = dz_of(t);
        double stored = 0.0;
        if (ghost) {
          stored = ghost_norm(B_, dz, gru_ ? 2 * n_ : Gn_, Gn_, gru_ ? tape_.hn_of(t) : nullptr,
                              n_, hp, n_, gram_a, gram_b, scaled);
        } else {
          blas::gemm(Trans::Yes, Trans::No, gru_ ? 2 * n_ : Gn_, n_, B_, T(1), dz, Gn_, hp, n_,
                     T(0), dw_step, n_);
          if (gru_)
            blas::gemm(Trans::Yes, Trans::No, n_, n_, B_, T(1), tape_.hn_of(t), n_, hp, n_, T(0),
                       dw_step + 2 * static_cast<std::size_t>(n_) * n_, n_);
          stored = detail::slab_norm(dw_step, static_cast<std::size_t>(Gn_) * n_).norm;
        }
        detail::store_norm(stored, step_exp_[t], 1.0, s_.step_weight_grad_norm[t - 1],
                           s_.log_step_weight_grad_norm[t - 1]);
      }
    }
    step_interrupt.rethrow();
  }

  // dL/dh_0 (dL/dc_0) in the caller's units.
  void export_initial_gradients() {
    for (int q = 0; q < parts_; ++q) {
      rescale_part(g_.get(), n_, q, -g_exp_[q]);
      if (cell_ == Cell::Lstm) rescale_part(gc_.get(), n_, q, -g_exp_[q]);
    }
    if (out_.dh0) std::memcpy(out_.dh0, g_.get(), sizeof(T) * slab_);
    if (out_.dc0 && cell_ == Cell::Lstm) std::memcpy(out_.dc0, gc_.get(), sizeof(T) * slab_);
  }

  // ---- weight gradients: one GEMM over all steps and examples -------------------------
  // The pre-activation gradients stay at the power of two they were stored at: in the
  // caller's units, the steps far from the loss would be subnormal, which makes every
  // GEMM over them an order of magnitude slower (and they are no more exact that way).
  // Consecutive steps at one scale form a run; each run is one GEMM, added in at its
  // scale. Unscaled, there is one run and the GEMM writes the result directly.
  struct StepRun {
    int first, last, exponent;  // steps first..last (1-based) stored at 2^exponent
  };
  std::vector<StepRun> step_runs() const {
    std::vector<StepRun> runs;
    for (int t = 1; t <= steps_; ++t) {
      if (!runs.empty() && runs.back().exponent == step_exp_[t])
        runs.back().last = t;
      else
        runs.push_back({t, t, step_exp_[t]});
    }
    return runs;
  }

  void weight_gradients() {
    dW_ = out_.dW;
    dU_ = out_.dU;
    db_ = out_.db;
    if (!dW_) {
      dW_own_ = make_rbuffer<T>(static_cast<std::size_t>(Gn_) * n_);
      dW_ = dW_own_.get();
    }
    if (!dU_ && m_ > 0) {
      dU_own_ = make_rbuffer<T>(static_cast<std::size_t>(Gn_) * m_);
      dU_ = dU_own_.get();
    }
    if (!db_) {
      db_own_ = make_rbuffer<T>(Gn_);
      db_ = db_own_.get();
    }
    const std::size_t nW = static_cast<std::size_t>(Gn_) * n_;
    const std::size_t nU = static_cast<std::size_t>(Gn_) * m_;
    const std::vector<StepRun> runs = step_runs();
    bias_.assign(Gn_, 0.0);
    if (runs.size() == 1 && runs[0].exponent == 0) {
      run_products(runs[0], dW_, dU_);
      add_run_bias(runs[0]);
      s_.W_grad_norm = detail::vector_norm(dW_, nW);
      s_.U_grad_norm = m_ > 0 ? detail::vector_norm(dU_, nU) : 0.0;
    } else {
      // Each run's product at its own scale, summed in step order in double (which
      // holds every float32 value, subnormal ones included, exactly).
      RBuffer<T> part_w = make_rbuffer<T>(nW), part_u = make_rbuffer<T>(std::max<std::size_t>(nU, 1));
      std::vector<double> sum_w(nW, 0.0), sum_u(nU, 0.0);
      for (const StepRun& run : runs) {
        run_products(run, part_w.get(), part_u.get());
        add_scaled(sum_w, part_w.get(), -run.exponent);
        if (m_ > 0) add_scaled(sum_u, part_u.get(), -run.exponent);
        add_run_bias(run);
      }
      // The norms from the sums, which float64 holds where the dtype overflows (the
      // kept gradients then read inf there, the true value rounded to the dtype).
      s_.W_grad_norm = detail::vector_norm(sum_w.data(), nW);
      s_.U_grad_norm = m_ > 0 ? detail::vector_norm(sum_u.data(), nU) : 0.0;
      for (std::size_t i = 0; i < nW; ++i) dW_[i] = static_cast<T>(sum_w[i]);
      for (std::size_t i = 0; i < nU; ++i) dU_[i] = static_cast<T>(sum_u[i]);
    }
    for (int j = 0; j < Gn_; ++j) db_[j] = static_cast<T>(bias_[j]);
    s_.b_grad_norm = detail::vector_norm(bias_.data(), static_cast<std::size_t>(Gn_));
    s_.total_grad_norm = detail::norm_of_norms({s_.W_grad_norm, s_.U_grad_norm, s_.b_grad_norm});
    if (!std::isfinite(s_.total_grad_norm)) record_nonfinite(s_, 0, 2);
  }

  // dW = dz^T h and dU = dz^T x over the run's steps and examples (k = steps * batch),
  // at the run's scale.
  void run_products(const StepRun& run, T* dW, T* dU) const {
    const int rows = (run.last - run.first + 1) * B_;
    const T* dz = dz_of(run.first);
    const T* h = tape_.h_at(run.first - 1);  // the inputs of steps first..last
    if (gru_) {
      // The W-side gradients of the GRU: [dxu_r dxu_z] in the gate slab, dhn in hn.
      detail::gemm_tn_ksplit(nt_, 2 * n_, n_, rows, dz, Gn_, h, n_, dW, n_);
      detail::gemm_tn_ksplit(nt_, n_, n_, rows, tape_.hn_of(run.first), n_, h, n_,
                             dW + 2 * static_cast<std::size_t>(n_) * n_, n_);
    } else {
      detail::gemm_tn_ksplit(nt_, Gn_, n_, rows, dz, Gn_, h, n_, dW, n_);
    }
    if (m_ == 0) return;
    if (in_.xs) {
      const T* x = in_.xs + static_cast<std::size_t>(run.first - 1) * B_ * m_;
      detail::gemm_tn_ksplit(nt_, Gn_, m_, rows, dz, Gn_, x, m_, dU, m_);
    } else {
      std::fill(dU, dU + static_cast<std::size_t>(Gn_) * m_, T(0));
    }
  }

  static void add_scaled(std::vector<double>& sum, const T* part, int exponent) {
    for (std::size_t i = 0; i < sum.size(); ++i)
      sum[i] += std::ldexp(static_cast<double>(part[i]), exponent);
  }

  // Column sums of the run's pre-activation gradients in double, rows in a fixed order,
  // added to bias_ in the caller's units. Each thread owns a fixed band of columns and
  // walks the rows, so memory is read contiguously.
  void add_run_bias(const StepRun& run) {
    const int rows = (run.last - run.first + 1) * B_;
    const T* dz = dz_of(run.first);
    constexpr int kBand = 64;
    const int bands = (Gn_ + kBand - 1) / kBand;
    double* bias = bias_.data();
    const int Gn = Gn_, exponent = -run.exponent;
#pragma omp parallel for num_threads(nt_) if (worth_parallel(static_cast<std::size_t>(rows) * Gn)) \
    schedule(static)
    for (int band = 0; band < bands; ++band) {
      const int j0 = band * kBand, j1 = std::min(Gn, j0 + kBand);
      double acc[kBand] = {};
      for (int r = 0; r < rows; ++r) {
        const T* row = dz + static_cast<std::size_t>(r) * Gn;
        for (int j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(row[j]);
      }
      for (int j = j0; j < j1; ++j) bias[j] += std::ldexp(acc[j - j0], exponent);
    }
  }

  // ---- clipping ------------------------------------------------------------------------
  void clip() {
    if (o_.clip.kind == ClipKind::None) {
      s_.clipped_grad_norm = s_.total_grad_norm;
      s_.clip_cosine = 1.0;
      return;
    }
    const std::size_t nW = static_cast<std::size_t>(Gn_) * n_;
    const std::size_t nU = static_cast<std::size_t>(Gn_) * m_;
    const double total = s_.total_grad_norm;
    // g <- g * min(1, tau/||g||); a non-finite norm leaves g as it is.
    const double scale =
        (o_.clip.kind == ClipKind::Norm && std::isfinite(total) && total > o_.clip.threshold)
            ? o_.clip.threshold / total
            : 1.0;
    const double g_unit = unit_of(total);
    const double c_unit = unit_of(o_.clip.kind == ClipKind::Value
                                      ? std::min(o_.clip.threshold, total)
                                      : total * scale);
    double dot = 0.0;
    std::size_t changed = 0;
    clip_block(o_.clip, scale, dW_, nW, g_unit, c_unit, dot, changed);
    if (m_ > 0) clip_block(o_.clip, scale, dU_, nU, g_unit, c_unit, dot, changed);
    clip_block(o_.clip, scale, db_, Gn_, g_unit, c_unit, dot, changed);
    s_.clipped_grad_norm = detail::norm_of_norms(
        {detail::vector_norm(dW_, nW), m_ > 0 ? detail::vector_norm(dU_, nU) : 0.0,
         detail::vector_norm(db_, static_cast<std::size_t>(Gn_))});
    s_.clipped_fraction = static_cast<double>(changed) / static_cast<double>(nW + nU + Gn_);
    s_.clip_cosine = (total > 0 && s_.clipped_grad_norm > 0)
                         ? dot / ((total * g_unit) * (s_.clipped_grad_norm * c_unit))
                         : 1.0;
  }

  const RecurrentView<T>& cv_;
  const RecurrentInputs<T>& in_;
  const T* grad_output_;
  const StateLoss<T>* state_loss_;
  const RecurrentBackpropOptions& o_;
  const RecurrentOutputs<T>& out_;
  const int nt_;
  const Cell cell_;
  const int n_, G_, Gn_, m_, B_, steps_;
  const std::size_t slab_;
  const detail::WeightProducts<T> wp_;
  const bool all_steps_, gru_;

  RecurrentBackpropStats s_;
  RecurrentTape<T> tape_;
  RBuffer<T> g_, g_prev_, gc_, dz_plain_, state_grad_;
  int nb_ = 0, ub_ = 0, group_ = 0, groups_ = 0, parts_ = 0;
  bool by_rows_ = false;
  std::vector<detail::BlockSquares> g_sq_;
  std::vector<detail::CellSquares> dc_sq_;
  std::vector<int> g_exp_, step_exp_;
  std::vector<double> direct_norm_, bias_;
  T* dW_ = nullptr;
  T* dU_ = nullptr;
  T* db_ = nullptr;
  RBuffer<T> dW_own_, dU_own_, db_own_;
};

// Checks shared by both entry points; returns the thread budget.
template <typename T>
int check_backprop(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                   const RecurrentBackpropOptions& o, const RecurrentOutputs<T>& out) {
  detail::validate_inputs(cv, in);
  if (o.clip.kind != ClipKind::None && !(o.clip.threshold > 0 && std::isfinite(o.clip.threshold)))
    throw std::invalid_argument("clip: the threshold must be a positive finite number");
  if (!o.weight_grads && o.clip.kind != ClipKind::None)
    throw std::invalid_argument("clip: clips the weight gradients, which weight_grads=false skips");
  if (!o.weight_grads && (out.dW || out.dU || out.db))
    throw std::invalid_argument("weight_grads: false, but outputs for dW, dU or db were given");
  return resolve_threads(o.n_threads);
}

}  // namespace

template <typename T>
RecurrentBackpropStats recurrent_backprop(const RecurrentView<T>& cv,
                                          const RecurrentInputs<T>& in, const T* grad_output,
                                          const RecurrentBackpropOptions& o,
                                          const RecurrentOutputs<T>& out) {
  const int nt = check_backprop(cv, in, o, out);
  const bool given = o.loss == RecurrentLoss::GradLast || o.loss == RecurrentLoss::GradAll;
  if (given && !grad_output) throw std::invalid_argument("grad_output: required by this loss");
  // Every product is cut into blocks fixed by the shapes alone and each block is one
  // single-threaded call (WeightProducts, gemm_tn_ksplit, tiled_gemm): OpenMP
  // spreads the blocks, and the bits are the same at every thread count.
  BlasThreadScope blas_scope(1);
  return Bptt<T>(cv, in, grad_output, nullptr, o, out, nt).run();
}

template <typename T>
RecurrentBackpropStats recurrent_backprop(const RecurrentView<T>& cv,
                                          const RecurrentInputs<T>& in, const StateLoss<T>& loss,
                                          const RecurrentBackpropOptions& o,
                                          const RecurrentOutputs<T>& out) {
  const int nt = check_backprop(cv, in, o, out);
  if (o.loss != RecurrentLoss::GradLast && o.loss != RecurrentLoss::GradAll)
    throw std::invalid_argument("loss: a loss of the states gives grad_last or grad_all");
  if (!loss) throw std::invalid_argument("loss: no function given");
  if (in.steps < 1) throw std::invalid_argument("steps: a loss of the states needs at least one");
  BlasThreadScope blas_scope(1);  // as above: the bits do not depend on the thread count
  return Bptt<T>(cv, in, nullptr, &loss, o, out, nt).run();
}

template RecurrentBackpropStats recurrent_backprop<float>(const RecurrentView<float>&,
                                                          const RecurrentInputs<float>&,
                                                          const float*,
                                                          const RecurrentBackpropOptions&,
                                                          const RecurrentOutputs<float>&);
template RecurrentBackpropStats recurrent_backprop<double>(const RecurrentView<double>&,
                                                           const RecurrentInputs<double>&,
                                                           const double*,
                                                           const RecurrentBackpropOptions&,
                                                           const RecurrentOutputs<double>&);
template RecurrentBackpropStats recurrent_backprop<float>(const RecurrentView<float>&,
                                                          const RecurrentInputs<float>&,
                                                          const StateLoss<float>&,
                                                          const RecurrentBackpropOptions&,
                                                          const RecurrentOutputs<float>&);
template RecurrentBackpropStats recurrent_backprop<double>(const RecurrentView<double>&,
                                                           const RecurrentInputs<double>&,
                                                           const StateLoss<double>&,
                                                           const RecurrentBackpropOptions&,
                                                           const RecurrentOutputs<double>&);

}  // namespace pyjac
