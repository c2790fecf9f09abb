// C++ unit tests of the core, independent of Python: closed forms the core must meet.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "pyjac/chain/chain.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/chain/precision.hpp"
#include "pyjac/chain/regenerated.hpp"
#include "pyjac/common/draw.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/curvature/curvature.hpp"
#include "pyjac/spectral/lanczos.hpp"
#include "pyjac/train/train.hpp"
#include "common/reduce.hpp"

namespace {

int failures = 0;
int checks = 0;

void check(bool ok, const char* what) {
  ++checks;
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

// A chain's parameters in vectors, drawn by init_chain.
struct StoredParameters {
  std::vector<std::vector<double>> w, b;
  StoredParameters(const std::vector<int>& widths, const pyjac::InitOptions& o) {
    std::vector<double*> wp, bp;
    for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
      w.emplace_back(static_cast<std::size_t>(widths[l]) * widths[l + 1]);
      b.emplace_back(widths[l + 1]);
      wp.push_back(w.back().data());
      bp.push_back(b.back().data());
    }
    pyjac::init_chain<double>(widths, o, wp, bp);
  }
};

// A linear chain of a * (orthogonal) matrices scales the gradient by exactly a per layer.
void test_scaled_orthogonal_chain() {
  const int depth = 40, width = 16, batch = 3;
  const double a = 1.1;
  std::vector<int> widths(depth + 1, width);
  pyjac::InitOptions o;
  o.init = pyjac::Init::Orthogonal;
  o.gain = a;
  o.seed = 5;
  const StoredParameters p(widths, o);
  const auto& w = p.w;
  const auto& b = p.b;
  pyjac::ChainView<double> c;
  c.widths = widths;
  for (int l = 0; l < depth; ++l) {
    c.weights.push_back(w[l].data());
    c.biases.push_back(b[l].data());
    c.activations.push_back(pyjac::Activation::Linear);
  }
  std::vector<double> x(batch * width, 0.0), g(batch * width, 1.0);
  pyjac::BackpropOptions options;
  options.loss = pyjac::Loss::GradOutput;
  const auto s = pyjac::backprop<double>(c, x.data(), batch, g.data(), nullptr, options, {});
  const double g_norm = std::sqrt(static_cast<double>(batch * width));
  for (int l = 0; l <= depth; ++l) {
    const double expected = g_norm * std::pow(a, depth - l);
    check(std::abs(s.grad_norm[l] / expected - 1.0) < 1e-12, "a*Q chain: a**(L-l) decay");
  }
  check(s.first_nonfinite_layer == -1, "a*Q chain stays finite");
}

// The same chain drawn layer by layer (never stored), with checkpoints every 7 layers:
// the same closed form, and weights equal to init_chain's.
void test_regenerated_chain_meets_the_closed_form() {
  const int depth = 40, width = 16, batch = 3;
  const double a = 0.9;
  pyjac::RegeneratedChain spec;
  spec.widths.assign(depth + 1, width);
  spec.init.init = pyjac::Init::Orthogonal;
  spec.init.gain = a;
  spec.init.seed = 5;
  spec.checkpoint_every = 7;
  pyjac::RegeneratedLayers<double> source(spec, 2);
  pyjac::ChainView<double> c;
  c.widths = spec.widths;
  c.weights.assign(depth, nullptr);
  c.biases.assign(depth, nullptr);
  c.activations.assign(depth, pyjac::Activation::Linear);
  c.source = &source;
  std::vector<double> x(batch * width, 0.5), g(batch * width, 1.0);
  pyjac::BackpropOptions options;
  options.loss = pyjac::Loss::GradOutput;
  const auto s = pyjac::backprop<double>(c, x.data(), batch, g.data(), nullptr, options, {});
  const double g_norm = std::sqrt(static_cast<double>(batch * width));
  const double x_norm = 0.5 * g_norm;
  for (int l = 0; l <= depth; ++l) {
    check(std::abs(s.grad_norm[l] / (g_norm * std::pow(a, depth - l)) - 1.0) < 1e-12,
          "regenerated a*Q chain: a**(L-l) gradient");
    check(std::abs(s.activation_norm[l] / (x_norm * std::pow(a, l)) - 1.0) < 1e-12,
          "regenerated a*Q chain: a**l activations");
  }
  // The weight gradient of layer l is dz_l h_(l-1)^T: its norm is at most the product.
  for (int l = 0; l < depth; ++l)
    check(s.weight_grad_norm[l] <= s.grad_norm[l + 1] * s.activation_norm[l] * (1 + 1e-12),
          "regenerated chain: ||dW|| <= ||g|| ||h||");
  const StoredParameters stored(spec.widths, spec.init);
  const auto& w = stored.w;
  bool same = true;
  for (int l : {0, 13, depth - 1}) {
    const double* drawn = source.weights(l);
    for (int k = 0; k < width * width; ++k) same = same && drawn[k] == w[l][k];
  }
  check(same, "regenerated layers equal init_chain's");
  bool refused = false;
  options.keep_grads = true;
  try {
    pyjac::backprop<double>(c, x.data(), batch, g.data(), nullptr, options, {});
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  check(refused, "regenerated chain refuses keep_grads");
}

// A block of a layer drawn alone holds the whole layer's entries there, for every init
// that draws blocks, at odd offsets and widths (a normal pair split across rows).
void test_weight_blocks_equal_the_whole_layer() {
  const int fan_in = 7, fan_out = 5;
  bool same = true;
  for (pyjac::Init init : {pyjac::Init::Gaussian, pyjac::Init::He,
                           pyjac::Init::XavierUniform, pyjac::Init::Identity}) {
    pyjac::InitOptions o;
    o.init = init;
    o.gain = 1.3;
    o.seed = 99;
    std::vector<double> w(fan_in * fan_out), b(fan_out);
    pyjac::init_layer<double>(3, fan_in, fan_out, o, w.data(), b.data(), 1);
    const int blocks[][4] = {{0, 5, 0, 7}, {1, 4, 3, 6}, {2, 5, 1, 2}, {4, 5, 0, 7}};
    for (const auto& k : blocks) {
      const int rows = k[1] - k[0], cols = k[3] - k[2];
      std::vector<double> block(static_cast<std::size_t>(rows) * cols);
      pyjac::init_weight_block<double>(3, fan_in, fan_out, o, k[0], k[1], k[2], k[3],
                                       block.data(), cols);
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
          same = same && block[r * cols + c] == w[(k[0] + r) * fan_in + k[2] + c];
    }
  }
  check(same, "weight blocks drawn alone equal the whole layer's entries");
}

// The float32 Box-Muller against long double, over the radius's whole range: u from
// 2^-32 to 1 - 2^-32 (n = 0 and n = 2^31 - 1), where a rounded u would lose a small
// radius's bits, and every quadrant of the angle.
void test_normal_pairs_against_long_double() {
  double worst = 0.0;
  const std::uint64_t tops[] = {0, 1, 12345, 1u << 30, 0x5A827999, 0x7FFFFF00, 0x7FFFFFFE,
                                0x7FFFFFFF};
  const std::uint32_t angles[] = {0, 1, 0x1FFFFFFF, 0x20000000, 0x3FFFFFFF, 0x40000000,
                                  0x9E3779B9, 0xC0000001, 0xFFFFFFFF};
  for (std::uint64_t top : tops)
    for (std::uint32_t angle : angles) {
      const std::uint64_t x = (top << 33) | angle;
      double first, second;
      pyjac::normal_pair(x, first, second);
      const long double u = (static_cast<long double>(top) + 0.5L) * std::ldexp(1.0L, -31);
      const long double r = std::sqrt(-2.0L * std::log(u));
      const long double t = 6.283185307179586476925L * angle * std::ldexp(1.0L, -32);
      const long double e = std::max(std::fabs(first - r * std::cos(t)),
                                     std::fabs(second - r * std::sin(t)));
      worst = std::max(worst, static_cast<double>(e / r));
    }
  check(worst < 4e-7, "normal pairs within 4e-7 of long double, relative to the radius");
  // The vector clone that fill_normals runs and the scalar code behind Rng::normal give
  // the same bits, from any starting entry.
  pyjac::Rng rng(7, 3);
  const std::uint64_t state = rng.state();
  std::vector<double> sequential(1001), filled(1001), from_odd(1000);
  for (double& v : sequential) v = rng.normal();
  pyjac::fill_normals(state, 0, filled.size(), 1.0, filled.data());
  pyjac::fill_normals(state, 1, from_odd.size(), 1.0, from_odd.data());
  bool same = filled == sequential;
  for (std::size_t i = 0; i < from_odd.size(); ++i) same = same && from_odd[i] == sequential[i + 1];
  check(same, "fill_normals (vector) equals Rng::normal (scalar) bit for bit, from any entry");
}

// One linear layer under 0.5 ||X W^T + 1 b^T||^2: the Hessian is the Gram matrix of the
// inputs (with a 1 for the bias) on each output unit, H (V, c) = ((X V^T + 1 c^T)^T X,
// column sums of X V^T + 1 c^T), and it has no other terms.
void test_linear_layer_hessian_is_the_input_gram() {
  const int batch = 4, n_in = 3, n_out = 2;
  std::vector<double> w = {0.3, -0.2, 0.5, 0.1, 0.4, -0.6}, b = {0.1, -0.3};
  std::vector<double> x = {1, 2, 0.5, -1, 0.3, 0.7, 0.2, -0.4, 1.5, 0.9, 0.1, -0.8};
  pyjac::ChainView<double> c;
  c.widths = {n_in, n_out};
  c.weights = {w.data()};
  c.biases = {b.data()};
  c.activations = {pyjac::Activation::Linear};
  for (auto kind : {pyjac::CurvatureKind::Hessian, pyjac::CurvatureKind::GaussNewton}) {
    pyjac::ChainCurvature<double> h(c, x.data(), batch, nullptr, nullptr,
                                    pyjac::Loss::SumSquares, kind, 2);
    std::vector<double> v = {0.2, 1.0, -0.5, 0.7, -0.1, 0.3, 0.4, -0.9}, out(8);
    h.product(-1, v.data(), out.data());
    double worst = 0.0;
    std::vector<double> r(batch * n_out);
    for (int i = 0; i < batch; ++i)
      for (int o = 0; o < n_out; ++o) {
        double s = v[6 + o];
        for (int j = 0; j < n_in; ++j) s += x[i * n_in + j] * v[o * n_in + j];
        r[i * n_out + o] = s;
      }
    for (int o = 0; o < n_out; ++o) {
      double bias = 0.0;
      for (int i = 0; i < batch; ++i) bias += r[i * n_out + o];
      worst = std::max(worst, std::abs(out[6 + o] - bias));
      for (int j = 0; j < n_in; ++j) {
        double s = 0.0;
        for (int i = 0; i < batch; ++i) s += r[i * n_out + o] * x[i * n_in + j];
        worst = std::max(worst, std::abs(out[o * n_in + j] - s));
      }
    }
    check(worst < 1e-13, "linear layer: H v is the input Gram times v");
  }
}

// Lanczos, Hutch++ and quadrature on diag(1, 2, ..., n): known eigenvalues and trace.
void test_lanczos_on_a_diagonal_operator() {
  const int n = 50;
  pyjac::SymmetricProduct diag = [](const double* v, double* out) {
    for (int i = 0; i < n; ++i) out[i] = (i + 1) * v[i];
  };
  pyjac::LanczosOptions o;
  o.k = 2;
  o.which = pyjac::EigenWhich::Both;
  o.tol = 1e-10;
  const auto r = pyjac::lanczos_eigen(n, diag, o);
  check(r.converged && r.values.size() == 4, "Lanczos converges on diag(1..n)");
  const double expected[] = {1, 2, n - 1, n};
  bool close = true;
  for (int i = 0; i < 4; ++i) close = close && std::abs(r.values[i] - expected[i]) < 1e-8;
  check(close, "Lanczos: the two smallest and two largest of diag(1..n)");
  pyjac::TraceOptions t;
  t.products = 3 * n;
  const auto tr = pyjac::trace_estimate(n, diag, t);
  check(std::abs(tr.trace - n * (n + 1) / 2.0) < 1e-9, "Hutch++ with 3n products is exact");
  // Terms near 1e200 (their squares overflow): the standard error stays finite and
  // scales with the operator. A ring coupling makes the random terms differ (with a
  // diagonal operator every sign vector gives the trace exactly).
  pyjac::SymmetricProduct ring = [](const double* v, double* out) {
    for (int i = 0; i < n; ++i) out[i] = (i + 1) * v[i] + v[(i + 1) % n] + v[(i + n - 1) % n];
  };
  pyjac::SymmetricProduct huge = [&](const double* v, double* out) {
    ring(v, out);
    for (int i = 0; i < n; ++i) out[i] *= 1e200;
  };
  pyjac::TraceOptions plain;
  plain.products = 20;
  plain.hutchpp = false;
  const auto small = pyjac::trace_estimate(n, ring, plain);
  const auto large = pyjac::trace_estimate(n, huge, plain);
  check(std::isfinite(large.standard_error) &&
            std::abs(large.standard_error / (1e200 * small.standard_error) - 1) < 1e-12,
        "trace standard error exact for terms near 1e200");
  pyjac::QuadratureOptions q;
  q.vectors = 3;
  q.steps = n;
  const auto quad = pyjac::spectral_quadrature(n, diag, q);
  double first = 0.0;
  for (int i = 0; i < n; ++i) first += quad.weights[i];
  check(std::abs(first - 1.0) < 1e-12, "quadrature weights sum to 1");
}

void test_bad_input_throws() {
  pyjac::ChainView<float> c;  // depth 0
  bool threw = false;
  try {
    c.validate();
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "empty chain is rejected with std::invalid_argument");
  threw = false;
  try {
    (void)pyjac::parse_activation("swish");
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  check(threw, "unknown activation is rejected");
}

// float16's edges: the largest finite value, the overflow threshold, the smallest
// subnormal and ties to even (2^-25 -> 0, 1.5 quanta 3 * 2^-25 -> 2 quanta).
void test_float16_rounding() {
  std::vector<double> v{65504.0, 65519.0, 65520.0, std::ldexp(1.0, -24), std::ldexp(1.0, -25),
                        3 * std::ldexp(1.0, -25), 1.0 + std::ldexp(1.0, -11), -0.0};
  const auto counts = pyjac::round_to_format(v.data(), v.size(), pyjac::GradFormat::Float16, 1);
  check(v[0] == 65504.0 && v[1] == 65504.0, "float16: below the threshold rounds to 65504");
  check(std::isinf(v[2]), "float16: 65520 overflows");
  check(v[3] == std::ldexp(1.0, -24), "float16: smallest subnormal is kept");
  check(v[4] == 0.0, "float16: half the smallest subnormal ties to zero");
  check(v[5] == std::ldexp(1.0, -23), "float16: 1.5 quanta ties to the even 2 quanta");
  check(v[6] == 1.0, "float16: 1 + 2^-11 ties to 1");
  check(counts.underflow == 1 && counts.overflow == 1 && counts.zeros == 2,
        "float16: one underflow, one overflow, two zeros");
}

// SGD through the core: a one-layer linear chain fitting y = 2x by mse converges.
void test_train_epoch_fits_a_line() {
  std::vector<double> w{0.0}, b{0.0}, w0{0.0};
  pyjac::ChainView<double> c;
  c.widths = {1, 1};
  c.weights = {w.data()};
  c.biases = {b.data()};
  c.activations = {pyjac::Activation::Linear};
  pyjac::TrainParameters<double> p;
  p.weights = {w.data()};
  p.biases = {b.data()};
  p.initial_weights = {w0.data()};
  std::vector<double> x{-1.0, -0.5, 0.5, 1.0}, y{-2.0, -1.0, 1.0, 2.0};
  std::vector<std::int64_t> order{0, 1, 2, 3};
  pyjac::TrainOptions o;
  o.loss = pyjac::Loss::Mse;
  o.batch_size = 4;
  o.optimizer.lr = 0.5;
  for (int epoch = 0; epoch < 200; ++epoch)
    (void)pyjac::train_epoch<double>(c, p, x.data(), y.data(), nullptr, order.data(), 4, o);
  check(std::abs(w[0] - 2.0) < 1e-9 && std::abs(b[0]) < 1e-9, "SGD fits y = 2x");
}

// Adam's first step is lr g / (|g| + eps) whatever g's size (bias correction undoes the
// moments' zero start): a gradient of 1e-30 moves its weight as far as one of 1e30.
void test_adam_first_step_is_lr_times_sign() {
  std::vector<double> p{1.0, 1.0, 1.0}, m(3, 0.0), v(3, 0.0), g{1e-30, -1e30, 0.0};
  pyjac::OptimizerOptions o;
  o.kind = pyjac::Optimizer::Adam;
  o.lr = 0.01;
  o.eps = 0.0;
  (void)pyjac::optimizer_step(p.data(), m.data(), v.data(), g.data(), 3, o, 1,
                              pyjac::ClipKind::None, 0.0, 1.0, 1);
  check(std::abs(p[0] - 0.99) < 1e-15 && std::abs(p[1] - 1.01) < 1e-15,
        "Adam's first step is lr times the gradient's sign");
  check(std::isnan(p[2]), "Adam with eps 0 and a zero gradient divides 0 by 0, as PyTorch does");
}

// A tanh chain deep enough to run many layers in the tiled OpenMP region.
struct DeepChain {
  int depth, width, batch = 32;
  std::vector<std::vector<float>> w, b;
  pyjac::ChainView<float> view;
  std::vector<float> x;
  explicit DeepChain(int depth_ = 400, int width_ = 64)
      : depth(depth_), width(width_), w(depth, std::vector<float>(width * width)),
        b(depth, std::vector<float>(width)) {
    std::vector<int> widths(depth + 1, width);
    std::vector<float*> wp, bp;
    for (int l = 0; l < depth; ++l) {
      wp.push_back(w[l].data());
      bp.push_back(b[l].data());
    }
    pyjac::InitOptions o;
    o.init = pyjac::Init::Gaussian;
    pyjac::init_chain<float>(widths, o, wp, bp);
    view.widths = widths;
    for (int l = 0; l < depth; ++l) {
      view.weights.push_back(w[l].data());
      view.biases.push_back(b[l].data());
      view.activations.push_back(pyjac::Activation::Tanh);
    }
    x.assign(static_cast<std::size_t>(batch) * width, 0.5f);
  }
  pyjac::BackpropStats run(int n_threads) const {
    pyjac::BackpropOptions options;
    options.n_threads = n_threads;
    return pyjac::backprop<float>(view, x.data(), batch, nullptr, nullptr, options, {});
  }
};

// An exception thrown by the interrupt check, which thread 0 calls inside the tiled
// pass's OpenMP region, reaches the caller intact (and the process survives).
void test_exception_in_parallel_region_reaches_the_caller() {
  static const DeepChain chain(3000, 128);  // long enough (> 20 ms) to be polled
  for (int threads : {1, 2, 4}) {
    bool caught = false;
    try {
      pyjac::ScopedInterruptCheck check([]() -> bool { throw std::runtime_error("boom"); });
      (void)chain.run(threads);
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "boom";
    }
    check(caught, "an exception from inside an OpenMP region reaches the caller");
  }
}

// A check that says stop makes backprop throw Interrupted; without a check it finishes.
void test_interrupt_stops_backprop() {
  static const DeepChain chain(3000, 128);  // long enough (> 20 ms) to be polled
  int calls = 0;
  bool interrupted = false;
  const auto start = std::chrono::steady_clock::now();
  try {
    pyjac::ScopedInterruptCheck check([&calls] { return ++calls >= 2; });
    (void)chain.run(2);
  } catch (const pyjac::Interrupted&) {
    interrupted = true;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  check(interrupted && calls == 2, "a check that says stop interrupts backprop");
  check(seconds < 0.5, "the interrupted pass stops within 0.5 s");
  const auto s = chain.run(2);
  check(s.first_nonfinite_layer == -1 && std::isfinite(s.grad_norm[0]),
        "without a check the pass runs to the end");
}

// The scaled norm helper against closed forms across the double range.
void test_scaled_norm_extremes() {
  for (double scale : {1e-310, 1e-300, 1e-160, 1.0, 1e160, 1e300}) {
    pyjac::detail::ScaledNorm acc;
    for (int i = 0; i < 16; ++i) acc.add(scale);  // norm = 4 * scale
    check(std::abs(acc.value() / (4 * scale) - 1.0) < 1e-14, "ScaledNorm: 16 equal values");
    std::vector<double> v(9, scale);
    check(std::abs(pyjac::detail::vector_norm(v.data(), v.size()) / (3 * scale) - 1.0) < 1e-14,
          "vector_norm: 9 equal values");
  }
  pyjac::detail::ScaledNorm with_inf;
  with_inf.add(1.0);
  with_inf.add(INFINITY);
  check(std::isinf(with_inf.value()) && !with_inf.finite(), "ScaledNorm: inf is inf");
  with_inf.add(NAN);
  check(std::isnan(with_inf.value()), "ScaledNorm: NaN wins");
  std::vector<double> huge{1e307, 1e307, -1e307, 1e307};
  const auto f = pyjac::detail::frobenius_norm(huge.data(), 2, 2, 1);
  check(f.finite && std::abs(f.norm / 2e307 - 1.0) < 1e-15, "frobenius_norm past overflow");
}

}  // namespace

int main() {
  test_scaled_orthogonal_chain();
  test_regenerated_chain_meets_the_closed_form();
  test_weight_blocks_equal_the_whole_layer();
  test_normal_pairs_against_long_double();
  test_linear_layer_hessian_is_the_input_gram();
  test_lanczos_on_a_diagonal_operator();
  test_bad_input_throws();
  test_float16_rounding();
  test_train_epoch_fits_a_line();
  test_adam_first_step_is_lr_times_sign();
  test_exception_in_parallel_region_reaches_the_caller();
  test_interrupt_stops_backprop();
  test_scaled_norm_extremes();
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
