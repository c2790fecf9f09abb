// C++ unit tests of the core, independent of Python: closed forms the core must meet.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "pyjac/chain.hpp"
#include "pyjac/init.hpp"

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

// A linear chain of a * (orthogonal) matrices scales the gradient by exactly a per layer.
void test_scaled_orthogonal_chain() {
  const int depth = 40, width = 16, batch = 3;
  const double a = 1.1;
  std::vector<int> widths(depth + 1, width);
  std::vector<std::vector<double>> w(depth, std::vector<double>(width * width)),
      b(depth, std::vector<double>(width));
  std::vector<double*> wp, bp;
  for (int l = 0; l < depth; ++l) {
    wp.push_back(w[l].data());
    bp.push_back(b[l].data());
  }
  pyjac::InitOptions o;
  o.init = pyjac::Init::Orthogonal;
  o.gain = a;
  o.seed = 5;
  pyjac::init_chain<double>(widths, o, wp, bp);
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

}  // namespace

int main() {
  test_scaled_orthogonal_chain();
  test_bad_input_throws();
  std::printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
