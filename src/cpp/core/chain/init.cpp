#include "pyjac/chain/init.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/haar.hpp"
#include "pyjac/common/interrupt.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

// Streams: layer l's weights use 2*l, its biases 2*l + 1.
constexpr std::uint64_t weight_stream(int layer) { return 2 * static_cast<std::uint64_t>(layer); }
constexpr std::uint64_t bias_stream(int layer) { return weight_stream(layer) + 1; }

using detail::haar_orthogonal;

// Entries [0, n) of a layer, shared among nt threads in fixed chunks: fill(k0, k1)
// draws entries [k0, k1) of the layer's stream directly (the stream is a counter), so
// the entries are those of one sequential pass whatever nt is.
constexpr std::size_t kChunk = 1 << 14;  // even: a normal pair never straddles two chunks

template <typename Fill>
void in_chunks(std::size_t n, int nt, Fill fill) {
  const long long chunks = static_cast<long long>((n + kChunk - 1) / kChunk);
  auto one = [&](long long c) {
    const std::size_t k0 = static_cast<std::size_t>(c) * kChunk;
    fill(k0, std::min(n, k0 + kChunk));
  };
  if (nt > 1 && chunks > 1) {
    TeamInterrupt interrupt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long long c = 0; c < chunks; ++c)
      if (!interrupt.requested()) one(c);
    interrupt.rethrow();
  } else {
    for (long long c = 0; c < chunks; ++c) one(c);
  }
}

// Entries [k0, k0 + count) of a layer's weights in row-major order (entry k is
// W[k / fan_in, k % fan_in]), for every init that defines an entry alone (all but the
// orthogonal one): init_layer fills a layer in chunks of them, init_weight_block a block
// in runs of one row, so both give the same numbers by construction.
template <typename T>
void draw_entries(const InitOptions& o, int fan_in, int fan_out, const Rng& rng,
                  std::size_t k0, std::size_t count, T* out) {
  switch (o.init) {
    case Init::Identity: {
      std::size_t row = k0 / fan_in, col = k0 % fan_in;
      for (std::size_t i = 0; i < count; ++i) {
        out[i] = static_cast<T>(row == col ? o.gain : 0.0);
        if (++col == static_cast<std::size_t>(fan_in)) col = 0, ++row;
      }
      break;
    }
    case Init::XavierUniform: {
      const double bound = o.gain * std::sqrt(6.0 / (fan_in + fan_out));
      Rng local = rng.skipped(k0);  // one output per entry
      for (std::size_t i = 0; i < count; ++i)
        out[i] = static_cast<T>(bound * (2.0 * local.uniform() - 1.0));
      break;
    }
    default:
      fill_normals(rng.state(), k0, count, init_stddev(o.init, o.gain, fan_in, fan_out), out);
  }
}

}  // namespace

template <typename T>
void init_layer(int layer, int fan_in, int fan_out, const InitOptions& o, T* w, T* b, int nt) {
  const std::size_t n = static_cast<std::size_t>(fan_in) * fan_out;
  Rng rng(o.seed, weight_stream(layer));
  switch (o.init) {
    case Init::Orthogonal: {
      BlasThreadScope blas_scope(nt);
      std::vector<double> q;
      haar_orthogonal(fan_out, fan_in, rng, q);
      for (std::size_t i = 0; i < n; ++i) w[i] = static_cast<T>(o.gain * q[i]);
      break;
    }
    default:
      in_chunks(n, nt, [&](std::size_t k0, std::size_t k1) {
        draw_entries(o, fan_in, fan_out, rng, k0, k1 - k0, w + k0);
      });
  }
  init_biases(layer, fan_out, o, b);
}

template <typename T>
void init_biases(int layer, int fan_out, const InitOptions& o, T* b) {
  Rng bias_rng(o.seed, bias_stream(layer));
  for (int i = 0; i < fan_out; ++i)
    b[i] = o.bias_std > 0 ? static_cast<T>(o.bias_std * bias_rng.normal()) : T(0);
}

bool draws_weight_blocks(Init init) { return init != Init::Orthogonal; }

template <typename T>
void init_weight_block(int layer, int fan_in, int fan_out, const InitOptions& o, int r0, int r1,
                       int c0, int c1, T* out, std::size_t ld) {
  if (!draws_weight_blocks(o.init))
    throw std::invalid_argument("init_weight_block: the orthogonal init draws whole layers");
  const Rng rng(o.seed, weight_stream(layer));
  for (int r = r0; r < r1; ++r)  // W[r, c0:c1] is entries r fan_in + c0 ... on
    draw_entries(o, fan_in, fan_out, rng, static_cast<std::size_t>(r) * fan_in + c0,
                 static_cast<std::size_t>(c1 - c0), out + static_cast<std::size_t>(r - r0) * ld);
}

double init_stddev(Init init, double gain, int fan_in, int fan_out) {
  return std::abs(gain) * std::sqrt(init_sigma_w2(init, 1.0, fan_in, fan_out) / fan_in);
}

double init_sigma_w2(Init init, double gain, int fan_in, int fan_out) {
  const double g2 = gain * gain;
  switch (init) {
    case Init::Gaussian:
      return g2;
    case Init::Xavier:
    case Init::XavierUniform:
      return g2 * 2.0 * fan_in / (fan_in + fan_out);
    case Init::He:
      return g2 * 2.0;
    case Init::Orthogonal:
      // Haar rows/columns have unit norm: Var(W_ij) = 1/max(fan_in, fan_out).
      return g2 * fan_in / std::max(fan_in, fan_out);
    case Init::Identity:
      return g2;
  }
  return g2;
}

template <typename T>
void init_chain(const std::vector<int>& widths, const InitOptions& options,
                const std::vector<T*>& weights, const std::vector<T*>& biases) {
  const int depth = static_cast<int>(widths.size()) - 1;
  if (depth < 1 || static_cast<int>(weights.size()) != depth ||
      static_cast<int>(biases.size()) != depth)
    throw std::invalid_argument("init_chain: widths, weights and biases do not match");
  const int n_threads = resolve_threads(options.n_threads);
  // Layers are independent and each has its own stream: parallel over layers with
  // single-threaded LAPACK inside gives the same numbers at any thread count.
  BlasThreadScope blas_scope(1);
  std::exception_ptr error;
  TeamInterrupt interrupt;  // no barriers: every thread skips the layers left
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
  for (int l = 0; l < depth; ++l) {
    if (interrupt.requested()) continue;
    try {
      init_layer(l, widths[l], widths[l + 1], options, weights[l], biases[l], 1);
    } catch (...) {
#pragma omp critical(pyjac_init_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  interrupt.rethrow();
}

template void init_layer<float>(int, int, int, const InitOptions&, float*, float*, int);
template void init_biases<float>(int, int, const InitOptions&, float*);
template void init_biases<double>(int, int, const InitOptions&, double*);
template void init_weight_block<float>(int, int, int, const InitOptions&, int, int, int, int,
                                       float*, std::size_t);
template void init_weight_block<double>(int, int, int, const InitOptions&, int, int, int, int,
                                        double*, std::size_t);
template void init_layer<double>(int, int, int, const InitOptions&, double*, double*, int);
template void init_chain<float>(const std::vector<int>&, const InitOptions&,
                                const std::vector<float*>&, const std::vector<float*>&);
template void init_chain<double>(const std::vector<int>&, const InitOptions&,
                                 const std::vector<double*>&, const std::vector<double*>&);

}  // namespace pyjac
