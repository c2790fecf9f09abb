// GEMM and GEMV whose results do not depend on the thread count.
//
// OpenBLAS picks different kernels (and so different rounding) for one thread and
// for several, so calling it with the call's thread budget would make results
// depend on n_threads. Here BLAS always runs single-threaded (the caller holds a
// BlasThreadScope(1)) and OpenMP runs fixed tiles of the output in parallel: the
// tiles depend only on the shapes, so every entry is computed by the same kernel
// call whatever the number of threads.
#pragma once

#include <functional>

#include "pyjac/common/blas.hpp"

namespace pyjac::detail {

// C (m x n) = alpha op(A) op(B) + beta C, row-major, over a grid of tiles of C fixed by
// the shape alone (one plain call when the product is small).
// min_tile_macs: the least multiply-adds per tile (the grid grows from there, at most 16
// tiles); a caller that knows its products are many and small asks for larger tiles.
template <typename T>
void tiled_gemm(blas::Trans ta, blas::Trans tb, int m, int n, int k, T alpha, const T* a,
                int lda, const T* b, int ldb, T beta, T* c, int ldc, int n_threads,
                double min_tile_macs = 1 << 20);

// tiled_gemm with B drawn instead of read: draw_b(j0, nj, out) writes columns j0..j0+nj of
// op(B) into out (op(B) = B^T: nj rows of B, k apart; else k rows of nj), once per column
// of tiles, on the thread that then runs that column's tiles from it while it is in cache.
// Tiles and calls are tiled_gemm's, so are the bits; B is never whole in memory.
template <typename T>
void tiled_gemm_drawn_b(blas::Trans ta, blas::Trans tb, int m, int n, int k, T alpha,
                        const T* a, int lda, const std::function<void(int, int, T*)>& draw_b,
                        T beta, T* c, int ldc, int n_threads, double min_tile_macs = 1 << 20);

// y = alpha op(A) x + beta y for A (m x n), tiled over y.
template <typename T>
void tiled_gemv(blas::Trans ta, int m, int n, T alpha, const T* a, int lda, const T* x, T beta,
                T* y, int n_threads);

}  // namespace pyjac::detail
