// Training: one epoch of minibatch SGD on a ReLU chain with a cross-entropy loss, with
// the per-step and per-layer records pyjac.train keeps.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "common.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/train/train.hpp"

namespace {

using pyjac_bench::threads;

// The (examples, depth, width, batch) cases of bench/bench_train.py.
void BM_TrainEpoch(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int depth = static_cast<int>(state.range(1));
  const int width = static_cast<int>(state.range(2));
  const int batch = static_cast<int>(state.range(3));
  pyjac_bench::OwnedChain c =
      pyjac_bench::make_chain(depth, width, pyjac::Activation::Relu, pyjac::Init::He, 1.0, 0);
  const auto initial_w = c.w;
  const auto initial_b = c.b;
  const std::vector<float> x = pyjac_bench::normal_vector(std::size_t(n) * width, 6);
  std::vector<std::int64_t> labels(n), order(n);
  pyjac::Rng rng(7, 0);
  for (int i = 0; i < n; ++i) {
    labels[i] = static_cast<std::int64_t>(rng.next() % std::uint64_t(width));
    order[i] = i;
  }
  for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng.next() % std::uint64_t(i + 1)]);

  pyjac::TrainParameters<float> params;
  for (int l = 0; l < depth; ++l) {
    params.weights.push_back(c.w[l].data());
    params.biases.push_back(c.b[l].data());
    params.initial_weights.push_back(initial_w[l].data());
  }
  pyjac::TrainOptions options;
  options.batch_size = batch;
  options.optimizer.lr = 0.01;
  options.n_threads = threads();
  const double seconds = pyjac_bench::timed_loop(
      state,
      [&] {
        auto s = pyjac::train_epoch<float>(c.view, params, x.data(), nullptr, labels.data(),
                                           order.data(), n, options);
        benchmark::DoNotOptimize(s.step_loss.data());
      },
      [&] {  // every epoch starts from the same weights; assignment keeps the buffers
        c.w = initial_w;
        c.b = initial_b;
      });
  pyjac_bench::report_flops(state, 6.0 * n * depth * static_cast<double>(width) * width, seconds);
}
BENCHMARK(BM_TrainEpoch)->Apply([](auto* b) {
  pyjac_bench::in_ms(b->ArgNames({"examples", "depth", "width", "batch"}))
      ->Args({1348, 10, 64, 32})
      ->Args({4096, 10, 256, 128})
      ->Args({4096, 4, 1024, 256});
});

}  // namespace
