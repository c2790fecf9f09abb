// The recurrence itself: input projections for all steps in one GEMM, then one
// GEMM with W and one elementwise pass per step.
#include <cmath>
#include <cstring>
#include <string>

#include "pyjac/common/blas.hpp"
#include "pyjac/common/interrupt.hpp"
#include "common/gemm_ksplit.hpp"
#include "common/tiled_blas.hpp"
#include "recurrent/recurrent_cells.hpp"
#include "recurrent/recurrent_tape.hpp"
#include "common/reduce.hpp"
#include "common/sizes.hpp"

namespace pyjac::detail {

using blas::Trans;

std::int64_t recurrent_tape_bytes(Cell cell, int width, int steps, int batch, int dtype_size) {
  const std::int64_t slab = sat_mul(batch, width), T = steps;
  // h for T + 1 states; the LSTM adds c (T + 1), tanh(c) (T) and 4 gates (T); the GRU
  // 3 gates and hn (T) and 3 rows of scratch.
  std::int64_t slabs = T + 1;
  if (cell == Cell::Lstm) slabs = sat_add(slabs, sat_add(T + 1, sat_mul(5, T)));
  if (cell == Cell::Gru) slabs = sat_add(slabs, sat_add(sat_mul(4, T), 3));
  return sat_mul(slabs, slab, dtype_size);
}

template <typename T>
void validate_inputs(const RecurrentView<T>& cell, const RecurrentInputs<T>& in) {
  cell.validate();
  if (in.steps < 1)
    throw std::invalid_argument("steps: must be at least 1, got " + std::to_string(in.steps));
  if (in.batch < 1)
    throw std::invalid_argument("h0: batch must be at least 1, got " + std::to_string(in.batch));
  if (in.c0 && cell.cell != Cell::Lstm)
    throw std::invalid_argument("c0: only the 'lstm' cell has a cell state");
}

template <typename T>
void recurrent_forward(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                       const WeightProducts<T>& wp, RecurrentTape<T>& tape, int nt) {
  const int n = cv.width, G = cv.gates(), B = in.batch, steps = in.steps, m = cv.input_size;
  const Cell cell = cv.cell;
  const int Gn = G * n;
  tape.steps = steps;
  tape.batch = B;
  tape.width = n;
  tape.gates = G;
  tape.cell = cell;
  const std::size_t slab = tape.slab();
  tape.h = make_rbuffer<T>((steps + 1) * slab);
  if (cell == Cell::Lstm) {
    tape.c = make_rbuffer<T>((steps + 1) * slab);
    tape.tc = make_rbuffer<T>(steps * slab);
  }
  if (!is_plain(cell)) tape.gate = make_rbuffer<T>(steps * tape.gate_slab());
  RBuffer<T> hw;
  if (cell == Cell::Gru) {
    tape.hn = make_rbuffer<T>(steps * slab);
    hw = make_rbuffer<T>(static_cast<std::size_t>(B) * Gn);
  }

  // U x_t + b for every step at once: row (t-1)*B + i of `pre` is example i at step t.
  T* pre = is_plain(cell) ? tape.h_at(1) : tape.gate.get();
  const long long pre_rows = static_cast<long long>(steps) * B;
  const std::size_t pre_total = static_cast<std::size_t>(pre_rows) * Gn;
  // This first touch of the tape takes seconds for long sequences: interruptible, in
  // blocks of rows.
  constexpr long long kRows = 256;
  TeamInterrupt fill_interrupt;
  parallel_for_interruptible((pre_rows + kRows - 1) / kRows, nt, worth_parallel(pre_total),
                             fill_interrupt, [&](long long blk) {
                               const long long r1 = std::min(pre_rows, (blk + 1) * kRows);
                               for (long long r = blk * kRows; r < r1; ++r)
                                 std::memcpy(pre + static_cast<std::size_t>(r) * Gn, cv.b,
                                             sizeof(T) * Gn);
                             });
  fill_interrupt.rethrow();
  if (in.xs && m > 0)
    tiled_gemm(Trans::No, Trans::Yes, static_cast<int>(pre_rows), Gn, m, T(1), in.xs, m, cv.U, m,
               T(1), pre, Gn, nt);

  if (in.h0)
    std::memcpy(tape.h_at(0), in.h0, sizeof(T) * slab);
  else
    std::fill(tape.h_at(0), tape.h_at(0) + slab, T(0));
  if (cell == Cell::Lstm) {
    if (in.c0)
      std::memcpy(tape.c_at(0), in.c0, sizeof(T) * slab);
    else
      std::fill(tape.c_at(0), tape.c_at(0) + slab, T(0));
  }
  tape.state_norm.assign(steps + 1, 0.0);
  tape.first_nonfinite_step = -1;
  {
    const auto n0 = slab_norm(tape.h_at(0), static_cast<std::size_t>(B) * n);
    tape.state_norm[0] = n0.norm;
    if (!n0.finite) tape.first_nonfinite_step = 0;
  }

  // Work is split in one of two ways, chosen by the batch size alone so that the bits
  // never depend on the thread count (partial sums of squares are kept per part and
  // added in part order afterwards):
  //  - by rows: fixed groups of examples, each run through all T steps by one thread.
  //    Examples are independent, so the time loop needs no synchronisation at all.
  //  - by units (small batches): one parallel region, each thread owning fixed blocks
  //    of units across every gate; one barrier per step (h_t complete before step
  //    t+1 reads it).
  const Activation act = cell_activation(cell);
  const int nb = wp.blocks(), ub = wp.unit_block();
  const bool by_rows = B >= kRowModeBatch;
  const int groups = (B + kRowGroup - 1) / kRowGroup;
  const int parts = by_rows ? groups : nb;
  std::vector<double> h_sq(static_cast<std::size_t>(steps + 1) * parts, 0.0);
  std::vector<double> c_sq(cell == Cell::Lstm ? h_sq.size() : 0, 0.0);

  // Step t for rows [i0, i0 + rows) and unit blocks [b0, b1): GEMMs with W, then the
  // cell's elementwise part; stores the sums of squares of h_t (and c_t) in slot q.
  auto step_part = [&](int t, int i0, int rows, int b0, int b1, int q) {
    const int j0 = b0 * ub, j1 = std::min(n, b1 * ub);
    const std::size_t r0 = static_cast<std::size_t>(i0) * n;
    const T* hp = tape.h_at(t - 1) + r0;
    T* ht = tape.h_at(t) + r0;
    double hs = 0.0, cs = 0.0;
    switch (cell) {
      case Cell::Lstm: {
        T* gt = tape.gate_of(t) + r0 * G;
        for (int g = 0; g < G; ++g)
          for (int blk = b0; blk < b1; ++blk) wp.forward_block(rows, hp, n, g, blk, T(1), gt, Gn);
        const T* cp = tape.c_at(t - 1) + r0;
        T* ct = tape.c_at(t) + r0;
        T* tct = tape.tc_of(t) + r0;
        for (int i = 0; i < rows; ++i) {
          const std::size_t o = static_cast<std::size_t>(i) * n;
          lstm_forward_row(gt + o * G, cp + o, ct + o, tct + o, ht + o, n, j0, j1);
          cs += sum_sq(ct + o + j0, j1 - j0);
        }
        break;
      }
      case Cell::Gru: {
        T* gt = tape.gate_of(t) + r0 * G;
        T* hnt = tape.hn_of(t) + r0;
        T* hwt = hw.get() + r0 * G;
        for (int g = 0; g < G; ++g)
          for (int blk = b0; blk < b1; ++blk) wp.forward_block(rows, hp, n, g, blk, T(0), hwt, Gn);
        for (int i = 0; i < rows; ++i) {
          const std::size_t o = static_cast<std::size_t>(i) * n;
          gru_forward_row(gt + o * G, hwt + o * G, hp + o, hnt + o, ht + o, n, j0, j1);
        }
        break;
      }
      default: {
        for (int blk = b0; blk < b1; ++blk) wp.forward_block(rows, hp, n, 0, blk, T(1), ht, n);
        for (int i = 0; i < rows; ++i)
          plain_forward_row(act, ht + static_cast<std::size_t>(i) * n + j0, j1 - j0);
      }
    }
    for (int i = 0; i < rows; ++i) hs += sum_sq(ht + static_cast<std::size_t>(i) * n + j0, j1 - j0);
    h_sq[static_cast<std::size_t>(t) * parts + q] = hs;
    if (cell == Cell::Lstm) c_sq[static_cast<std::size_t>(t) * parts + q] = cs;
  };

  const bool par = nt > 1 && worth_parallel(static_cast<std::size_t>(B) * Gn * 16);
  TeamInterrupt interrupt;
  if (by_rows) {  // no barriers: each group stops at its next step
    parallel_for_interruptible(groups, nt, par, interrupt, [&](int grp) {
      const int i0 = grp * kRowGroup, rows = std::min(kRowGroup, B - i0);
      for (int t = 1; t <= steps && !interrupt.requested(); ++t)
        step_part(t, i0, rows, 0, nb, grp);
    });
  } else {
#pragma omp parallel num_threads(nt) if (par)
    for (int t = 1; t <= steps; ++t) {
      if (interrupt.stop_at(t)) break;  // the whole team, at the same step
#pragma omp for schedule(static)
      for (int blk = 0; blk < nb; ++blk) step_part(t, 0, B, blk, blk + 1, blk);
    }
  }
  interrupt.rethrow();

  for (int t = 1; t <= steps; ++t) {
    double hs = 0.0, cs = 0.0;
    for (int q = 0; q < parts; ++q) {
      hs += h_sq[static_cast<std::size_t>(t) * parts + q];
      if (cell == Cell::Lstm) cs += c_sq[static_cast<std::size_t>(t) * parts + q];
    }
    bool finite = std::isfinite(hs);
    tape.state_norm[t] = std::sqrt(hs);
    if (!detail::plain_sum_is_exact<T>(hs)) {
      // Over- or underflowed squares of finite values are rescaled; NaN/Inf entries are not.
      const auto hn = slab_norm(tape.h_at(t), slab);
      tape.state_norm[t] = hn.norm;
      finite = hn.finite;
    }
    // The LSTM's h = o*tanh(c) stays finite when c overflows: check c as well.
    if (finite && cell == Cell::Lstm && !std::isfinite(cs))
      finite = slab_norm(tape.c_at(t), slab).finite;
    if (!finite && tape.first_nonfinite_step < 0) tape.first_nonfinite_step = t;
  }
}

template void validate_inputs<float>(const RecurrentView<float>&, const RecurrentInputs<float>&);
template void validate_inputs<double>(const RecurrentView<double>&,
                                      const RecurrentInputs<double>&);
template void recurrent_forward<float>(const RecurrentView<float>&, const RecurrentInputs<float>&,
                                       const WeightProducts<float>&, RecurrentTape<float>&, int);
template void recurrent_forward<double>(const RecurrentView<double>&,
                                        const RecurrentInputs<double>&,
                                        const WeightProducts<double>&, RecurrentTape<double>&,
                                        int);

}  // namespace pyjac::detail
