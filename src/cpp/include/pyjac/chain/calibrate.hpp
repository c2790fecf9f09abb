// Measures this machine's OpenBLAS GEMM rate, so benchmarks can report their
// kernels as a fraction of what the same library reaches on a plain square GEMM.
#pragma once

namespace pyjac {

// Best-of-`repeats` GFLOP/s of an n x n x n GEMM (float32 when single, else float64).
double gemm_gflops(int n, int repeats, int n_threads, bool single);

// Median seconds of `repeats` runs (after one warm-up) of the BLAS calls that a float32
// backprop through `depth` layers of `width` units on `batch` examples makes in the
// tile-at-a-time pass, alone, in that pass's own schedule: the same tile grids, one
// OpenMP region per pass and one barrier per layer, the ghost norm's two Gram SYRKs
// (or the dW tiles where the pass forms dW), every layer with its own weights and its
// own stored input. Nothing else is computed, so a backprop cannot run faster than
// this on these BLAS kernels; benchmarks report how close it comes.
double backprop_blas_seconds(int depth, int width, int batch, int repeats, int n_threads);

}  // namespace pyjac
