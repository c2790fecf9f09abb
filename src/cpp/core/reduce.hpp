// Deterministic reductions: partial sums per row in parallel, then a serial sum in
// a fixed order, so the result is the same at every thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace pyjac::detail {

// Below this many elements a parallel region costs more than it saves.
inline constexpr std::size_t kParallelThreshold = 1 << 13;

inline bool worth_parallel(std::size_t work) { return work >= kParallelThreshold; }

// body(i) for i = 0..n-1: statically shared out by OpenMP when `parallel` (and more than
// one thread), else a plain loop. Not an `if` clause: a region whose if-clause is false
// still starts a one-thread team, and libgomp's futex wake there costs more than the
// small loops it guards (a thousand-layer chain crosses thousands of them per pass).
template <typename Index, typename Body>
inline void parallel_for(Index n, int n_threads, bool parallel, Body&& body) {
  if (parallel && n_threads > 1 && n > 1) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (Index i = 0; i < n; ++i) body(i);
  } else {
    for (Index i = 0; i < n; ++i) body(i);
  }
}

// Sums in double with four interleaved accumulators: a fixed order (so results do not
// depend on threads or call sites) that the compiler can pipeline and vectorise, which
// a single running IEEE sum forbids it to do.
template <typename T>
inline double row_sum_squares(const T* x, std::size_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    a0 += static_cast<double>(x[j]) * x[j];
    a1 += static_cast<double>(x[j + 1]) * x[j + 1];
    a2 += static_cast<double>(x[j + 2]) * x[j + 2];
    a3 += static_cast<double>(x[j + 3]) * x[j + 3];
  }
  for (; j < n; ++j) a0 += static_cast<double>(x[j]) * x[j];
  return (a0 + a1) + (a2 + a3);
}

template <typename T>
inline double row_sum(const T* x, std::size_t n) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  std::size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    a0 += x[j];
    a1 += x[j + 1];
    a2 += x[j + 2];
    a3 += x[j + 3];
  }
  for (; j < n; ++j) a0 += x[j];
  return (a0 + a1) + (a2 + a3);
}

// sum_ij G_ij K_ij for two symmetric (n x n) Gram matrices of which only the lower
// triangles (diagonal included) are filled: ||A^T B||_F^2 when G = A A^T and K = B B^T
// (the "ghost norm"). In double, diagonal and off-diagonal parts summed separately.
template <typename T>
inline double lower_gram_contraction(const T* g, const T* k, int n) {
  double diag = 0.0, off = 0.0;
  for (int i = 0; i < n; ++i) {
    const std::size_t r = static_cast<std::size_t>(i) * n;
    diag += static_cast<double>(g[r + i]) * k[r + i];
    for (int j = 0; j < i; ++j) off += static_cast<double>(g[r + j]) * k[r + j];
  }
  return diag + 2.0 * off;
}

// Exponent e such that 2^-e * norm is near 1, when the Gram matrix of a matrix of this
// Frobenius norm would overflow or underflow in T (the ghost norm of a vanishing float32
// gradient underflows to 0 otherwise); 0 when it is safe, 0 or not finite.
template <typename T>
int gram_exponent(double norm) {
  constexpr int kSafe = std::is_same_v<T, float> ? 30 : 200;
  if (!(norm > 0.0) || !std::isfinite(norm)) return 0;
  int e = 0;
  std::frexp(norm, &e);
  return (e > kSafe || e < -kSafe) ? e : 0;
}

// a (n entries) times 2^-e into out (exact: a power of two), or a itself when e is 0.
template <typename T>
const T* scaled_copy(const T* a, std::size_t n, int e, T* out) {
  if (e == 0) return a;
  const double f = std::ldexp(1.0, -e);
  for (std::size_t k = 0; k < n; ++k) out[k] = static_cast<T>(static_cast<double>(a[k]) * f);
  return out;
}

// sqrt(sum_sq) * 2^exponent for a contraction of scaled Grams; NaN stays NaN.
inline double ghost_norm_value(double sum_sq, int exponent) {
  if (std::isnan(sum_sq)) return sum_sq;
  return std::ldexp(std::sqrt(std::max(0.0, sum_sq)), exponent);
}

// float64 entries below ~1e-154 square to (sub)normal-range underflow in double: a sum
// of squares this small may have lost them (float32 squares never underflow in double).
template <typename T>
inline bool squares_may_underflow(double sum_sq) {
  return sizeof(T) == sizeof(double) && sum_sq < 0x1p-900;
}

struct NormResult {
  double norm;
  bool finite;  // every element finite
};

// Frobenius norm of a (rows x cols) row-major block, accumulated in double. When the
// sum of squares overflows although every element is finite (float64 values beyond
// 1e154), it is recomputed with scaling so the norm stays exact.
template <typename T>
NormResult frobenius_norm(const T* a, std::size_t rows, std::size_t cols, int n_threads,
                          double* row_sq = nullptr) {
  std::vector<double> local;
  if (!row_sq) {
    local.resize(rows);
    row_sq = local.data();
  }
  parallel_for(static_cast<long long>(rows), n_threads, worth_parallel(rows * cols),
               [&](long long i) {
                 row_sq[i] = row_sum_squares(a + static_cast<std::size_t>(i) * cols, cols);
               });
  double total = 0.0;
  for (std::size_t i = 0; i < rows; ++i) total += row_sq[i];
  if (std::isfinite(total) && !squares_may_underflow<T>(total)) return {std::sqrt(total), true};
  const std::size_t n = rows * cols;
  double scale = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(static_cast<double>(a[i])))
      return {std::isnan(static_cast<double>(a[i])) ? NAN : INFINITY, false};
    scale = std::max(scale, std::abs(static_cast<double>(a[i])));
  }
  if (scale == 0.0) return {0.0, true};
  double scaled = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(a[i]) / scale;
    scaled += v * v;
  }
  return {scale * std::sqrt(scaled), true};
}

// Sum of squares of one block of a matrix, exact past the double range: the plain sum of
// squares when it is finite (and, for float64, not so small that squares underflowed),
// else (for finite entries) the block's largest magnitude and the squares scaled by it.
// Blocks are summed later with combine_block_squares, so a norm can be reduced over tiles
// that different threads formed.
struct BlockSquares {
  double scale = 1.0;  // the block's sum of squares is scale^2 * sum
  double sum = 0.0;
  bool nan = false, inf = false;
};

// plain_sum: the block's sum of squares as already accumulated by the caller.
template <typename T>
BlockSquares block_squares(const T* a, int rows, int cols, std::size_t ld, double plain_sum) {
  BlockSquares b;
  b.sum = plain_sum;
  if (std::isfinite(plain_sum) && !squares_may_underflow<T>(plain_sum)) return b;
  double big = 0.0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const double v = static_cast<double>(a[i * ld + j]);
      if (std::isnan(v)) b.nan = true;
      else if (std::isinf(v)) b.inf = true;
      else big = std::max(big, std::abs(v));
    }
  if (b.nan || b.inf || big == 0.0) return b;
  double scaled = 0.0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const double v = static_cast<double>(a[i * ld + j]) / big;
      scaled += v * v;
    }
  b.scale = big;
  b.sum = scaled;
  return b;
}

// ||row|| from its plain sum of squares: the row as a one-row block, rescaled by
// block_squares when float64 squares may have underflowed (a NaN sum stays NaN).
template <typename T>
double row_norm(const T* row, std::size_t n, double sum_sq) {
  if (!squares_may_underflow<T>(sum_sq)) return std::sqrt(sum_sq);
  const BlockSquares b = block_squares(row, 1, static_cast<int>(n), n, sum_sq);
  return b.scale * std::sqrt(b.sum);
}

// The norm of the union of blocks: NaN if any entry was NaN, else inf if any was inf.
inline NormResult combine_block_squares(const std::vector<BlockSquares>& blocks) {
  bool nan = false, inf = false, plain = true;
  double total = 0.0;
  for (const auto& b : blocks) {
    nan |= b.nan;
    inf |= b.inf;
    plain &= b.scale == 1.0;
    total += b.sum;
  }
  if (nan) return {NAN, false};
  if (inf) return {INFINITY, false};
  if (plain && std::isfinite(total)) return {std::sqrt(total), true};
  // Each block's norm, then their norm relative to the largest (no square overflows).
  double big = 0.0;
  for (const auto& b : blocks) big = std::max(big, b.scale * std::sqrt(b.sum));
  if (big == 0.0) return {0.0, true};
  double acc = 0.0;
  for (const auto& b : blocks) {
    const double r = b.scale * std::sqrt(b.sum) / big;
    acc += r * r;
  }
  return {big * std::sqrt(acc), true};
}

}  // namespace pyjac::detail
