// C++ benchmarks of the core kernels, without Python in the loop.
// Build: cmake -S . -B build-bench -DPYJAC_BUILD_BENCH=ON && cmake --build build-bench
// Run:   build-bench/bench/bench_core
#include <benchmark/benchmark.h>

#include <vector>

#include "layer_grid.hpp"  // the core's private tiling rule, so the schedule below is its own
#include "pyjac/blas.hpp"
#include "pyjac/calibrate.hpp"
#include "pyjac/chain.hpp"
#include "pyjac/init.hpp"
#include "pyjac/rng.hpp"
#include "pyjac/threads.hpp"

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
BENCHMARK(BM_Backprop)
    ->Args({100, 256, 64})
    ->Args({1000, 64, 16})
    ->Args({50, 1024, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The BLAS calls of the tile-at-a-time backprop (chain_tiled.cpp) alone, in its schedule:
// the same tile grids, one OpenMP region per pass, one barrier per layer, the two Gram
// SYRKs of the ghost norm beside the tiles of dL/dh = dz W. No activation, statistic or
// norm is computed, and every layer reads its own stored input, as the real pass does.
// BM_Backprop minus this is pyjac's own work; the numpy loop's time over this is the
// most that any schedule of these BLAS calls could gain over it on this machine.
void BM_BackpropBlasCallsOnly(benchmark::State& state) {
  using pyjac::blas::Trans;
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int batch = static_cast<int>(state.range(2));
  OwnedChain c = make_chain(depth, width);
  const std::size_t slab = static_cast<std::size_t>(batch) * width;
  std::vector<float> h((depth + 1) * slab), u(depth * slab), dz(slab), g(slab),
      grams(2 * static_cast<std::size_t>(batch) * batch);
  pyjac::Rng rng(1, 0);
  for (float& v : h) v = static_cast<float>(rng.normal());
  for (float& v : dz) v = static_cast<float>(rng.normal());
  const pyjac::detail::LayerGrid grid = pyjac::detail::layer_grid(batch, width, width);
  const int nt = pyjac::resolve_threads(-1);
  for (auto _ : state) {
    pyjac::BlasThreadScope single(1);
#pragma omp parallel num_threads(nt)
    {
      for (int l = 0; l < depth; ++l) {
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < grid.count(); ++t) {
          const auto tile = grid.at(t);
          pyjac::blas::gemm(Trans::No, Trans::Yes, tile.rows(), tile.cols(), width, 1.0f,
                            h.data() + l * slab + tile.i0 * width, width,
                            c.view.weights[l] + static_cast<std::size_t>(tile.j0) * width,
                            width, 0.0f, u.data() + l * slab + tile.i0 * width + tile.j0,
                            width);
        }
      }
      for (int l = depth - 1; l >= 0; --l) {
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < 2 + grid.count(); ++task) {
          if (task < 2) {
            const float* a = task == 0 ? dz.data() : h.data() + l * slab;
            pyjac::blas::syrk_lower(batch, width, 1.0f, a, width, 0.0f,
                                    grams.data() + task * batch * batch, batch);
          } else {
            const auto tile = grid.at(task - 2);
            pyjac::blas::gemm(Trans::No, Trans::No, tile.rows(), tile.cols(), width, 1.0f,
                              dz.data() + tile.i0 * width, width,
                              c.view.weights[l] + tile.j0, width, 0.0f,
                              g.data() + tile.i0 * width + tile.j0, width);
          }
        }
      }
    }
    benchmark::DoNotOptimize(g.data());
    benchmark::DoNotOptimize(grams.data());
  }
}
BENCHMARK(BM_BackpropBlasCallsOnly)
    ->Args({100, 256, 64})
    ->Args({1000, 64, 16})
    ->Args({50, 1024, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_SgemmPeak(benchmark::State& state) {
  for (auto _ : state) state.counters["GFLOP/s"] = pyjac::gemm_gflops(2048, 1, -1, true);
}
BENCHMARK(BM_SgemmPeak)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
