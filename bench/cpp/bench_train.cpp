// Training: one epoch of minibatch SGD on a ReLU chain with a cross-entropy loss, and one
// epoch of Adam on an LSTM with a linear readout (the adding problem's shape), with the
// records pyjac.train keeps.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/recurrent/recurrent.hpp"
#include "pyjac/train/train.hpp"
#include "pyjac/train/train_recurrent.hpp"

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

// One epoch of an LSTM (the adding problem's shape: 2 inputs, one output read at the last
// step, mse) trained by Adam, as bench/bench_train_recurrent.py: (sequences, steps, width,
// batch). FLOPs: the recurrent products of the forward and backward passes.
void BM_TrainRecurrentEpoch(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int steps = static_cast<int>(state.range(1));
  const int width = static_cast<int>(state.range(2));
  const int batch = static_cast<int>(state.range(3));
  constexpr int kInputs = 2, kGates = 4;
  const std::size_t rows = std::size_t(kGates) * width;
  std::vector<float> W(rows * width), U(rows * kInputs), b(rows), V(width, 0.0f), c(1, 0.0f);
  pyjac::RecurrentInitOptions init;
  pyjac::init_recurrent<float>(pyjac::Cell::Lstm, width, kInputs, init, W.data(), U.data(),
                               b.data());
  const auto W0 = W, U0 = U, b0 = b, V0 = V;
  const std::vector<float> x = pyjac_bench::normal_vector(std::size_t(n) * steps * kInputs, 8);
  const std::vector<float> y = pyjac_bench::normal_vector(std::size_t(n), 9);
  std::vector<std::int64_t> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::array<std::vector<float>, 5> m, v;
  pyjac::RecurrentTrainParameters<float> p;
  p.params = {W.data(), U.data(), b.data(), V.data(), c.data()};
  const std::array<std::size_t, 5> sizes{W.size(), U.size(), b.size(), V.size(), c.size()};
  for (int k = 0; k < 5; ++k) {
    m[k].assign(sizes[k], 0.0f);
    v[k].assign(sizes[k], 0.0f);
    p.state1[k] = m[k].data();
    p.state2[k] = v[k].data();
  }
  p.initial = {W0.data(), U0.data(), V0.data()};
  pyjac::RecurrentView<float> view;
  view.cell = pyjac::Cell::Lstm;
  view.width = width;
  view.input_size = kInputs;
  view.W = W.data();
  view.U = U.data();
  view.b = b.data();
  pyjac::RecurrentTrainOptions options;
  options.loss = pyjac::Loss::Mse;
  options.batch_size = batch;
  options.optimizer.kind = pyjac::Optimizer::Adam;
  options.optimizer.lr = 1e-3;
  options.n_threads = threads();
  const double seconds = pyjac_bench::timed_loop(
      state,
      [&] {
        auto s = pyjac::train_recurrent_epoch<float>(view, 1, p, x.data(), steps, y.data(),
                                                     nullptr, order.data(), n, options);
        benchmark::DoNotOptimize(s.step_loss.data());
      },
      [&] {  // every epoch starts from the same weights and a fresh Adam state
        W = W0;
        U = U0;
        b = b0;
        V = V0;
        c[0] = 0.0f;
        for (int k = 0; k < 5; ++k) {
          std::fill(m[k].begin(), m[k].end(), 0.0f);
          std::fill(v[k].begin(), v[k].end(), 0.0f);
        }
      });
  pyjac_bench::report_flops(
      state, 6.0 * n * steps * kGates * static_cast<double>(width) * (width + kInputs), seconds);
}
BENCHMARK(BM_TrainRecurrentEpoch)->Apply([](auto* b) {
  pyjac_bench::in_ms(b->ArgNames({"sequences", "steps", "width", "batch"}))
      ->Args({1024, 50, 128, 32})
      ->Args({1024, 100, 256, 64});
});

}  // namespace
