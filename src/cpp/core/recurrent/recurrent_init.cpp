// Cell names, parameter checks, seeded initialisation and spectral-radius scaling.
#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/haar.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/chain/init.hpp"
#include "pyjac/recurrent/recurrent.hpp"
#include "pyjac/spectral/spectral.hpp"
#include "pyjac/common/rng.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

constexpr std::array<std::pair<const char*, Cell>, 6> kCells{{
    {"linear", Cell::Linear},
    {"tanh", Cell::Tanh},
    {"relu", Cell::Relu},
    {"sigmoid", Cell::Sigmoid},
    {"lstm", Cell::Lstm},
    {"gru", Cell::Gru},
}};

// Streams: gate block k of W draws from 2k, of U from 2k + 1, so adding an input
// does not change W.
constexpr std::uint64_t w_stream(int block) { return 2 * static_cast<std::uint64_t>(block); }
constexpr std::uint64_t u_stream(int block) { return w_stream(block) + 1; }

// One (n x n) block of W in double.
void draw_block(int n, const RecurrentInitOptions& o, Rng& rng, std::vector<double>& w) {
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  switch (o.init) {
    case Init::Orthogonal: {
      detail::haar_orthogonal(n, n, rng, w);
      for (double& v : w) v *= o.gain;
      return;
    }
    case Init::Identity:
      w.assign(nn, 0.0);
      for (int i = 0; i < n; ++i) w[static_cast<std::size_t>(i) * n + i] = o.gain;
      return;
    case Init::XavierUniform: {
      w.resize(nn);
      const double bound = o.gain * std::sqrt(3.0 / n);  // var 2/(n+n) = 1/n
      for (double& v : w) v = bound * (2.0 * rng.uniform() - 1.0);
      return;
    }
    default: {
      w.resize(nn);
      const double stddev = init_stddev(o.init, o.gain, n, n);
      for (double& v : w) v = stddev * rng.normal();
      return;
    }
  }
}

}  // namespace

Cell parse_cell(const std::string& name) {
  for (const auto& [key, value] : kCells)
    if (name == key) return value;
  std::string valid;
  for (const auto& entry : kCells)
    valid += std::string(valid.empty() ? "" : ", ") + '"' + entry.first + '"';
  throw std::invalid_argument("cell: unknown name \"" + name + "\"; expected one of " + valid);
}

const char* cell_name(Cell c) {
  for (const auto& [key, value] : kCells)
    if (value == c) return key;
  return "?";
}

int cell_gates(Cell c) {
  switch (c) {
    case Cell::Lstm:
      return 4;
    case Cell::Gru:
      return 3;
    default:
      return 1;
  }
}

template <typename T>
void RecurrentView<T>::validate() const {
  if (width < 1) throw std::invalid_argument("width: must be at least 1");
  if (input_size < 0) throw std::invalid_argument("input_size: must be at least 0");
  if (!W) throw std::invalid_argument("W: missing");
  if (!b) throw std::invalid_argument("b: missing");
  if (input_size > 0 && !U) throw std::invalid_argument("U: missing");
}

template <typename T>
void init_recurrent(Cell cell, int width, int input_size, const RecurrentInitOptions& o, T* W,
                    T* U, T* b) {
  if (width < 1) throw std::invalid_argument("width: must be at least 1");
  if (input_size < 0) throw std::invalid_argument("input_size: must be at least 0");
  const int G = cell_gates(cell), n = width, m = input_size;
  const std::size_t nn = static_cast<std::size_t>(n) * n;
  // Blocks are independent and each has its own stream: parallel over blocks with
  // single-threaded LAPACK inside gives the same numbers at any thread count.
  BlasThreadScope blas_scope(1);
  std::exception_ptr error;
#pragma omp parallel for num_threads(std::min(G, max_threads())) schedule(static, 1)
  for (int k = 0; k < G; ++k) {
    try {
      Rng rng(o.seed, w_stream(k));
      std::vector<double> w;
      draw_block(n, o, rng, w);
      if (o.spectral_radius >= 0) {
        const double rho = spectral_radius(w.data(), n);
        if (!(rho > 0))
          throw std::invalid_argument(
              "spectral_radius: W has spectral radius 0 and cannot be rescaled");
        const double scale = o.spectral_radius / rho;
        for (double& v : w) v *= scale;
      }
      T* dst = W + static_cast<std::size_t>(k) * nn;
      for (std::size_t i = 0; i < nn; ++i) dst[i] = static_cast<T>(w[i]);
      if (m > 0) {
        Rng urng(o.seed, u_stream(k));
        const double stddev = 1.0 / std::sqrt(static_cast<double>(m));
        T* udst = U + static_cast<std::size_t>(k) * n * m;
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) * m; ++i)
          udst[i] = static_cast<T>(stddev * urng.normal());
      }
      const bool forget = cell == Cell::Lstm && k == 1;
      for (int i = 0; i < n; ++i)
        b[static_cast<std::size_t>(k) * n + i] = static_cast<T>(forget ? o.forget_bias : 0.0);
    } catch (...) {
#pragma omp critical(pyjac_recurrent_init_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

template struct RecurrentView<float>;
template struct RecurrentView<double>;
template void init_recurrent<float>(Cell, int, int, const RecurrentInitOptions&, float*, float*,
                                    float*);
template void init_recurrent<double>(Cell, int, int, const RecurrentInitOptions&, double*,
                                     double*, double*);

}  // namespace pyjac
