// Deterministic reductions: partial sums per row in parallel, then a serial sum in
// a fixed order, so the result is the same at every thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <type_traits>
#include <thread>
#include <vector>

#include <omp.h>

#include "pyjac/common/interrupt.hpp"

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

// body() on a team of n_threads when `parallel` (and more than one thread), else on the
// calling thread alone, outside any OpenMP region: even a one-thread team makes a futex
// call at each of its barriers once the process has OpenMP workers (a 200-step recurrent
// loop spent 1.4 ms of 2.8 in them, a 1000-layer chain 2000 calls per pass). Worksharing
// loops inside body are orphaned `omp for`: in the team they share the items out and end
// in its barrier; outside any region they run on the caller, with no barrier.
template <typename Body>
inline void run_team(int n_threads, bool parallel, Body&& body) {
  if (parallel && n_threads > 1) {
#pragma omp parallel num_threads(n_threads)
    body();
  } else {
    body();
  }
}

// parallel_for for long items that run without barriers (a group of examples through
// every step): each item's body stops early once `interrupt` is requested. Thread 0,
// the only one that may poll the caller's check, keeps polling after its own items
// until every item is done, so an interrupt is seen while the other threads finish.
template <typename Index, typename Body>
inline void parallel_for_interruptible(Index n, int n_threads, bool parallel,
                                       TeamInterrupt& interrupt, Body&& body) {
  if (!(parallel && n_threads > 1 && n > 1)) {
    for (Index i = 0; i < n && !interrupt.requested(); ++i) body(i);
    return;
  }
  std::atomic<Index> done{0};
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(static) nowait
    for (Index i = 0; i < n; ++i) {
      if (!interrupt.requested()) body(i);
      done.fetch_add(1, std::memory_order_release);
    }
    if (omp_get_thread_num() == 0)
      while (done.load(std::memory_order_acquire) < n && !interrupt.requested())
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
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

// a (n entries) times 2^-e into out, or a itself when e is 0. Exact (a power of two)
// for every entry that stays normal; applied as two factors, because 2^-e alone leaves
// the double range for the |e| > 1023 that subnormal inputs bring.
template <typename T>
const T* scaled_copy(const T* a, std::size_t n, int e, T* out) {
  if (e == 0) return a;
  const double f1 = std::ldexp(1.0, -e / 2), f2 = std::ldexp(1.0, -e - (-e / 2));
  for (std::size_t k = 0; k < n; ++k)
    out[k] = static_cast<T>(static_cast<double>(a[k]) * f1 * f2);
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

// The one scaled norm of the core. A sum of squares kept as scale^2 * sum, so that no
// square overflows or underflows: a Frobenius norm is exact over the dtype's whole range.
// A block's plain sum of squares (scale 1) is used as it is when it is safe, and
// recomputed relative to the block's largest magnitude when it is not. NaN and Inf
// entries are flags: the norm of a set that holds one is NaN (any NaN) or Inf.
struct BlockSquares {
  double scale = 1.0;  // the block's sum of squares is scale^2 * sum
  double sum = 0.0;
  bool nan = false, inf = false;

  double norm() const {
    if (nan || std::isnan(sum)) return NAN;
    if (inf || std::isinf(sum)) return INFINITY;
    return scale * std::sqrt(sum);
  }
};

// Accumulates norms of parts (or single values) into the norm of their union, relative
// to the largest part seen so far (LAPACK's dlassq update): no square leaves the range.
class ScaledNorm {
 public:
  void add(double value) {
    const double a = std::abs(value);
    if (std::isnan(a)) {
      nan_ = true;
    } else if (std::isinf(a)) {
      inf_ = true;
    } else if (a > 0.0) {
      if (a > scale_) {
        const double r = scale_ / a;
        sum_ = 1.0 + sum_ * r * r;
        scale_ = a;
      } else {
        const double r = a / scale_;
        sum_ += r * r;
      }
    }
  }
  void add(const BlockSquares& b) { add(b.norm()); }  // NaN or inf for flagged blocks
  double value() const {
    if (nan_) return NAN;
    if (inf_) return INFINITY;
    return scale_ * std::sqrt(sum_);
  }
  bool finite() const { return !nan_ && !inf_; }

 private:
  double scale_ = 0.0, sum_ = 0.0;
  bool nan_ = false, inf_ = false;
};

// A plain sum of squares accumulated in double can be trusted when it is finite and, for
// float64 data, not so small that squares underflowed.
template <typename T>
inline bool plain_sum_is_exact(double sum_sq) {
  return std::isfinite(sum_sq) && !squares_may_underflow<T>(sum_sq);
}

// plain_sum: the block's sum of squares as already accumulated by the caller.
template <typename T>
BlockSquares block_squares(const T* a, std::size_t rows, std::size_t cols, std::size_t ld,
                           double plain_sum) {
  BlockSquares b;
  b.sum = plain_sum;
  if (plain_sum_is_exact<T>(plain_sum)) return b;
  double big = 0.0;
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      const double v = static_cast<double>(a[i * ld + j]);
      if (std::isnan(v)) b.nan = true;
      else if (std::isinf(v)) b.inf = true;
      else big = std::max(big, std::abs(v));
    }
  if (b.nan || b.inf || big == 0.0) {
    b.sum = b.nan ? NAN : (b.inf ? INFINITY : 0.0);
    return b;
  }
  double scaled = 0.0;
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) {
      const double v = static_cast<double>(a[i * ld + j]) / big;
      scaled += v * v;
    }
  b.scale = big;
  b.sum = scaled;
  return b;
}

// ||row|| from its plain sum of squares, rescaled by block_squares when that sum
// overflowed or (float64) its squares may have underflowed.
template <typename T>
double row_norm(const T* row, std::size_t n, double sum_sq) {
  if (plain_sum_is_exact<T>(sum_sq)) return std::sqrt(sum_sq);
  return block_squares(row, 1, n, n, sum_sq).norm();
}

// The sum of squares of a (rows x cols) block with leading dimension ld, serially.
template <typename T>
BlockSquares block_sum_squares(const T* a, std::size_t rows, std::size_t cols,
                               std::size_t ld) {
  double plain = 0.0;
  for (std::size_t i = 0; i < rows; ++i) plain += row_sum_squares(a + i * ld, cols);
  return block_squares(a, rows, cols, ld, plain);
}

// Frobenius norm of such a block.
template <typename T>
double block_norm(const T* a, std::size_t rows, std::size_t cols, std::size_t ld) {
  return block_sum_squares(a, rows, cols, ld).norm();
}

// ||v|| of a contiguous vector, exact over the whole range.
template <typename T>
double vector_norm(const T* v, std::size_t n) {
  return row_norm(v, n, row_sum_squares(v, n));
}

// Frobenius norm of a (rows x cols) row-major block, accumulated in double, with the
// plain row sums of squares left in row_sq when given.
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
  if (plain_sum_is_exact<T>(total)) return {std::sqrt(total), true};
  ScaledNorm acc;
  for (std::size_t i = 0; i < rows; ++i)
    acc.add(block_squares(a + i * cols, 1, cols, cols, row_sq[i]));
  return {acc.value(), acc.finite()};
}

// The norm of the union of blocks: NaN if any entry was NaN, else inf if any was inf.
inline NormResult combine_block_squares(const std::vector<BlockSquares>& blocks) {
  bool plain = true;
  double total = 0.0;
  for (const auto& b : blocks) {
    plain &= b.scale == 1.0 && !b.nan && !b.inf;
    total += b.sum;
  }
  if (plain && std::isfinite(total)) return {std::sqrt(total), true};
  ScaledNorm acc;
  for (const auto& b : blocks) acc.add(b);
  return {acc.value(), acc.finite()};
}

// The norm of a few norms (the parameters' parts of one gradient), exact when their
// squares would leave the range.
inline double norm_of_norms(std::initializer_list<double> parts) {
  ScaledNorm acc;
  for (double p : parts) acc.add(p);
  return acc.value();
}

// Backward passes keep dL/dh inside T's range by powers of two, which are exact in
// binary floating point: when the gradient about to be formed would leave
// [2^-kBand, 2^kBand] in norm, the GEMM that forms it multiplies by 2^k to bring it back
// near 1, and the pass carries the sum E of those k (the true gradient is the stored one
// times 2^-E). Inside the band nothing is scaled, so ordinary runs keep every bit. A pass
// that emulates low-precision storage never rescales: where float16 loses the gradient is
// what it measures.
template <typename T>
int backward_rescale_exponent(double dz_norm, double carried_norm) {
  constexpr int kBand = std::is_same_v<T, float> ? 40 : 300;
  // 2^k stays a normal number of T, with room for the GEMM's sums.
  constexpr int kLimit = std::numeric_limits<T>::max_exponent - 8;
  const double norm = std::max(dz_norm, carried_norm);
  if (!(norm > 0.0) || !std::isfinite(norm)) return 0;
  const int e = std::ilogb(norm);
  if (e >= -kBand && e <= kBand) return 0;
  return std::clamp(-e, -kLimit, kLimit);
}

// stored * unscale * 2^-exponent in float64, rounded once: zero or subnormal where the
// true value underflows float64, inf where it overflows.
inline double unscaled_value(double stored, int exponent, double unscale) {
  if (!(stored != 0.0) || !std::isfinite(stored)) return stored * unscale;
  int e1 = 0, e2 = 0;
  const double m1 = std::frexp(stored, &e1), m2 = std::frexp(unscale, &e2);
  return std::ldexp(m1 * m2, e1 + e2 - exponent);
}

// ln(stored * unscale * 2^-exponent), finite wherever the stored norm is positive and
// finite, whatever the exponent.
inline double unscaled_log(double stored, int exponent, double unscale) {
  return std::log(stored) + std::log(unscale) - exponent * 0.69314718055994530942;
}

// A norm's float64 value and its log (the backprop results keep both).
inline void store_norm(double stored, int exponent, double unscale, double& value,
                       double& log_value) {
  value = unscaled_value(stored, exponent, unscale);
  log_value = unscaled_log(stored, exponent, unscale);
}

// Entries times 2^-exponent, each rounded once in T: a gradient carried at 2^exponent
// times its value, back in the caller's units.
template <typename T>
void unscale_entries(T* a, std::size_t n, int exponent) {
  if (exponent == 0) return;
  for (std::size_t k = 0; k < n; ++k) a[k] = std::ldexp(a[k], -exponent);
}

// The norm of parts whose stored norms carry their own exponents (true norm = stored *
// 2^-exponent, as unscaled_value): its float64 value and its log. Parts are brought to the
// smallest exponent among the non-zero ones, where the largest parts are; the others
// shrink by powers of two and may drop out only where they are below its rounding.
inline void combine_scaled_parts(const BlockSquares* parts, const int* exponents, int count,
                                 double& value, double& log_value) {
  int base = 0;
  bool any = false;
  for (int q = 0; q < count; ++q) {
    const double v = parts[q].norm();
    if (v != 0.0 && (!any || exponents[q] < base)) {
      base = exponents[q];
      any = true;
    }
  }
  ScaledNorm acc;
  for (int q = 0; q < count; ++q) {
    const double v = parts[q].norm();
    acc.add(std::isfinite(v) ? std::ldexp(v, base - exponents[q]) : v);
  }
  store_norm(acc.value(), base, 1.0, value, log_value);
}

}  // namespace pyjac::detail
