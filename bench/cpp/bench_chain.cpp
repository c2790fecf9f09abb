// Feed-forward chains: backprop (tile-at-a-time and layer-at-a-time passes), the BLAS
// calls of the tiled pass alone (its floor), and the SGEMM the peak is measured with.
#include <benchmark/benchmark.h>

#include <vector>

#include "common.hpp"
#include "pyjac/chain/calibrate.hpp"
#include "pyjac/chain/chain.hpp"
#include "pyjac/common/blas.hpp"

namespace {

using pyjac::Activation;
using pyjac::Init;
using pyjac_bench::in_ms;
using pyjac_bench::threads;

// Textbook forward + backward count, 6 * batch * width^2 per layer; the ghost norm
// actually performs fewer, so this GFLOP/s is the rate of the job, not of the GEMMs.
double backprop_flops(int depth, int width, int batch) {
  return 6.0 * batch * depth * static_cast<double>(width) * width;
}

void run_backprop(benchmark::State& state, Activation activation, pyjac::Norm norm,
                  bool weight_grads = true) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  const Init init = activation == Activation::Relu ? Init::He : Init::Xavier;
  pyjac_bench::OwnedChain c = pyjac_bench::make_chain(depth, width, activation, init, 1.0, 0);
  c.view.norm = norm;
  const std::vector<float> x = pyjac_bench::normal_vector(std::size_t(batch) * width, 1);
  pyjac::BackpropOptions options;
  options.n_threads = threads();
  options.weight_grads = weight_grads;
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto stats = pyjac::backprop<float>(c.view, x.data(), batch, nullptr, nullptr, options, {});
    benchmark::DoNotOptimize(stats.grad_norm.data());
  });
  // Without weight gradients: the forward product and dL/dh_{l-1} = dz W, 2/3 of the job.
  const double share = weight_grads ? 1.0 : 2.0 / 3.0;
  pyjac_bench::report_flops(state, share * backprop_flops(depth, width, batch), seconds);
}

// The (depth, width, batch) cases of bench/bench_backprop.py.
void backprop_cases(benchmark::internal::Benchmark* b) {
  in_ms(b->ArgNames({"depth", "width", "batch"}))
      ->Args({100, 256, 64})
      ->Args({1000, 64, 16})
      ->Args({50, 1024, 256});
}

void BM_Backprop_Relu(benchmark::State& state) {
  run_backprop(state, Activation::Relu, pyjac::Norm::None);
}
BENCHMARK(BM_Backprop_Relu)->Apply(backprop_cases);

// Only the gradient through depth (weight_grads = false).
void BM_GradThroughDepth_Relu(benchmark::State& state) {
  run_backprop(state, Activation::Relu, pyjac::Norm::None, false);
}
BENCHMARK(BM_GradThroughDepth_Relu)->Apply(backprop_cases);

void BM_Backprop_Tanh(benchmark::State& state) {
  run_backprop(state, Activation::Tanh, pyjac::Norm::None);
}
BENCHMARK(BM_Backprop_Tanh)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width", "batch"}))->Args({100, 256, 64});
});

// Norm layers take the layer-at-a-time pass (src/cpp/core/chain/chain.cpp).
void BM_Backprop_LayerNorm(benchmark::State& state) {
  run_backprop(state, Activation::Relu, pyjac::Norm::LayerNorm);
}
BENCHMARK(BM_Backprop_LayerNorm)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width", "batch"}))->Args({50, 128, 32})->Args({100, 256, 64});
});

// The BLAS calls of the tiled backprop alone, in its own schedule
// (pyjac::backprop_blas_seconds): BM_Backprop_Relu minus this is pyjac's own work.
void BM_BackpropBlasCallsOnly(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  double seconds = 0.0;
  for (auto _ : state) {
    const double took = pyjac::backprop_blas_seconds(depth, width, batch, 1, threads());
    state.SetIterationTime(took);
    seconds += took;
  }
  pyjac_bench::report_flops(state, backprop_flops(depth, width, batch), seconds);
}
BENCHMARK(BM_BackpropBlasCallsOnly)->Apply(backprop_cases);

// One float32 n^3 GEMM on the library's own threads: the peak's measurement, repeatable.
void BM_Sgemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const std::vector<float> a = pyjac_bench::normal_vector(std::size_t(n) * n, 2);
  const std::vector<float> b = pyjac_bench::normal_vector(std::size_t(n) * n, 3);
  std::vector<float> c(std::size_t(n) * n);
  const int saved = pyjac::blas::get_num_threads();
  if (threads() > 0) pyjac::blas::set_num_threads(threads());
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    pyjac::blas::gemm(pyjac::blas::Trans::No, pyjac::blas::Trans::No, n, n, n, 1.0f, a.data(),
                      n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
  pyjac::blas::set_num_threads(saved);
  pyjac_bench::report_flops(state, 2.0 * n * static_cast<double>(n) * n, seconds);
}
BENCHMARK(BM_Sgemm)->Apply([](auto* b) { in_ms(b->ArgName("n"))->Arg(2048); });

}  // namespace
