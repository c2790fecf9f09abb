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

template <typename T>
RecurrentBackpropStats recurrent_backprop(const RecurrentView<T>& cv,
                                          const RecurrentInputs<T>& in, const T* grad_output,
                                          const RecurrentBackpropOptions& o,
                                          const RecurrentOutputs<T>& out) {
  detail::validate_inputs(cv, in);
  const bool given = o.loss == RecurrentLoss::GradLast || o.loss == RecurrentLoss::GradAll;
  if (given && !grad_output) throw std::invalid_argument("grad_output: required by this loss");
  if (o.clip.kind != ClipKind::None && !(o.clip.threshold > 0 && std::isfinite(o.clip.threshold)))
    throw std::invalid_argument("clip: the threshold must be a positive finite number");

  const int nt = resolve_threads(o.n_threads);
  // Every product is cut into blocks fixed by the shapes alone and each block is one
  // single-threaded call (WeightProducts, gemm_tn_ksplit, tiled_gemm): OpenMP
  // spreads the blocks, and the bits are the same at every thread count.
  BlasThreadScope blas_scope(1);
  const Cell cell = cv.cell;
  const int n = cv.width, G = cv.gates(), Gn = G * n, m = cv.input_size;
  const int B = in.batch, steps = in.steps;
  const std::size_t slab = static_cast<std::size_t>(B) * n;

  RecurrentBackpropStats s;
  RecurrentTape<T> tape;
  const detail::WeightProducts<T> wp(cv.W, G, n, nt);
  detail::recurrent_forward(cv, in, wp, tape, nt);
  s.state_norm = tape.state_norm;
  if (tape.first_nonfinite_step >= 0) record_nonfinite(s, tape.first_nonfinite_step, 1);
  if (out.h_last) std::memcpy(out.h_last, tape.h_at(steps), sizeof(T) * slab);
  if (out.c_last && cell == Cell::Lstm) std::memcpy(out.c_last, tape.c_at(steps), sizeof(T) * slab);

  // ---- loss and dL/dh_T ------------------------------------------------------
  RBuffer<T> g = make_rbuffer<T>(slab), g_prev = make_rbuffer<T>(slab);
  RBuffer<T> gc;
  switch (o.loss) {
    case RecurrentLoss::Last:
      s.loss = 0.5 * tape.state_norm[steps] * tape.state_norm[steps];
      std::memcpy(g.get(), tape.h_at(steps), sizeof(T) * slab);
      break;
    case RecurrentLoss::All:
      s.loss = 0.5 * sum_squares(tape.state_norm.data() + 1, steps);
      std::memcpy(g.get(), tape.h_at(steps), sizeof(T) * slab);
      break;
    case RecurrentLoss::GradLast:
      s.loss = NAN;
      std::memcpy(g.get(), grad_output, sizeof(T) * slab);
      break;
    case RecurrentLoss::GradAll:
      s.loss = NAN;
      std::memcpy(g.get(), grad_output + (steps - 1) * slab, sizeof(T) * slab);
      break;
  }
  if (cell == Cell::Lstm) {
    gc = make_rbuffer<T>(slab);
    std::fill(gc.get(), gc.get() + slab, T(0));
    s.cell_grad_norm.assign(steps + 1, 0.0);
  }
  s.grad_norm.assign(steps + 1, 0.0);
  s.step_weight_grad_norm.assign(steps, 0.0);
  s.log_step_weight_grad_norm.assign(steps, 0.0);

  // ---- backward through time -------------------------------------------------
  // Pre-activation gradients of every step: W-side and input-side are the same for
  // plain cells and the LSTM; the GRU's differ in the n gate (dhn vs dxu_n).
  RBuffer<T> dz_plain;
  if (detail::is_plain(cell)) dz_plain = make_rbuffer<T>(steps * slab);
  auto dz_of = [&](int t) -> T* {
    return detail::is_plain(cell) ? dz_plain.get() + (t - 1) * slab : tape.gate_of(t);
  };
  const Activation act = detail::cell_activation(cell);
  const bool all_steps = o.loss == RecurrentLoss::All || o.loss == RecurrentLoss::GradAll;
  const bool gru = cell == Cell::Gru;
  // Split as in the forward pass (recurrent_forward.cpp), by the batch size alone:
  //  - by rows: each fixed group of examples goes back through all T steps on one
  //    thread, with no synchronisation;
  //  - by units: phase A turns dL/dh_t of a thread's units into pre-activation
  //    gradients (all gates of those units); after the one barrier per step, phase B
  //    forms dL/dh_{t-1} of its units from every unit's pre-activation gradients.
  //    OpenMP gives a thread the same blocks in both loops (same static schedule and
  //    count), so phase A of the next step reads only what this thread wrote.
  const int nb = wp.blocks(), ub = wp.unit_block();
  const bool by_rows = B >= detail::kRowModeBatch;
  const int groups = (B + detail::kRowGroup - 1) / detail::kRowGroup;
  const int parts = by_rows ? groups : nb;
  std::vector<detail::BlockSquares> g_sq(static_cast<std::size_t>(steps + 1) * parts);
  std::vector<detail::CellSquares> dc_sq(cell == Cell::Lstm ? g_sq.size() : 0);
  // dL/dh_t (with dL/dc_t and the pre-activation gradients of step t) of part q is stored
  // at 2^g_exp[t * parts + q] times its value (backward_rescale_exponent). Examples do
  // not mix going back through time, so each group of rows may carry its own scale.
  std::vector<int> g_exp(g_sq.size(), 0);
  // The norm of the loss's own gradient that phase B adds at step t (0 when none): the
  // scale must leave room for it.
  std::vector<double> direct_norm(steps + 1, 0.0);
  if (all_steps)
    for (int t = 2; t <= steps; ++t)
      direct_norm[t] = o.loss == RecurrentLoss::All
                           ? tape.state_norm[t - 1]
                           : detail::vector_norm(grad_output + (t - 2) * slab, slab);
  auto step_exponent = [&](int t, double carried, int exponent) {
    int k = detail::backward_rescale_exponent<T>(carried, 0.0);
    const double d = direct_norm[t];
    if (d > 0.0 && std::isfinite(d))
      k = std::min(k, std::numeric_limits<T>::max_exponent - 4 - std::ilogb(d) - exponent);
    return k;
  };
  auto carried_norm = [&](int t, int q) {
    double v = g_sq[static_cast<std::size_t>(t) * parts + q].norm();
    if (cell == Cell::Lstm)
      v = std::max(v, dc_sq[static_cast<std::size_t>(t) * parts + q].block<T>().norm());
    return v;
  };

  // Part q covers rows [i0, i0 + rows) and unit blocks [b0, b1).
  // dL/dh_t is not kept past its step, so a part whose squares leave the range is
  // rescaled here, while it is still in memory.
  auto sum_part = [&](const T* v, int i0, int rows, int b0, int b1) {
    const int j0 = b0 * ub, j1 = std::min(n, b1 * ub);
    double acc = 0.0;
    for (int i = i0; i < i0 + rows; ++i)
      acc += detail::sum_sq(v + static_cast<std::size_t>(i) * n + j0, j1 - j0);
    return detail::block_squares(v + static_cast<std::size_t>(i0) * n + j0,
                                 static_cast<std::size_t>(rows), static_cast<std::size_t>(j1 - j0),
                                 static_cast<std::size_t>(n), acc);
  };
  // Phase A at step t: pre-activation gradients from g = dL/dh_t (and gc).
  auto phase_a = [&](int t, T* g_t, T* g_p, int i0, int rows, int b0, int b1, int q) {
    const int j0 = b0 * ub, j1 = std::min(n, b1 * ub);
    const T* hp = tape.h_at(t - 1);
    T* dz = dz_of(t);
    detail::CellSquares dcs;
    for (int i = i0; i < i0 + rows; ++i) {
      const std::size_t r = static_cast<std::size_t>(i) * n;
      switch (cell) {
        case Cell::Lstm:
          detail::lstm_vjp_row(tape.gate_of(t) + r * G, tape.c_at(t - 1) + r,
                                      tape.tc_of(t) + r, g_t + r, gc.get() + r, dz + r * G, n,
                                      j0, j1, dcs);
          break;
        case Cell::Gru:
          // z * g, the path around W, goes straight to dL/dh_{t-1}.
          detail::gru_vjp_row(dz + r * G, tape.hn_of(t) + r, hp + r, g_t + r, dz + r * G,
                              tape.hn_of(t) + r, g_p + r, n, j0, j1);
          break;
        default:
          detail::plain_vjp_row(act, g_t + r + j0, tape.h_at(t) + r + j0, dz + r + j0,
                                j1 - j0);
      }
    }
    if (cell == Cell::Lstm) dc_sq[static_cast<std::size_t>(t) * parts + q] = dcs;
  };
  // Phase B at step t: dL/dh_{t-1} = 2^k ((pre-activation gradients) W) (+ the loss's
  // own, at the new scale); the LSTM's dL/dc_{t-1} joins the new scale too.
  auto phase_b = [&](int t, T* g_p, int i0, int rows, int b0, int b1, int q, int k,
                     int exponent) {
    const std::size_t r0 = static_cast<std::size_t>(i0) * n;
    const T* dz = dz_of(t) + r0 * G;
    const T factor = std::ldexp(T(1), k);
    for (int blk = b0; blk < b1; ++blk) {
      if (gru) {
        wp.backward_block(rows, dz, Gn, 0, 2 * n, blk, factor, g_p + r0, n, factor);
        wp.backward_block(rows, tape.hn_of(t) + r0, n, 2 * n, Gn, blk, T(1), g_p + r0, n,
                          factor);
      } else {
        wp.backward_block(rows, dz, Gn, 0, Gn, blk, T(0), g_p + r0, n, factor);
      }
    }
    const int j0 = b0 * ub, j1 = std::min(n, b1 * ub);
    if (all_steps && t >= 2) {
      const T* direct = o.loss == RecurrentLoss::All ? tape.h_at(t - 1)
                                                      : grad_output + (t - 2) * slab;
      for (int i = i0; i < i0 + rows; ++i)
        for (int j = j0; j < j1; ++j) {
          const std::size_t e = static_cast<std::size_t>(i) * n + j;
          g_p[e] += exponent == 0 ? direct[e] : std::ldexp(direct[e], exponent);
        }
    }
    if (k != 0 && cell == Cell::Lstm)
      for (int i = i0; i < i0 + rows; ++i)
        for (int j = j0; j < j1; ++j) gc[static_cast<std::size_t>(i) * n + j] *= factor;
    g_sq[static_cast<std::size_t>(t - 1) * parts + q] = sum_part(g_p, i0, rows, b0, b1);
    g_exp[static_cast<std::size_t>(t - 1) * parts + q] = exponent;
  };

  T* const buf0 = g.get();
  T* const buf1 = g_prev.get();
  const bool par = nt > 1 && worth_parallel(static_cast<std::size_t>(B) * Gn * 16);
  TeamInterrupt interrupt;
  if (by_rows) {  // no barriers: each group stops at its next step
    detail::parallel_for_interruptible(groups, nt, par, interrupt, [&](int grp) {
      const int i0 = grp * detail::kRowGroup, rows = std::min(detail::kRowGroup, B - i0);
      g_sq[static_cast<std::size_t>(steps) * parts + grp] = sum_part(buf0, i0, rows, 0, nb);
      T* g_t = buf0;
      T* g_p = buf1;
      int exponent = 0;
      for (int t = steps; t >= 1 && !interrupt.requested(); --t) {
        phase_a(t, g_t, g_p, i0, rows, 0, nb, grp);
        const int k = step_exponent(t, carried_norm(t, grp), exponent);
        exponent += k;
        phase_b(t, g_p, i0, rows, 0, nb, grp, k, exponent);
        std::swap(g_t, g_p);
      }
    });
  } else {
    for (int blk = 0; blk < nb; ++blk)
      g_sq[static_cast<std::size_t>(steps) * parts + blk] = sum_part(buf0, 0, B, blk, blk + 1);
#pragma omp parallel num_threads(nt) if (par)
    {
      T* g_t = buf0;  // every thread swaps its own copies in step
      T* g_p = buf1;
      int exponent = 0;  // every thread takes the same steps
      for (int t = steps; t >= 1; --t) {
        if (interrupt.stop_at(steps - t)) break;  // the whole team, at the same step
#pragma omp for schedule(static)
        for (int blk = 0; blk < nb; ++blk) phase_a(t, g_t, g_p, 0, B, blk, blk + 1, blk);
        // (implicit barrier: every unit's pre-activation gradients are in place, and
        // every part's norm of dL/dh_t from the previous step's phase B)
        double carried = 0.0;
        for (int q = 0; q < parts; ++q) carried = std::max(carried, carried_norm(t, q));
        const int k = step_exponent(t, carried, exponent);
        exponent += k;
#pragma omp for schedule(static) nowait
        for (int blk = 0; blk < nb; ++blk)
          phase_b(t, g_p, 0, B, blk, blk + 1, blk, k, exponent);
        std::swap(g_t, g_p);
      }
    }
  }
  interrupt.rethrow();
  if (steps % 2 == 1) std::swap(g, g_prev);  // where the last step left dL/dh_0

  // Part q's rows and unit blocks.
  auto part_rows = [&](int q) {
    return by_rows ? std::pair{q * detail::kRowGroup, std::min(detail::kRowGroup, B - q * detail::kRowGroup)}
                   : std::pair{0, B};
  };
  auto part_blocks = [&](int q) { return by_rows ? std::pair{0, nb} : std::pair{q, q + 1}; };
  s.log_grad_norm.assign(steps + 1, 0.0);
  if (cell == Cell::Lstm) s.log_cell_grad_norm.assign(steps + 1, 0.0);
  for (int t = steps; t >= 0; --t) {
    const std::size_t first = static_cast<std::size_t>(t) * parts;
    detail::combine_scaled_parts(g_sq.data() + first, g_exp.data() + first, parts,
                                 s.grad_norm[t], s.log_grad_norm[t]);
    if (cell == Cell::Lstm) {
      std::vector<detail::BlockSquares> dc_parts;
      for (int q = 0; q < parts; ++q) {
        if (t >= 1) {
          dc_parts.push_back(dc_sq[first + q].block<T>());
        } else {  // dL/dc_0, left in gc
          const auto [i0, rows] = part_rows(q);
          const auto [b0, b1] = part_blocks(q);
          dc_parts.push_back(sum_part(gc.get(), i0, rows, b0, b1));
        }
      }
      detail::combine_scaled_parts(dc_parts.data(), g_exp.data() + first, parts,
                                   s.cell_grad_norm[t], s.log_cell_grad_norm[t]);
    }
  }
  for (int t = steps; t >= 0; --t)
    if (!std::isfinite(s.grad_norm[t])) {
      record_nonfinite(s, t, 2);
      break;
    }
  for (int t = steps; t >= 0; --t)
    if (std::isfinite(s.log_grad_norm[t]) &&
        s.grad_norm[t] < std::numeric_limits<double>::min()) {
      s.first_underflow_step = t;
      break;
    }

  // Rows of dL/dh_0 (dL/dc_0) in the caller's units, and the pre-activation gradients of
  // each step at one scale for all rows: the groups' scales may differ.
  auto rescale_part = [&](T* v, int width, int q, int shift) {
    if (shift == 0) return;
    const auto [i0, rows] = part_rows(q);
    const auto [b0, b1] = part_blocks(q);
    const int j0 = width == n ? b0 * ub : 0, j1 = width == n ? std::min(n, b1 * ub) : width;
    for (int i = i0; i < i0 + rows; ++i)
      for (int j = j0; j < j1; ++j) {
        T& e = v[static_cast<std::size_t>(i) * width + j];
        e = std::ldexp(e, shift);
      }
  };
  std::vector<int> step_exp(steps + 1, 0);
  bool any_scaled = false;
  for (int t = 1; t <= steps; ++t) {
    const std::size_t first = static_cast<std::size_t>(t) * parts;
    const int base = *std::min_element(g_exp.begin() + first, g_exp.begin() + first + parts);
    step_exp[t] = base;
    any_scaled |= base != 0;
    if (!by_rows) continue;  // one scale per step already
    for (int q = 0; q < parts; ++q) {
      rescale_part(dz_of(t), Gn, q, base - g_exp[first + q]);
      if (gru) rescale_part(tape.hn_of(t), n, q, base - g_exp[first + q]);
    }
  }

  // ---- each step's share of dL/dW, ||(W-side pre-activation grads)^T h_{t-1}|| ----
  const bool ghost = static_cast<double>(B) * (Gn + n) < 2.0 * Gn * n;
  // Scratch per thread, allocated here: nothing may throw inside the parallel region.
  const int nt_steps = std::min(nt, steps);
  const std::size_t scratch =
      ghost ? 2 * static_cast<std::size_t>(B) * B + static_cast<std::size_t>(B) * (Gn + 2 * n)
            : static_cast<std::size_t>(Gn) * n;
  RBuffer<T> scratch_all = make_rbuffer<T>(scratch * nt_steps);
  TeamInterrupt step_interrupt;
#pragma omp parallel num_threads(nt_steps) if (nt_steps > 1)
  {
    T* mine = scratch_all.get() + scratch * omp_get_thread_num();
    T* gram_a = mine;
    T* gram_b = mine + static_cast<std::size_t>(B) * B;
    T* scaled = gram_b + static_cast<std::size_t>(B) * B;
    T* dw_step = mine;
#pragma omp for schedule(static)
    for (int t = 1; t <= steps; ++t) {
      if (step_interrupt.requested()) continue;  // no barriers here: skip what is left
      const T* hp = tape.h_at(t - 1);
      const T* dz = dz_of(t);
      double stored = 0.0;
      if (ghost) {
        stored = ghost_norm(B, dz, gru ? 2 * n : Gn, Gn, gru ? tape.hn_of(t) : nullptr, n, hp, n,
                            gram_a, gram_b, scaled);
      } else {
        blas::gemm(Trans::Yes, Trans::No, gru ? 2 * n : Gn, n, B, T(1), dz, Gn, hp, n, T(0),
                   dw_step, n);
        if (gru)
          blas::gemm(Trans::Yes, Trans::No, n, n, B, T(1), tape.hn_of(t), n, hp, n, T(0),
                     dw_step + 2 * static_cast<std::size_t>(n) * n, n);
        stored = detail::slab_norm(dw_step, static_cast<std::size_t>(Gn) * n).norm;
      }
      detail::store_norm(stored, step_exp[t], 1.0, s.step_weight_grad_norm[t - 1],
                         s.log_step_weight_grad_norm[t - 1]);
    }
  }
  step_interrupt.rethrow();
  for (int q = 0; q < parts; ++q) {
    rescale_part(g.get(), n, q, -g_exp[q]);
    if (cell == Cell::Lstm) rescale_part(gc.get(), n, q, -g_exp[q]);
  }
  if (out.dh0) std::memcpy(out.dh0, g.get(), sizeof(T) * slab);
  if (out.dc0 && cell == Cell::Lstm) std::memcpy(out.dc0, gc.get(), sizeof(T) * slab);
  // The weight gradients sum over steps: every step's share in the caller's units.
  if (any_scaled)
    for (int t = 1; t <= steps; ++t) {
      if (step_exp[t] == 0) continue;
      T* dz = dz_of(t);
      for (std::size_t e = 0; e < static_cast<std::size_t>(B) * Gn; ++e)
        dz[e] = std::ldexp(dz[e], -step_exp[t]);
      if (gru) {
        T* hn = tape.hn_of(t);
        for (std::size_t e = 0; e < slab; ++e) hn[e] = std::ldexp(hn[e], -step_exp[t]);
      }
    }

  // ---- weight gradients: one GEMM over all steps and examples -----------------
  const int rows = steps * B;
  RBuffer<T> dW_own, dU_own, db_own;
  T* dW = out.dW;
  T* dU = out.dU;
  T* db = out.db;
  if (!dW) {
    dW_own = make_rbuffer<T>(static_cast<std::size_t>(Gn) * n);
    dW = dW_own.get();
  }
  if (!dU && m > 0) {
    dU_own = make_rbuffer<T>(static_cast<std::size_t>(Gn) * m);
    dU = dU_own.get();
  }
  if (!db) {
    db_own = make_rbuffer<T>(Gn);
    db = db_own.get();
  }
  const T* dz_all = dz_of(1);
  const T* h_all = tape.h_at(0);  // h_0 .. h_{T-1}: the inputs of steps 1..T
  // dW = dz_all^T h_all, dU = dz_all^T xs: k = steps * batch, m = rows of W.
  if (cell == Cell::Gru) {
    // The W-side gradients of the GRU: [dxu_r dxu_z] in the gate slab, dhn in hn.
    detail::gemm_tn_ksplit(nt, 2 * n, n, rows, dz_all, Gn, h_all, n, dW, n);
    detail::gemm_tn_ksplit(nt, n, n, rows, tape.hn_of(1), n, h_all, n,
                           dW + 2 * static_cast<std::size_t>(n) * n, n);
  } else {
    detail::gemm_tn_ksplit(nt, Gn, n, rows, dz_all, Gn, h_all, n, dW, n);
  }
  if (m > 0) {
    if (in.xs)
      detail::gemm_tn_ksplit(nt, Gn, m, rows, dz_all, Gn, in.xs, m, dU, m);
    else
      std::fill(dU, dU + static_cast<std::size_t>(Gn) * m, T(0));
  }
  // Bias gradient: column sums in double, rows in a fixed order. Each thread owns a
  // fixed band of columns and walks the rows, so memory is read contiguously.
  std::vector<double> bias(Gn, 0.0);
  {
    constexpr int kBand = 64;
    const int bands = (Gn + kBand - 1) / kBand;
#pragma omp parallel for num_threads(nt) if (worth_parallel(static_cast<std::size_t>(rows) * Gn)) \
    schedule(static)
    for (int band = 0; band < bands; ++band) {
      const int j0 = band * kBand, j1 = std::min(Gn, j0 + kBand);
      double acc[kBand] = {};
      for (int r = 0; r < rows; ++r) {
        const T* row = dz_all + static_cast<std::size_t>(r) * Gn;
        for (int j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(row[j]);
      }
      for (int j = j0; j < j1; ++j) bias[j] = acc[j - j0];
    }
  }
  for (int j = 0; j < Gn; ++j) db[j] = static_cast<T>(bias[j]);

  const std::size_t nW = static_cast<std::size_t>(Gn) * n, nU = static_cast<std::size_t>(Gn) * m;
  s.W_grad_norm = detail::vector_norm(dW, nW);
  s.U_grad_norm = m > 0 ? detail::vector_norm(dU, nU) : 0.0;
  s.b_grad_norm = detail::vector_norm(bias.data(), static_cast<std::size_t>(Gn));
  s.total_grad_norm = detail::norm_of_norms({s.W_grad_norm, s.U_grad_norm, s.b_grad_norm});
  if (!std::isfinite(s.total_grad_norm)) record_nonfinite(s, 0, 2);

  // ---- clipping ----------------------------------------------------------------
  if (o.clip.kind == ClipKind::None) {
    s.clipped_grad_norm = s.total_grad_norm;
    s.clip_cosine = 1.0;
    return s;
  }
  const double total = s.total_grad_norm;
  // g <- g * min(1, tau/||g||); a non-finite norm leaves g as it is.
  const double scale =
      (o.clip.kind == ClipKind::Norm && std::isfinite(total) && total > o.clip.threshold)
          ? o.clip.threshold / total
          : 1.0;
  const double g_unit = unit_of(total);
  const double c_unit =
      unit_of(o.clip.kind == ClipKind::Value ? std::min(o.clip.threshold, total) : total * scale);
  double dot = 0.0;
  std::size_t changed = 0;
  clip_block(o.clip, scale, dW, nW, g_unit, c_unit, dot, changed);
  if (m > 0) clip_block(o.clip, scale, dU, nU, g_unit, c_unit, dot, changed);
  clip_block(o.clip, scale, db, Gn, g_unit, c_unit, dot, changed);
  s.clipped_grad_norm = detail::norm_of_norms(
      {detail::vector_norm(dW, nW), m > 0 ? detail::vector_norm(dU, nU) : 0.0,
       detail::vector_norm(db, static_cast<std::size_t>(Gn))});
  s.clipped_fraction = static_cast<double>(changed) / static_cast<double>(nW + nU + Gn);
  s.clip_cosine = (total > 0 && s.clipped_grad_norm > 0)
                      ? dot / ((total * g_unit) * (s.clipped_grad_norm * c_unit))
                      : 1.0;
  return s;
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

}  // namespace pyjac
