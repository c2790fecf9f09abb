// Shared pieces of the C++ benchmarks: the thread budget, the SGEMM peak measured once
// per run, the rate counters every case reports, and the networks the cases time.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/common/types.hpp"

namespace pyjac_bench {

// n_threads for every pyjac call and for the peak (--threads=N; -1: all cores).
int threads();
void set_threads(int n);

// Best-of-3 GFLOP/s of a float32 2048^3 GEMM on this run's OpenBLAS kernels and thread
// budget, measured the first time a case asks for it (so that filtered runs pay once).
double sgemm_peak_gflops();

// Runs the benchmark loop, timing `job()` alone on a steady clock (cases register with
// UseManualTime), with `prepare()` untimed before each call. Returns the seconds timed,
// which the counters below need: Google Benchmark's own rates cannot express %peak.
template <typename Job, typename Prepare>
double timed_loop(benchmark::State& state, Job&& job, Prepare&& prepare) {
  double total = 0.0;
  for (auto _ : state) {
    prepare();
    const auto start = std::chrono::steady_clock::now();
    job();
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    state.SetIterationTime(took.count());
    total += took.count();
  }
  return total;
}
template <typename Job>
double timed_loop(benchmark::State& state, Job&& job) {
  return timed_loop(state, job, [] {});
}

// Counters of a case that performed `flops` floating-point operations per iteration
// in `seconds` in all: GFLOP/s, the SGEMM peak, and the share of it reached (%peak).
void report_flops(benchmark::State& state, double flops, double seconds);
// ... one that streamed `bytes` per iteration: GB/s (and the peak, for scale).
void report_bytes(benchmark::State& state, double bytes, double seconds);

// The registration every case shares: milliseconds, the loop's own timing.
benchmark::internal::Benchmark* in_ms(benchmark::internal::Benchmark* b);

// One step of the QR method for k Lyapunov exponents at this width: J times k vectors
// (a GEMM), then a QR of width x k (geqrf + orgqr).
double lyapunov_step_flops(int width, int k);

// A float32 chain of `depth` square layers that owns its weights.
struct OwnedChain {
  std::vector<std::vector<float>> w, b;
  pyjac::ChainView<float> view;
};
OwnedChain make_chain(int depth, int width, pyjac::Activation activation, pyjac::Init init,
                      double gain, std::uint64_t seed);

// `count` standard normal float32 numbers from stream `seed`.
std::vector<float> normal_vector(std::size_t count, std::uint64_t seed);

}  // namespace pyjac_bench
