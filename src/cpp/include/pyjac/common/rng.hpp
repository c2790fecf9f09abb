// A small, fast, splittable generator: splitmix64 streams keyed by (seed, stream).
// The state is a counter, so any entry of a stream can be drawn directly (skipped(),
// fill_normals in draw.hpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "pyjac/common/draw.hpp"

namespace pyjac {

// splitmix64: the state advances by this constant per output ...
inline constexpr std::uint64_t kSplitmixIncrement = 0x9E3779B97F4A7C15ULL;

// ... and each output is this mix of the advanced state.
inline std::uint64_t splitmix_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline std::uint64_t splitmix64(std::uint64_t& state) {
  return splitmix_mix(state += kSplitmixIncrement);
}

class Rng {
 public:
  Rng(std::uint64_t seed, std::uint64_t stream) {
    // Mix seed and stream so that neighbouring streams are unrelated.
    std::uint64_t s = seed ^ (0xD1B54A32D192ED03ULL * (stream + 1));
    state_ = splitmix64(s);
  }
  std::uint64_t next() { return splitmix64(state_); }
  // This stream as it stands after n more next() calls, without making them: the state
  // is a counter (splitmix64 adds a constant per call), so a thread can start anywhere.
  // Only between normal() pairs (no spare held).
  Rng skipped(std::uint64_t n) const {
    Rng r = *this;
    r.state_ += n * kSplitmixIncrement;
    return r;
  }
  // Uniform on the open interval (0, 1).
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
  // The Box-Muller pair of the next output (draw.hpp), the first returned now and the
  // second at the next call: entry k of the stream is fill_normals' entry k.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double first;
    normal_pair(next(), first, spare_);
    has_spare_ = true;
    return first;
  }
  // The state before the next output: what fill_normals and skipped() count from.
  std::uint64_t state() const { return state_; }

 private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace pyjac
