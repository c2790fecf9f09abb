// Vectorisation of the elementwise kernels.
#pragma once

// Every iteration of the loop is independent (in-place kernels read each index before
// writing it), so it is safe to vectorise; the pragma says so where offsets into one
// array (gates at j, n+j, ...) defeat the compiler's analysis.
#define PYJAC_SIMD _Pragma("omp simd")

// The function is compiled three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA)
// and the baseline the wheel targets (SSE2), and the loader picks the best one the
// processor has (a GNU ifunc). The elementwise kernels (exp, tanh, the cells' gates) run
// about 4x faster on AVX-512 than on SSE2, and the build stays portable. Each machine
// always runs the same variant, so results stay identical at every thread count; two
// machines with different vector units may differ in the last bits, as their BLAS
// kernels already make them. Define PYJAC_NO_ISA_CLONES to build the baseline only.
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 11 && !defined(PYJAC_NO_ISA_CLONES)
#define PYJAC_ISA_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYJAC_ISA_CLONES
#endif
