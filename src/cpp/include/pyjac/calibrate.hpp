// Measures this machine's OpenBLAS GEMM rate, so benchmarks can report their
// kernels as a fraction of what the same library reaches on a plain square GEMM.
#pragma once

namespace pyjac {

// Best-of-`repeats` GFLOP/s of an n x n x n GEMM (float32 when single, else float64).
double gemm_gflops(int n, int repeats, int n_threads, bool single);

}  // namespace pyjac
