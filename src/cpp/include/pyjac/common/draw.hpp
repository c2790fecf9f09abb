// Standard normal draws from splitmix64 counters, fast enough to draw a layer's weights
// again whenever a pass needs them. Normal pair j of a stream is Box-Muller applied to its
// raw output j: the top 31 bits give the radius, the low 32 bits the angle. log, sin and
// cos are fixed polynomials in float32 IEEE arithmetic (no FMA contraction, no libm), so
// every draw is a float32 value, the same bits on every machine, in every vector width,
// at every thread count. Scaling is in double, so a float32 chain's weights are its float64
// twin's rounded once. float32 draws cost a third of double-precision ones (which would
// carry 29 more bits of a random variate that no init needs).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyjac {

// The pair (r cos t, r sin t), r = sqrt(-2 ln u), t = 2 pi v, of one raw 64-bit output x:
// u = (x >> 33 + 1/2) 2^-31 in (0, 1), v = (x mod 2^32) 2^-32 in [0, 1). Both entries are
// float32 values (|r| <= 6.66).
void normal_pair(std::uint64_t x, double& first, double& second);

// out[i] = scale * normal(first + i) for i < count, where normal(k) is entry k of the
// stream whose splitmix64 state before its first output is `state` (entries 2j and 2j+1
// are pair j, drawn from output j), for any `first`. One thread; callers split the range
// among theirs.
void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  float* out);
void fill_normals(std::uint64_t state, std::uint64_t first, std::size_t count, double scale,
                  double* out);

}  // namespace pyjac
