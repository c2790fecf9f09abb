// Transformer encoder stacks as PyTorch's nn.TransformerEncoderLayer builds them
// (batch first, dropout 0): multi-head softmax self-attention and an MLP, each a
// sublayer with a residual connection, LayerNorm (with its affine weight and bias)
// before the sublayer (pre-LN, norm_first=True) or after the residual sum (post-LN), or
// none. One forward and backward pass with the measurements of the gradient through the
// residual stream, of every parameter, of the queries and keys, attention entropy and
// rank collapse.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pyjac/common/types.hpp"

namespace pyjac {

enum class BlockNorm : int { None, Pre, Post };

// "pre", "post" or "none".
BlockNorm parse_block_norm(const std::string& name);

// The parameters of one block, in PyTorch's layout (row-major, weight = (out, in)).
template <typename T>
struct TransformerBlock {
  const T* in_proj_weight = nullptr;   // (3 width, width): W_Q, W_K, W_V stacked
  const T* in_proj_bias = nullptr;     // (3 width)
  const T* out_proj_weight = nullptr;  // (width, width)
  const T* out_proj_bias = nullptr;    // (width)
  const T* linear1_weight = nullptr;   // (hidden, width)
  const T* linear1_bias = nullptr;     // (hidden)
  const T* linear2_weight = nullptr;   // (width, hidden)
  const T* linear2_bias = nullptr;     // (width)
  const T* norm1_weight = nullptr;     // (width); unused without norms
  const T* norm1_bias = nullptr;
  const T* norm2_weight = nullptr;
  const T* norm2_bias = nullptr;
};

template <typename T>
struct TransformerView {
  int width = 0, heads = 1, hidden = 0;
  Activation activation = Activation::Gelu;  // of the MLP: relu or gelu as PyTorch allows
  BlockNorm norm = BlockNorm::Pre;
  bool residual = true;
  double residual_scale = 1.0;  // multiplies each sublayer's output on the residual stream
  bool causal = false;
  std::vector<TransformerBlock<T>> blocks;

  int depth() const { return static_cast<int>(blocks.size()); }
  // Throws std::invalid_argument naming what does not fit.
  void validate() const;
};

// The parameters of a block whose gradient norms are reported, in this order.
inline constexpr int kTransformerParameters = 14;
const char* transformer_parameter_name(int index);  // "W_Q", "W_K", ..., "norm2.bias"

struct TransformerStats {
  double loss = 0.0;  // NaN with a grad_output
  // The residual stream at 2 depth + 1 points: the stack's input, then after each
  // block's attention sublayer and after its MLP sublayer (for post-LN, after the norm
  // that follows each). ||dL/dx|| and ||x|| there, Frobenius over the batch.
  std::vector<double> grad_norm, activation_norm;
  std::vector<double> parameter_grad_norm;  // (depth, kTransformerParameters)
  // ||dL/dQ|| and ||dL/dK|| of each block's queries and keys (all heads).
  std::vector<double> query_grad_norm, key_grad_norm;
  // Mean over examples and query positions of -sum_j p_ij log p_ij, per (block, head).
  std::vector<double> attention_entropy;
  // Rank collapse at the stack's input and each block's output (depth + 1 points), means
  // over the examples: the mean cosine similarity of pairs of distinct tokens, and
  // ||X - 1 xbar^T||_F / ||X||_F (Dong et al. 2021).
  std::vector<double> token_similarity, rank_one_distance;
  int first_nonfinite_layer = -1;  // index into the stream points
  int first_nonfinite_stage = 0;   // 0 none, 1 forward, 2 backward
};

struct TransformerOptions {
  Loss loss = Loss::SumSquares;  // sum_squares, mse (over every entry) or grad_output
  int n_threads = -1;
};

// x: (batch, seq_len, width) row-major; target: mse values or grad_output, same shape.
// output (optional): the stack's output, same shape.
template <typename T>
TransformerStats transformer_backprop(const TransformerView<T>& net, const T* x, int batch,
                                      int seq_len, const T* target,
                                      const TransformerOptions& options, T* output);

struct TransformerSpectralOptions {
  int iters = 1000;       // power iterations at most (one J and one J^T product each)
  double tol = 1e-6;      // relative change of sigma, and its extrapolated remaining error
  std::uint64_t seed = 0;  // the start vector's stream
  bool per_block = false;  // each block's own Jacobian instead of the stack's
  int n_threads = -1;
};

struct TransformerSpectralStats {
  // One entry for the whole stack, or one per block: log sigma_max of the Jacobian of
  // the output sequence with respect to the input sequence (seq_len * width square).
  std::vector<double> log_value;
  std::vector<int> iterations;
  std::vector<unsigned char> converged;
  int first_nonfinite_layer = -1;  // a stream point of the forward pass holding NaN/Inf
};

// Matrix-free power iteration on J^T J with forward-mode (tangent) and reverse-mode
// products through the blocks, each block's result rescaled to unit norm and its log
// carried, so that no depth overflows. x: one sequence, (seq_len, width).
template <typename T>
TransformerSpectralStats transformer_spectral_norm(const TransformerView<T>& net, const T* x,
                                                   int seq_len,
                                                   const TransformerSpectralOptions& options);

struct TransformerJacobianStats {
  // Per depth l = 1..depth, of J_l = d x_l / d x_0 (x_l the output of block l): the
  // power iteration's log sigma_max (and the forward pass's first NaN/Inf) ...
  TransformerSpectralStats spectral;
  // ... and log ||J_l||_F, exact or estimated from probes, with the standard error of
  // ||J_l||_F^2 relative to itself.
  std::vector<double> log_frobenius;
  std::vector<double> frobenius_relative_error;
};

// The norms of the Jacobian at every depth for one sequence x (seq_len, width). The
// Frobenius norms come from one tangent pass through the whole stack per probe, all
// depths at once: every basis vector (probes = 0: exact) or `probes` Gaussian vectors
// (E ||J z||^2 = ||J||_F^2). The spectral norms take a power iteration per depth.
template <typename T>
TransformerJacobianStats transformer_jacobian_norms(const TransformerView<T>& net, const T* x,
                                                    int seq_len,
                                                    const TransformerSpectralOptions& options,
                                                    int probes);

// Bytes the pass allocates (its tape), for a memory check before it runs.
std::int64_t transformer_workspace_bytes(int depth, int width, int heads, int hidden, int batch,
                                         int seq_len, int dtype_size);

}  // namespace pyjac
