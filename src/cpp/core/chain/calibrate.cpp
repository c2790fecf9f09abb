#include "pyjac/chain/calibrate.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <vector>

#include "chain/chain_common.hpp"
#include "common/layer_grid.hpp"
#include "pyjac/common/blas.hpp"
#include "pyjac/common/threads.hpp"

namespace pyjac {
namespace {

template <typename T>
double best_seconds(int n, int repeats) {
  const std::size_t size = static_cast<std::size_t>(n) * n;
  std::vector<T> a(size), b(size), c(size);
  for (std::size_t i = 0; i < size; ++i) {
    a[i] = static_cast<T>((i % 7) * 0.25 - 0.75);
    b[i] = static_cast<T>((i % 5) * 0.5 - 1.0);
  }
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and threads
    const auto t0 = std::chrono::steady_clock::now();
    blas::gemm(blas::Trans::No, blas::Trans::No, n, n, n, T(1), a.data(), n, b.data(), n, T(0),
               c.data(), n);
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    if (r > 0) best = std::min(best, dt.count());
  }
  return best;
}

}  // namespace

double gemm_gflops(int n, int repeats, int n_threads, bool single) {
  if (n < 1) throw std::invalid_argument("n: must be at least 1");
  if (repeats < 1) throw std::invalid_argument("repeats: must be at least 1");
  BlasThreadScope scope(resolve_threads(n_threads));
  const double seconds = single ? best_seconds<float>(n, repeats) : best_seconds<double>(n, repeats);
  return 2.0 * n * static_cast<double>(n) * n / seconds * 1e-9;
}

double backprop_blas_seconds(int depth, int width, int batch, int repeats, int n_threads) {
  if (depth < 1) throw std::invalid_argument("depth: must be at least 1");
  if (width < 1) throw std::invalid_argument("width: must be at least 1");
  if (batch < 1) throw std::invalid_argument("batch: must be at least 1");
  if (repeats < 1) throw std::invalid_argument("repeats: must be at least 1");
  using blas::Trans;
  const std::size_t slab = static_cast<std::size_t>(batch) * width;
  const std::size_t square = static_cast<std::size_t>(width) * width;
  const bool ghost = detail::ghost_norm_preferred(batch, width, width);
  // Moderate values: what the calls cost does not depend on them, short of subnormals.
  std::vector<float> w(static_cast<std::size_t>(depth) * square), h((depth + 1) * slab),
      u(depth * slab), dz(slab), g(slab), dw(ghost ? 0 : square),
      grams(2 * static_cast<std::size_t>(batch) * batch);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i % 13) * 0.01 - 0.06);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>((i % 7) * 0.25 - 0.75);
  for (std::size_t i = 0; i < slab; ++i) dz[i] = static_cast<float>((i % 5) * 0.5 - 1.0);
  const detail::LayerGrid grid = detail::layer_grid(batch, width, width);
  const detail::LayerGrid dw_grid = detail::layer_grid(width, width, batch);
  const int grams_tasks = ghost ? 2 : 0;
  const int dw_tasks = ghost ? 0 : dw_grid.count();
  const int nt = resolve_threads(n_threads);
  std::vector<double> times;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and threads
    const auto t0 = std::chrono::steady_clock::now();
    BlasThreadScope single(1);
#pragma omp parallel num_threads(nt)
    {
      for (int l = 0; l < depth; ++l) {
        const float* wl = w.data() + l * square;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < grid.count(); ++t) {
          const detail::Tile tile = grid.at(t);
          blas::gemm(Trans::No, Trans::Yes, tile.rows(), tile.cols(), width, 1.0f,
                     h.data() + l * slab + static_cast<std::size_t>(tile.i0) * width, width,
                     wl + static_cast<std::size_t>(tile.j0) * width, width, 1.0f,
                     u.data() + l * slab + static_cast<std::size_t>(tile.i0) * width + tile.j0, width);
        }
      }
      for (int l = depth - 1; l >= 0; --l) {
        const float* wl = w.data() + l * square;
        const float* hl = h.data() + l * slab;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < grams_tasks + dw_tasks + grid.count(); ++task) {
          if (task < grams_tasks) {
            blas::syrk_lower(batch, width, 1.0f, task == 0 ? dz.data() : hl, width, 0.0f,
                             grams.data() + static_cast<std::size_t>(task) * batch * batch, batch);
          } else if (task < grams_tasks + dw_tasks) {
            const detail::Tile tile = dw_grid.at(task - grams_tasks);
            blas::gemm(Trans::Yes, Trans::No, tile.rows(), tile.cols(), batch, 1.0f,
                       dz.data() + tile.i0, width, hl + tile.j0, width, 0.0f,
                       dw.data() + static_cast<std::size_t>(tile.i0) * width + tile.j0, width);
          } else {
            const detail::Tile tile = grid.at(task - grams_tasks - dw_tasks);
            const std::size_t first = static_cast<std::size_t>(tile.i0) * width;
            blas::gemm(Trans::No, Trans::No, tile.rows(), tile.cols(), width, 1.0f,
                       dz.data() + first, width, wl + tile.j0, width, 0.0f,
                       g.data() + first + tile.j0, width);
          }
        }
      }
    }
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    if (r > 0) times.push_back(dt.count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace pyjac
