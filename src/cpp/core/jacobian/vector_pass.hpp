// One vector through every layer Jacobian of a linearised chain, for power iteration.
#pragma once

#include "jacobian/linearize.hpp"

namespace pyjac::detail {

// out = J in (transpose = false: J = J_L ... J_1, in has widths[0] entries) or
// out = J^T in (transpose = true, in has widths[L] entries), rescaled by a power of two
// at every layer; returns the natural log of the factor out must be multiplied by.
// The linearisation must be without LayerNorm (its Jacobian needs the whole vector
// before the next GEMV). The caller holds a BlasThreadScope(1); results do not depend
// on n_threads.
template <typename T>
double apply_chain_to_vector(const Linearization<T>& lin, bool transpose, const T* in, T* out,
                             int n_threads);

}  // namespace pyjac::detail
