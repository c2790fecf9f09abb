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

namespace {

// The tape's slabs for `steps` steps of this cell.
template <typename T>
void allocate_tape(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                   RecurrentTape<T>& tape) {
  const Cell cell = cv.cell;
  const int steps = in.steps;
  tape.steps = steps;
  tape.batch = in.batch;
  tape.width = cv.width;
  tape.gates = cv.gates();
  tape.cell = cell;
  const std::size_t slab = tape.slab();
  tape.h = make_rbuffer<T>((steps + 1) * slab);
  if (cell == Cell::Lstm) {
    tape.c = make_rbuffer<T>((steps + 1) * slab);
    tape.tc = make_rbuffer<T>(steps * slab);
  }
  if (!is_plain(cell)) tape.gate = make_rbuffer<T>(steps * tape.gate_slab());
  if (cell == Cell::Gru) tape.hn = make_rbuffer<T>(steps * slab);
}

// U x_t + b for every step at once: row (t-1)*B + i of the pre-activations is example i
// at step t (in h for the plain cells, in the gate slab otherwise).
template <typename T>
void add_input_terms(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                     RecurrentTape<T>& tape, int nt) {
  const int Gn = cv.gates() * cv.width, m = cv.input_size;
  T* pre = is_plain(cv.cell) ? tape.h_at(1) : tape.gate.get();
  const long long pre_rows = static_cast<long long>(in.steps) * in.batch;
  const std::size_t pre_total = static_cast<std::size_t>(pre_rows) * Gn;
  // This first touch of the tape takes seconds for long sequences: interruptible, in
  // blocks of rows. Waking a second thread costs up to a millisecond on a virtual
  // machine, so short tapes (below 8 MB of float64) are filled on the calling thread.
  constexpr long long kRows = 256;
  TeamInterrupt fill_interrupt;
  parallel_for_interruptible((pre_rows + kRows - 1) / kRows, nt, pre_total >= (1u << 20),
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
}

// h_0 (and the LSTM's c_0): the caller's, or zeros.
template <typename T>
void set_initial_state(const RecurrentInputs<T>& in, RecurrentTape<T>& tape) {
  const std::size_t slab = tape.slab();
  if (in.h0)
    std::memcpy(tape.h_at(0), in.h0, sizeof(T) * slab);
  else
    std::fill(tape.h_at(0), tape.h_at(0) + slab, T(0));
  if (tape.cell == Cell::Lstm) {
    if (in.c0)
      std::memcpy(tape.c_at(0), in.c0, sizeof(T) * slab);
    else
      std::fill(tape.c_at(0), tape.c_at(0) + slab, T(0));
  }
  tape.state_norm.assign(tape.steps + 1, 0.0);
  tape.first_nonfinite_step = -1;
  const auto n0 = slab_norm(tape.h_at(0), slab);
  tape.state_norm[0] = n0.norm;
  if (!n0.finite) tape.first_nonfinite_step = 0;
}

// The time loop. Work is split in one of two ways, chosen by the batch size alone so that
// the bits never depend on the thread count (partial sums of squares are kept per part
// and added in part order afterwards):
//  - by rows: fixed groups of examples, each run through all T steps by one thread.
//    Examples are independent, so the time loop needs no synchronisation at all.
//  - by units (small batches): one parallel region, each thread owning fixed blocks
//    of units across every gate; one barrier per step (h_t complete before step
//    t+1 reads it).
template <typename T>
class TimeLoop {
 public:
  TimeLoop(const RecurrentView<T>& cv, const WeightProducts<T>& wp, RecurrentTape<T>& tape,
           int nt)
      : wp_(wp), tape_(tape), nt_(nt), cell_(cv.cell), n_(cv.width), G_(cv.gates()),
        Gn_(G_ * n_), B_(tape.batch), steps_(tape.steps), act_(cell_activation(cell_)),
        nb_(wp.blocks()), ub_(wp.unit_block()), by_rows_(B_ >= kRowModeBatch),
        group_(row_group(B_)), groups_((B_ + group_ - 1) / group_),
        parts_(by_rows_ ? groups_ : nb_),
        h_sq_(static_cast<std::size_t>(steps_ + 1) * parts_, 0.0),
        c_sq_(cell_ == Cell::Lstm ? h_sq_.size() : 0, 0.0) {
    if (cell_ == Cell::Gru) hw_ = make_rbuffer<T>(static_cast<std::size_t>(B_) * Gn_);
  }

  void run() {
    const bool par = time_loop_in_parallel<T>(nt_, by_rows_, B_, Gn_, n_);
    TeamInterrupt interrupt;
    if (by_rows_) {  // no barriers: each group stops at its next step
      parallel_for_interruptible(groups_, nt_, par, interrupt, [&](int grp) {
        const int i0 = grp * group_, rows = std::min(group_, B_ - i0);
        for (int t = 1; t <= steps_ && !interrupt.requested(); ++t)
          step_part(t, i0, rows, 0, nb_, grp);
      });
    } else {
      const auto all_steps = [&] {
        for (int t = 1; t <= steps_; ++t) {
          if (interrupt.stop_at(t)) break;  // the whole team, at the same step
          units_step(t);
        }
      };
      run_team(nt_, par, all_steps);
    }
    interrupt.rethrow();
    record_state_norms();
  }

 private:
  // Step t split by units. The worksharing loop is orphaned: inside the caller's parallel
  // region it shares the blocks out (and ends in the step's barrier), outside any region
  // it runs on the calling thread alone, with no barrier.
  void units_step(int t) {
#pragma omp for schedule(static)
    for (int blk = 0; blk < nb_; ++blk) step_part(t, 0, B_, blk, blk + 1, blk);
  }

  // Step t for rows [i0, i0 + rows) and unit blocks [b0, b1): GEMMs with W, then the
  // cell's elementwise part; stores the sums of squares of h_t (and c_t) in slot q.
  void step_part(int t, int i0, int rows, int b0, int b1, int q) {
    const int j0 = b0 * ub_, j1 = std::min(n_, b1 * ub_);
    const std::size_t r0 = static_cast<std::size_t>(i0) * n_;
    const T* hp = tape_.h_at(t - 1) + r0;
    T* ht = tape_.h_at(t) + r0;
    double hs = 0.0, cs = 0.0;
    switch (cell_) {
      case Cell::Lstm: {
        T* gt = tape_.gate_of(t) + r0 * G_;
        for (int g = 0; g < G_; ++g)
          for (int blk = b0; blk < b1; ++blk) wp_.forward_block(rows, hp, n_, g, blk, T(1), gt, Gn_);
        const T* cp = tape_.c_at(t - 1) + r0;
        T* ct = tape_.c_at(t) + r0;
        T* tct = tape_.tc_of(t) + r0;
        for (int i = 0; i < rows; ++i) {
          const std::size_t o = static_cast<std::size_t>(i) * n_;
          lstm_forward_row(gt + o * G_, cp + o, ct + o, tct + o, ht + o, n_, j0, j1);
          cs += sum_sq(ct + o + j0, j1 - j0);
        }
        break;
      }
      case Cell::Gru: {
        T* gt = tape_.gate_of(t) + r0 * G_;
        T* hnt = tape_.hn_of(t) + r0;
        T* hwt = hw_.get() + r0 * G_;
        for (int g = 0; g < G_; ++g)
          for (int blk = b0; blk < b1; ++blk) wp_.forward_block(rows, hp, n_, g, blk, T(0), hwt, Gn_);
        for (int i = 0; i < rows; ++i) {
          const std::size_t o = static_cast<std::size_t>(i) * n_;
          gru_forward_row(gt + o * G_, hwt + o * G_, hp + o, hnt + o, ht + o, n_, j0, j1);
        }
        break;
      }
      default: {
        for (int blk = b0; blk < b1; ++blk) wp_.forward_block(rows, hp, n_, 0, blk, T(1), ht, n_);
        for (int i = 0; i < rows; ++i)
          plain_forward_row(act_, ht + static_cast<std::size_t>(i) * n_ + j0, j1 - j0);
      }
    }
    for (int i = 0; i < rows; ++i)
      hs += sum_sq(ht + static_cast<std::size_t>(i) * n_ + j0, j1 - j0);
    h_sq_[static_cast<std::size_t>(t) * parts_ + q] = hs;
    if (cell_ == Cell::Lstm) c_sq_[static_cast<std::size_t>(t) * parts_ + q] = cs;
  }

  // ||h_t|| per step from the parts' sums of squares, and the first non-finite step.
  void record_state_norms() {
    const std::size_t slab = tape_.slab();
    for (int t = 1; t <= steps_; ++t) {
      double hs = 0.0, cs = 0.0;
      for (int q = 0; q < parts_; ++q) {
        hs += h_sq_[static_cast<std::size_t>(t) * parts_ + q];
        if (cell_ == Cell::Lstm) cs += c_sq_[static_cast<std::size_t>(t) * parts_ + q];
      }
      bool finite = std::isfinite(hs);
      tape_.state_norm[t] = std::sqrt(hs);
      if (!detail::plain_sum_is_exact<T>(hs)) {
        // Over- or underflowed squares of finite values are rescaled; NaN/Inf entries are not.
        const auto hn = slab_norm(tape_.h_at(t), slab);
        tape_.state_norm[t] = hn.norm;
        finite = hn.finite;
      }
      // The LSTM's h = o*tanh(c) stays finite when c overflows: check c as well.
      if (finite && cell_ == Cell::Lstm && !std::isfinite(cs))
        finite = slab_norm(tape_.c_at(t), slab).finite;
      if (!finite && tape_.first_nonfinite_step < 0) tape_.first_nonfinite_step = t;
    }
  }

  const WeightProducts<T>& wp_;
  RecurrentTape<T>& tape_;
  const int nt_;
  const Cell cell_;
  const int n_, G_, Gn_, B_, steps_;
  const Activation act_;
  const int nb_, ub_;
  const bool by_rows_;
  const int group_, groups_, parts_;
  std::vector<double> h_sq_, c_sq_;
  RBuffer<T> hw_;  // the GRU's W h_{t-1}, per step
};

}  // namespace

template <typename T>
void recurrent_forward(const RecurrentView<T>& cv, const RecurrentInputs<T>& in,
                       const WeightProducts<T>& wp, RecurrentTape<T>& tape, int nt) {
  allocate_tape(cv, in, tape);
  add_input_terms(cv, in, tape, nt);
  set_initial_state(in, tape);
  TimeLoop<T>(cv, wp, tape, nt).run();
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
