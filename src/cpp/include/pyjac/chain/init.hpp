// Seeded weight initialisation, reproducible whatever the thread count: every
// layer draws from its own counter-derived stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pyjac/common/types.hpp"

namespace pyjac {

struct InitOptions {
  Init init = Init::He;
  double gain = 1.0;
  double bias_std = 0.0;
  std::uint64_t seed = 0;
  int n_threads = -1;
};

// Fills weights[l] (widths[l+1] x widths[l]) and biases[l] (widths[l+1]).
template <typename T>
void init_chain(const std::vector<int>& widths, const InitOptions& options,
                const std::vector<T*>& weights, const std::vector<T*>& biases);

// Layer `layer` alone (W: fan_out x fan_in, b: fan_out), exactly as init_chain draws it;
// its entries are shared among n_threads threads with the same numbers at any count.
template <typename T>
void init_layer(int layer, int fan_in, int fan_out, const InitOptions& options, T* w, T* b,
                int n_threads);

// Layer `layer`'s biases alone (fan_out entries), as init_layer draws them.
template <typename T>
void init_biases(int layer, int fan_out, const InitOptions& options, T* b);

// Whether init_weight_block can draw a block of a layer's weights alone: every init but
// the orthogonal one, whose QR needs the whole matrix.
bool draws_weight_blocks(Init init);

// W[r0:r1, c0:c1] of layer `layer` (W: fan_out x fan_in) into out, rows ld apart, on one
// thread: exactly init_layer's entries there. Only where draws_weight_blocks(init).
template <typename T>
void init_weight_block(int layer, int fan_in, int fan_out, const InitOptions& options, int r0,
                       int r1, int c0, int c1, T* out, std::size_t ld);

// The standard deviation of a Gaussian-family init's entries, sqrt(sigma_w^2 / fan_in),
// as |gain| times gain 1's: gain^2 itself would overflow past 1.3e154.
double init_stddev(Init init, double gain, int fan_in, int fan_out);

// The variance factor sigma_w^2 an init gives: Var(W_ij) * fan_in.
double init_sigma_w2(Init init, double gain, int fan_in, int fan_out);

}  // namespace pyjac
