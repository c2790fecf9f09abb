// Recurrent chains: one cell applied T times, backprop through time, Jacobian
// products and Lyapunov exponents of the recurrence.
//
// Math convention (batch as rows, gates stacked row-wise in W, U, b):
//   plain cells  h_t = phi(W h_{t-1} + U x_t + b)                      G = 1
//   lstm         [i f g o] = [s s tanh s](W h_{t-1} + U x_t + b)         G = 4
//                c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t)   (PyTorch's gate order)
//   gru          r = s(W_r h + U_r x + b_r), z = s(W_z h + U_z x + b_z)   G = 3
//                n = tanh(U_n x + b_n + r*(W_n h)),  h_t = (1-z)*n + z*h_{t-1}
// W is (G*width, width), U (G*width, input_size), b (G*width). The GRU has a single
// bias: b_r and b_z stand for PyTorch's b_ih + b_hh of those gates, b_n for b_in,
// and PyTorch's hidden bias of the n gate (b_hn, inside r*(...)) is zero.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pyjac/common/types.hpp"

namespace pyjac {

enum class Cell : int { Linear, Tanh, Relu, Sigmoid, Lstm, Gru };

Cell parse_cell(const std::string& name);
const char* cell_name(Cell c);
// Gate blocks stacked in W, U and b.
int cell_gates(Cell c);
// Size of the recurrent state: 2*width for the LSTM's (h, c), width otherwise.
inline int state_size(Cell c, int width) { return c == Cell::Lstm ? 2 * width : width; }

// A non-owning view of a recurrent cell's parameters.
template <typename T>
struct RecurrentView {
  Cell cell = Cell::Tanh;
  int width = 0;
  int input_size = 0;
  const T* W = nullptr;  // (G*width, width)
  const T* U = nullptr;  // (G*width, input_size), may be null when input_size == 0
  const T* b = nullptr;  // (G*width)
  int gates() const { return cell_gates(cell); }
  void validate() const;
};

// One trajectory's inputs: xs (steps, batch, input_size) or null for the
// autonomous recurrence (x_t = 0); h0, c0 (batch, width) or null for zeros.
template <typename T>
struct RecurrentInputs {
  const T* xs = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;  // LSTM only
  int steps = 0;
  int batch = 1;
};

enum class RecurrentLoss : int {
  Last,           // 0.5 * ||h_T||^2
  All,            // 0.5 * sum_{t=1..T} ||h_t||^2
  GradLast,       // given dL/dh_T, (batch, width)
  GradAll,        // given dL/dh_t for t = 1..T, (steps, batch, width)
};

struct ClipSpec {
  ClipKind kind = ClipKind::None;
  double threshold = 0.0;  // tau for Norm, c for Value; > 0
};

struct RecurrentBackpropOptions {
  RecurrentLoss loss = RecurrentLoss::Last;
  ClipSpec clip;
  int n_threads = -1;
  // false: only the gradient through time (dL/dh_t, dL/dc_t, dL/dh_0): no weight
  // gradients, their norms or per-step shares (left NaN / empty), no clipping. The
  // backward pass then keeps two slabs of pre-activation gradients instead of T.
  bool weight_grads = true;
  // false: the weight gradients without each step's share of dL/dW
  // (step_weight_grad_norm left empty), which costs about a sixth of a pass more (two
  // Gram matrices per step). Training asks for the gradients alone.
  bool step_shares = true;
};

// What one BPTT pass measured; float64 whatever T is.
struct RecurrentBackpropStats {
  double loss = 0.0;                   // NaN for the Grad* losses
  std::vector<double> grad_norm;       // ||dL/dh_t||, t = 0..T (total derivative)
  std::vector<double> cell_grad_norm;  // LSTM: ||dL/dc_t||, t = 0..T; empty otherwise
  std::vector<double> state_norm;      // ||h_t||, t = 0..T
  std::vector<double> step_weight_grad_norm;  // ||dL/dW|_t||, t = 1..T (empty: not asked)
  double W_grad_norm = 0.0, U_grad_norm = 0.0, b_grad_norm = 0.0;  // before clipping
  double total_grad_norm = 0.0;    // ||(dW, dU, db)|| before clipping
  double clipped_grad_norm = 0.0;  // the same after clipping
  double clip_cosine = 1.0;        // cos angle between the gradient before and after
  double clipped_fraction = 0.0;   // entries changed by value clipping
  // Natural logs of grad_norm, cell_grad_norm and step_weight_grad_norm, finite over any
  // number of steps: the backward pass carries a power-of-two scale per group of rows.
  std::vector<double> log_grad_norm, log_cell_grad_norm, log_step_weight_grad_norm;
  int first_underflow_step = -1;   // grad_norm below float64's normal range
  int first_nonfinite_step = -1;   // index into the (T+1,) arrays
  int first_nonfinite_stage = 0;   // 0 none, 1 forward, 2 backward
};

// Caller-owned destinations, each optional: the (clipped) weight gradients, dL/dh_0
// (and dL/dc_0 for the LSTM), and the final state.
template <typename T>
struct RecurrentOutputs {
  T* dW = nullptr;
  T* dU = nullptr;
  T* db = nullptr;
  T* dh0 = nullptr;
  T* dc0 = nullptr;
  T* h_last = nullptr;
  T* c_last = nullptr;
};

// Forward pass over T steps and backprop through time, in one call.
//   grad_output: (batch, width) for GradLast, (steps, batch, width) for GradAll.
template <typename T>
RecurrentBackpropStats recurrent_backprop(const RecurrentView<T>& cell,
                                          const RecurrentInputs<T>& in, const T* grad_output,
                                          const RecurrentBackpropOptions& options,
                                          const RecurrentOutputs<T>& outputs);

// A loss of the states that the caller computes between the forward and the backward
// pass (a readout and its loss, for training): given h_1 .. h_T as (steps, batch, width),
// it writes dL/dh_t, (steps, batch, width) with options.loss == GradAll or (batch, width)
// of h_T with GradLast, and returns the loss. The states are the tape's own: one forward
// pass serves the loss and the backward pass.
template <typename T>
using StateLoss = std::function<double(const T* states, T* grad_states)>;

template <typename T>
RecurrentBackpropStats recurrent_backprop(const RecurrentView<T>& cell,
                                          const RecurrentInputs<T>& in,
                                          const StateLoss<T>& loss,
                                          const RecurrentBackpropOptions& options,
                                          const RecurrentOutputs<T>& outputs);

// Bytes the forward tape and the backward pass allocate.
std::int64_t recurrent_workspace_bytes(Cell cell, int width, int input_size, int steps,
                                       int batch, int dtype_size);

// Norms of the state Jacobians d s_T / d s_t for t = 0..T along one trajectory
// (batch 1); s = (h, c) for the LSTM, h otherwise. Index T is the identity.
struct RecurrentJacobianNorms {
  std::vector<double> log_spectral_norm;   // (T+1,)
  std::vector<double> log_frobenius_norm;  // (T+1,)
  int first_nonfinite_step = -1;
};

template <typename T>
RecurrentJacobianNorms recurrent_jacobian_norms(const RecurrentView<T>& cell,
                                                const RecurrentInputs<T>& in, int n_threads);

// The k largest Lyapunov exponents of the recurrence along one trajectory (batch 1),
// natural log per step, by the QR method from a seeded Haar-random k-frame.
struct RecurrentLyapunov {
  std::vector<double> exponents;  // (k,), descending
  int first_nonfinite_step = -1;
};

template <typename T>
RecurrentLyapunov recurrent_lyapunov(const RecurrentView<T>& cell, const RecurrentInputs<T>& in,
                                     int k, std::uint64_t seed, int n_threads);

struct RecurrentInitOptions {
  Init init = Init::Orthogonal;
  double gain = 1.0;
  double forget_bias = 1.0;
  double spectral_radius = -1.0;  // < 0: leave W as drawn
  std::uint64_t seed = 0;
};

// Fills W (G*width, width), U (G*width, input_size) and b (G*width). Every gate
// block of W is drawn on its own and, with spectral_radius = r, rescaled so that
// its largest |eigenvalue| is r; U is Gaussian with variance 1/input_size; b is
// zero except the LSTM's forget-gate block, set to forget_bias.
template <typename T>
void init_recurrent(Cell cell, int width, int input_size, const RecurrentInitOptions& options,
                    T* W, T* U, T* b);

}  // namespace pyjac
