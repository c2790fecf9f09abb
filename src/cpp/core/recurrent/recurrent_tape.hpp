// The forward pass of a recurrent chain and what it keeps for the backward passes
// (backprop through time and the Jacobian products share it).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

#include <omp.h>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "pyjac/recurrent/recurrent.hpp"
#include "recurrent/weight_products.hpp"

namespace pyjac::detail {

// Buffers freed on this thread while a BufferReuse scope is open, kept for the next
// request of the same size.
struct BufferPool {
  int open_scopes = 0;
  std::vector<std::pair<std::size_t, void*>> kept;  // (bytes, block)
};

inline BufferPool& buffer_pool() {
  thread_local BufferPool pool;
  return pool;
}

// While one is open on a thread, the buffers that thread frees are kept and handed out
// again: a training loop's minibatches reuse the tapes of the step before instead of
// faulting in fresh zeroed pages every step (8% of an LSTM step). Everything kept is
// freed when the last scope closes.
class BufferReuse {
 public:
  BufferReuse() { ++buffer_pool().open_scopes; }
  ~BufferReuse() {
    BufferPool& pool = buffer_pool();
    if (--pool.open_scopes > 0) return;
    for (const auto& [bytes, block] : pool.kept) std::free(block);
    pool.kept.clear();
  }
  BufferReuse(const BufferReuse&) = delete;
  BufferReuse& operator=(const BufferReuse&) = delete;
};

struct FreeDeleter {
  std::size_t bytes = 0;
  void operator()(void* p) const {
    BufferPool& pool = buffer_pool();
    if (pool.open_scopes > 0) {
      try {
        pool.kept.emplace_back(bytes, p);
        return;
      } catch (const std::bad_alloc&) {  // no room to keep it: free it
      }
    }
    std::free(p);
  }
};

template <typename T>
using RBuffer = std::unique_ptr<T[], FreeDeleter>;

// Uninitialised storage for n values of a trivial T: untouched pages cost nothing, so
// peak RSS is what is used. The tapes are tens of MB and fresh on every call; asking
// for transparent huge pages on them cuts the page faults 512-fold.
template <typename T>
RBuffer<T> make_rbuffer(std::size_t n) {
  static_assert(std::is_trivially_default_constructible_v<T>);
  const std::size_t bytes = std::max<std::size_t>(n, 1) * sizeof(T);
  BufferPool& pool = buffer_pool();
  for (auto it = pool.kept.begin(); it != pool.kept.end(); ++it)
    if (it->first == bytes) {
      void* reused = it->second;
      pool.kept.erase(it);
      return RBuffer<T>(static_cast<T*>(reused), FreeDeleter{bytes});
    }
  constexpr std::size_t kHuge = std::size_t(2) << 20;
  void* p = nullptr;
#ifdef __linux__
  if (bytes >= 4 * kHuge) {
    const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
    p = std::aligned_alloc(kHuge, rounded);
    if (p) madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure changes nothing
  }
#endif
  if (!p) p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return RBuffer<T>(static_cast<T*>(p), FreeDeleter{bytes});
}

// Sum of squares of len values in double; the simd reduction's order is fixed by the
// code, so the bits do not depend on the thread count.
template <typename T>
inline double sum_sq(const T* p, int len) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < len; ++j) {
    const double v = static_cast<double>(p[j]);
    s += v * v;
  }
  return s;
}

// Batches of at least kRowModeBatch examples are split over threads in fixed groups of
// row_group(batch) examples (see recurrent_forward.cpp); smaller ones by blocks of units,
// with one barrier per step. Measured on 2 cores with the groups below: from 8 to 48
// examples neither way wins consistently (within 10% either way, by cell and width).
inline constexpr int kRowModeBatch = 64;

// Examples per group in row mode: the batch shared evenly among the machine's cores (never
// the call's thread budget, so the groups and the bits are fixed by the shape), in
// multiples of 8, at most kMaxRowGroup. Each group packs W again at every step: groups
// of 8 rows read the LSTM's W (n = 256, 1 MB) eight times per step at B = 64, and ran
// its BPTT 1.3x slower than groups of 32.
inline constexpr int kMaxRowGroup = 128;
inline int row_group(int batch) {
  const int cores = std::max(1, omp_get_num_procs());
  const int per_core = (batch + cores - 1) / cores;
  return std::clamp((per_core + 7) / 8 * 8, 8, kMaxRowGroup);
}

// Whether a time loop runs on more than one thread. Split by units, it meets a barrier
// at every step, which costs more than a second thread gives below about a million
// float32 multiply-adds per step with W (half a million in float64); measured on 2
// cores, float64 width 128 batch 8 tanh: 1.0 ms on one thread, 2.5 ms on two. Split by
// rows there are no barriers. Either way the blocks are the same, and so are the bits.
template <typename T>
inline bool time_loop_in_parallel(int n_threads, bool by_rows, int batch, int gates_width,
                                  int width) {
  if (n_threads <= 1) return false;
  const double work = static_cast<double>(batch) * gates_width;
  if (by_rows) return work * 16 >= 8192;
  return work * width * sizeof(T) >= 4.0 * (1 << 20);
}

// Row-major slabs indexed by step; `row` = batch * (entries per example).
template <typename T>
struct RecurrentTape {
  int steps = 0, batch = 0, width = 0, gates = 1;
  Cell cell = Cell::Tanh;
  RBuffer<T> h;      // (T+1, B, n): h_0 .. h_T
  RBuffer<T> c;      // LSTM (T+1, B, n): c_0 .. c_T
  RBuffer<T> tc;     // LSTM (T, B, n): tanh(c_t)
  RBuffer<T> gate;   // LSTM/GRU (T, B, G n): gate activations of step t at slot t-1
  RBuffer<T> hn;     // GRU (T, B, n): W_n h_{t-1}
  std::vector<double> state_norm;  // ||h_t||, t = 0..T
  int first_nonfinite_step = -1;

  std::size_t slab() const { return static_cast<std::size_t>(batch) * width; }
  std::size_t gate_slab() const { return slab() * gates; }
  T* h_at(int t) const { return h.get() + t * slab(); }
  T* c_at(int t) const { return c.get() + t * slab(); }
  T* tc_of(int t) const { return tc.get() + (t - 1) * slab(); }      // step t = 1..T
  T* gate_of(int t) const { return gate.get() + (t - 1) * gate_slab(); }
  T* hn_of(int t) const { return hn.get() + (t - 1) * slab(); }
};

// Runs the recurrence over in.steps steps and fills the tape. Inputs must have been
// validated. n_threads is the resolved budget; callers hold BlasThreadScope(1).
// wp must have been built for W with forward products.
template <typename T>
void recurrent_forward(const RecurrentView<T>& cell, const RecurrentInputs<T>& in,
                       const WeightProducts<T>& wp, RecurrentTape<T>& tape, int n_threads);

// Bytes the tape of recurrent_forward takes.
std::int64_t recurrent_tape_bytes(Cell cell, int width, int steps, int batch, int dtype_size);

// Checks shared by every recurrent entry point (std::invalid_argument naming the
// argument).
template <typename T>
void validate_inputs(const RecurrentView<T>& cell, const RecurrentInputs<T>& in);

}  // namespace pyjac::detail
