// Recurrent nets: backprop through time (tanh, LSTM, GRU), and the Jacobian norms and
// Lyapunov exponents of the hidden-state map.
#include <benchmark/benchmark.h>

#include <vector>

#include "common.hpp"
#include "pyjac/recurrent/recurrent.hpp"

namespace {

using pyjac::Cell;
using pyjac_bench::in_ms;
using pyjac_bench::threads;

struct OwnedRecurrent {
  std::vector<float> W, U, b, xs;
  pyjac::RecurrentView<float> view;
  pyjac::RecurrentInputs<float> in;
};

// The nets of bench/bench_recurrent.py: spectral radius 0.9, input size = width.
OwnedRecurrent make_recurrent(Cell cell, int width, int batch, int steps) {
  OwnedRecurrent r;
  const int g = pyjac::cell_gates(cell);
  r.W.resize(std::size_t(g) * width * width);
  r.U.resize(std::size_t(g) * width * width);
  r.b.resize(std::size_t(g) * width);
  pyjac::RecurrentInitOptions o;
  o.spectral_radius = 0.9;
  pyjac::init_recurrent<float>(cell, width, width, o, r.W.data(), r.U.data(), r.b.data());
  r.xs = pyjac_bench::normal_vector(std::size_t(steps) * batch * width, 5);
  r.view.cell = cell;
  r.view.width = width;
  r.view.input_size = width;
  r.view.W = r.W.data();
  r.view.U = r.U.data();
  r.view.b = r.b.data();
  r.in.xs = r.xs.data();
  r.in.steps = steps;
  r.in.batch = batch;
  return r;
}

// Multiply-adds x 2 of the GEMMs every BPTT must do (as in bench/bench_recurrent.py):
// forward W h and U x, backward dL/dh_{t-1}, and dL/dW, dL/dU.
double bptt_flops(Cell cell, int n, int batch, int steps) {
  const double g = pyjac::cell_gates(cell);
  const double m = n;
  return steps * (2.0 * batch * g * n * (n + m) + 2.0 * batch * g * n * n +
                  2.0 * batch * g * n * (n + m));
}

void run_bptt(benchmark::State& state, Cell cell, bool weight_grads = true) {
  const int width = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  const int steps = static_cast<int>(state.range(2));
  const OwnedRecurrent r = make_recurrent(cell, width, batch, steps);
  pyjac::RecurrentBackpropOptions options;
  options.n_threads = threads();
  options.weight_grads = weight_grads;
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto s = pyjac::recurrent_backprop<float>(r.view, r.in, nullptr, options, {});
    benchmark::DoNotOptimize(s.grad_norm.data());
  });
  const double g = pyjac::cell_gates(cell), n = width;
  // Without weight gradients: the forward products (W h and U x) and dL/dh_{t-1} = dz W.
  const double flops = weight_grads ? bptt_flops(cell, width, batch, steps)
                                    : steps * (2.0 * batch * g * n * 2 * n + 2.0 * batch * g * n * n);
  pyjac_bench::report_flops(state, flops, seconds);
}

void bptt_cases(benchmark::internal::Benchmark* b, int steps) {
  in_ms(b->ArgNames({"width", "batch", "steps"}))->Args({256, 32, steps});
}

void BM_Bptt_Tanh(benchmark::State& state) { run_bptt(state, Cell::Tanh); }
BENCHMARK(BM_Bptt_Tanh)->Apply([](auto* b) { bptt_cases(b, 1000); });
void BM_Bptt_Lstm(benchmark::State& state) { run_bptt(state, Cell::Lstm); }
BENCHMARK(BM_Bptt_Lstm)->Apply([](auto* b) { bptt_cases(b, 200); })->Args({256, 32, 10});
void BM_Bptt_Gru(benchmark::State& state) { run_bptt(state, Cell::Gru); }
BENCHMARK(BM_Bptt_Gru)->Apply([](auto* b) { bptt_cases(b, 200); });

// Only the gradient through time (weight_grads = false): the figure-4 job.
void BM_GradThroughTime_Tanh(benchmark::State& state) { run_bptt(state, Cell::Tanh, false); }
BENCHMARK(BM_GradThroughTime_Tanh)->Apply([](auto* b) { bptt_cases(b, 1000); })->Args({256, 32, 50});
void BM_GradThroughTime_Lstm(benchmark::State& state) { run_bptt(state, Cell::Lstm, false); }
BENCHMARK(BM_GradThroughTime_Lstm)->Apply([](auto* b) { bptt_cases(b, 200); });

// log sigma_max and ||.||_F of dh_t/dh_0 at every step, one example.
void BM_RecurrentJacobianNorms(benchmark::State& state) {
  const int width = static_cast<int>(state.range(0));
  const int steps = static_cast<int>(state.range(1));
  const OwnedRecurrent r = make_recurrent(Cell::Tanh, width, 1, steps);
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto s = pyjac::recurrent_jacobian_norms<float>(r.view, r.in, threads());
    benchmark::DoNotOptimize(s.log_spectral_norm.data());
  });
  pyjac_bench::report_flops(state, 2.0 * steps * double(width) * width * width, seconds);
}
BENCHMARK(BM_RecurrentJacobianNorms)->Apply([](auto* b) {
  in_ms(b->ArgNames({"width", "steps"}))->Args({256, 200});
});

// The k leading Lyapunov exponents of the hidden-state map (QR method).
void BM_RecurrentLyapunov(benchmark::State& state) {
  const int width = static_cast<int>(state.range(0));
  const int steps = static_cast<int>(state.range(1));
  const int k = static_cast<int>(state.range(2));
  const OwnedRecurrent r = make_recurrent(Cell::Tanh, width, 1, steps);
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto s = pyjac::recurrent_lyapunov<float>(r.view, r.in, k, 0, threads());
    benchmark::DoNotOptimize(s.exponents.data());
  });
  pyjac_bench::report_flops(state, steps * pyjac_bench::lyapunov_step_flops(width, k), seconds);
}
BENCHMARK(BM_RecurrentLyapunov)->Apply([](auto* b) {
  in_ms(b->ArgNames({"width", "steps", "k"}))->Args({256, 1000, 32});
});

}  // namespace
