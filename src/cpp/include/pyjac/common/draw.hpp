// Standard normal draws from splitmix64 counters, fast enough to draw a layer's weights
// again whenever a pass needs them. Normal pair j of a stream is Box-Muller applied to its
// raw outputs 2j and 2j+1, with log, sin and cos evaluated by fixed polynomials in plain
// IEEE arithmetic (no FMA contraction, no libm): the same bits on every machine, in every
// vector width, at every thread count.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyjac {

// The pair (r cos t, r sin t), r = sqrt(-2 ln u1), t = 2 pi u2, of two raw 64-bit outputs:
// u1 = (x1 >> 12 + 1/2) 2^-52 in (0, 1), t from the top 52 bits of x2.
void normal_pair(std::uint64_t x1, std::uint64_t x2, double& first, double& second);

// out[i] = scale * normal(first + i) for i < count, where normal(k) is entry k of the
// stream whose splitmix64 state before its first output is `state` (entries 2j and 2j+1
// are pair j). `first` must be even. One thread; callers split the range among theirs.
void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  float* out);
void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  double* out);

}  // namespace pyjac
