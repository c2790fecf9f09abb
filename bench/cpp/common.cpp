#include "common.hpp"

#include "pyjac/chain/calibrate.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/common/rng.hpp"

namespace pyjac_bench {
namespace {
int g_threads = -1;
}  // namespace

int threads() { return g_threads; }
void set_threads(int n) { g_threads = n; }

double sgemm_peak_gflops() {
  static const double peak = pyjac::gemm_gflops(2048, 3, g_threads, true);
  return peak;
}

void report_flops(benchmark::State& state, double flops, double seconds) {
  const double peak = sgemm_peak_gflops();
  const double gflops = seconds > 0 ? flops * double(state.iterations()) / seconds * 1e-9 : 0.0;
  state.counters["GFLOP/s"] = gflops;
  state.counters["%peak"] = 100.0 * gflops / peak;
  state.counters["peak_GFLOP/s"] = peak;
}

void report_bytes(benchmark::State& state, double bytes, double seconds) {
  const double rate = seconds > 0 ? bytes * double(state.iterations()) / seconds * 1e-9 : 0.0;
  state.counters["GB/s"] = rate;
  state.counters["peak_GFLOP/s"] = sgemm_peak_gflops();
}

benchmark::internal::Benchmark* in_ms(benchmark::internal::Benchmark* b) {
  return b->Unit(benchmark::kMillisecond)->UseManualTime();
}

double lyapunov_step_flops(int width, int k) {
  const double n = width, kk = k;
  return 2.0 * n * n * kk + 4.0 * n * kk * kk - 4.0 / 3.0 * kk * kk * kk;
}

OwnedChain make_chain(int depth, int width, pyjac::Activation activation, pyjac::Init init,
                      double gain, std::uint64_t seed) {
  OwnedChain c;
  const std::vector<int> widths(depth + 1, width);
  c.w.assign(depth, std::vector<float>(static_cast<std::size_t>(width) * width));
  c.b.assign(depth, std::vector<float>(width));
  std::vector<float*> wp, bp;
  for (int l = 0; l < depth; ++l) {
    wp.push_back(c.w[l].data());
    bp.push_back(c.b[l].data());
  }
  pyjac::InitOptions o;
  o.init = init;
  o.gain = gain;
  o.seed = seed;
  pyjac::init_chain<float>(widths, o, wp, bp);
  c.view.widths = widths;
  for (int l = 0; l < depth; ++l) {
    c.view.weights.push_back(c.w[l].data());
    c.view.biases.push_back(c.b[l].data());
    c.view.activations.push_back(activation);
  }
  return c;
}

std::vector<float> normal_vector(std::size_t count, std::uint64_t seed) {
  std::vector<float> v(count);
  pyjac::Rng rng(seed, 0);
  for (float& e : v) e = static_cast<float>(rng.normal());
  return v;
}

}  // namespace pyjac_bench
