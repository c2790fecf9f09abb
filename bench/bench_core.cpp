// C++ benchmarks of the core kernels, without Python in the loop.
// Build: cmake -S . -B build-bench -DPYJAC_BUILD_BENCH=ON && cmake --build build-bench
// Run:   build-bench/bench/bench_core
#include <benchmark/benchmark.h>

#include <vector>

#include "pyjac/chain/calibrate.hpp"
#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/common/rng.hpp"

namespace {

struct OwnedChain {
  std::vector<std::vector<float>> w, b;
  pyjac::ChainView<float> view;
};

OwnedChain make_chain(int depth, int width) {
  OwnedChain c;
  std::vector<int> widths(depth + 1, width);
  c.w.assign(depth, std::vector<float>(static_cast<std::size_t>(width) * width));
  c.b.assign(depth, std::vector<float>(width));
  std::vector<float*> wp, bp;
  for (int l = 0; l < depth; ++l) {
    wp.push_back(c.w[l].data());
    bp.push_back(c.b[l].data());
  }
  pyjac::InitOptions o;
  o.init = pyjac::Init::He;
  pyjac::init_chain<float>(widths, o, wp, bp);
  c.view.widths = widths;
  for (int l = 0; l < depth; ++l) {
    c.view.weights.push_back(c.w[l].data());
    c.view.biases.push_back(c.b[l].data());
    c.view.activations.push_back(pyjac::Activation::Relu);
  }
  return c;
}

void BM_Backprop(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  OwnedChain c = make_chain(depth, width);
  std::vector<float> x(static_cast<std::size_t>(batch) * width);
  pyjac::Rng rng(1, 0);
  for (float& v : x) v = static_cast<float>(rng.normal());
  pyjac::BackpropOptions options;
  for (auto _ : state) {
    auto stats = pyjac::backprop<float>(c.view, x.data(), batch, nullptr, nullptr, options, {});
    benchmark::DoNotOptimize(stats.grad_norm.data());
  }
  const double flops = 6.0 * batch * depth * static_cast<double>(width) * width;
  // Textbook forward + backward count; the ghost norm actually performs fewer.
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
// The (depth, width, batch) cases of the backprop issue.
void issue_cases(benchmark::internal::Benchmark* b) {
  b->Args({100, 256, 64})->Args({1000, 64, 16})->Args({50, 1024, 256});
  b->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Backprop)->Apply(issue_cases)->UseRealTime();

// The BLAS calls of the tiled backprop alone, in its own schedule
// (pyjac::backprop_blas_seconds): BM_Backprop minus this is pyjac's own work.
void BM_BackpropBlasCallsOnly(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  for (auto _ : state)
    state.SetIterationTime(pyjac::backprop_blas_seconds(depth, width, batch, 1, -1));
}
BENCHMARK(BM_BackpropBlasCallsOnly)->Apply(issue_cases)->UseManualTime();

void BM_SgemmPeak(benchmark::State& state) {
  for (auto _ : state) state.counters["GFLOP/s"] = pyjac::gemm_gflops(2048, 1, -1, true);
}
BENCHMARK(BM_SgemmPeak)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
