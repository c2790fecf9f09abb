// Jacobians of chains: log norms of J_l ... J_1 at every depth, power iteration for
// sigma_max of the whole chain, and Lyapunov exponents (the QR method).
#include <benchmark/benchmark.h>

#include <vector>

#include "common.hpp"
#include "pyjac/jacobian/jacobian.hpp"
#include "pyjac/spectral/spectral.hpp"

namespace {

using pyjac::Activation;
using pyjac::Init;
using pyjac_bench::in_ms;
using pyjac_bench::threads;

// The tanh chains of bench/bench_jacobian.py: Gaussian weights, gain 1.5 (chaotic) or 1.
pyjac_bench::OwnedChain tanh_chain(int depth, int width, double gain) {
  return pyjac_bench::make_chain(depth, width, Activation::Tanh, Init::Gaussian, gain, 1);
}

// The tolerance pyjac.Chain.jacobian_norms gives the sigma_max solver in float32.
constexpr double kFloat32SolverTol = 1e-6;

// sigma_max and ||.||_F of P_l = J_l ... J_1 at every depth l.
void run_jacobian_norms(benchmark::State& state, double gain) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const pyjac_bench::OwnedChain c = tanh_chain(depth, width, gain);
  const std::vector<float> x = pyjac_bench::normal_vector(width, 2);
  pyjac::ProductOptions options;
  options.tol = kFloat32SolverTol;
  options.n_threads = threads();
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto r = pyjac::chain_jacobian_norms<float>(c.view, x.data(), options);
    benchmark::DoNotOptimize(r.product.log_spectral_norm.data());
  });
  // The product's GEMMs, the dominant work; the sigma_max solver comes on top.
  const double n = width;
  pyjac_bench::report_flops(state, 2.0 * depth * n * n * n, seconds);
}

void BM_JacobianNormsEveryDepth(benchmark::State& state) { run_jacobian_norms(state, 1.5); }
BENCHMARK(BM_JacobianNormsEveryDepth)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width"}))->Args({50, 256})->Args({20, 1024});
});

// Very deep and narrow (gain 1, at the edge of chaos): the per-layer overhead.
void BM_JacobianNormsDeep(benchmark::State& state) { run_jacobian_norms(state, 1.0); }
BENCHMARK(BM_JacobianNormsDeep)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width"}))->Args({10000, 64});
});

// sigma_max of the whole chain's Jacobian by power iteration, a fixed number of
// iterations (a tolerance no iteration meets): each streams every W_l twice (J v, J^T u).
void BM_PowerIteration(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int iters = static_cast<int>(state.range(2));
  const pyjac_bench::OwnedChain c = tanh_chain(depth, width, 1.5);
  const std::vector<float> x = pyjac_bench::normal_vector(width, 2);
  pyjac::PowerIterationOptions options;
  options.iters = iters;
  options.tol = 1e-300;
  options.n_threads = threads();
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto r = pyjac::chain_spectral_norm<float>(c.view, x.data(), false, options);
    benchmark::DoNotOptimize(r.data());
  });
  const double weight_bytes = double(depth) * width * width * sizeof(float);
  pyjac_bench::report_bytes(state, 2.0 * iters * weight_bytes, seconds);
}
BENCHMARK(BM_PowerIteration)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width", "iters"}))->Args({100, 256, 50});
});

// The k leading Lyapunov exponents of the chain (QR method).
void BM_LyapunovExponents(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  const int width = static_cast<int>(state.range(1));
  const int k = static_cast<int>(state.range(2));
  const pyjac_bench::OwnedChain c = tanh_chain(depth, width, 1.5);
  const std::vector<float> x = pyjac_bench::normal_vector(width, 2);
  const double seconds = pyjac_bench::timed_loop(state, [&] {
    auto r = pyjac::chain_lyapunov_exponents<float>(c.view, x.data(), k, 0, threads());
    benchmark::DoNotOptimize(r.data());
  });
  pyjac_bench::report_flops(state, depth * pyjac_bench::lyapunov_step_flops(width, k), seconds);
}
BENCHMARK(BM_LyapunovExponents)->Apply([](auto* b) {
  in_ms(b->ArgNames({"depth", "width", "k"}))->Args({1000, 64, 64})->Args({100, 256, 32});
});

}  // namespace
