// Names shared by every part of the core: activations, norms, losses, inits.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace pyjac {

enum class Activation : int { Linear, Sigmoid, Tanh, Relu, LeakyRelu, Gelu, Silu };
enum class Norm : int { None, LayerNorm, BatchNorm };
enum class Loss : int { SumSquares, Mse, CrossEntropy, GradOutput };
enum class Init : int { Gaussian, Xavier, XavierUniform, He, Orthogonal, Identity };
// Storage format of the gradients propagated backwards (mixed-precision emulation).
enum class GradFormat : int { Native, Float16, BFloat16 };
// Gradient clipping (recurrent BPTT and training): by global norm, or entry by entry.
enum class ClipKind : int { None, Norm, Value };
// Training's update rule: torch.optim's SGD (with momentum), Adam and AdamW.
enum class Optimizer : int { Sgd, Adam, AdamW };

// Parsing lives in the core so that the C++ tests, benchmarks and bindings
// accept exactly the same names and give the same error text.
Activation parse_activation(const std::string& name);
Norm parse_norm(const std::string& name);
Loss parse_loss(const std::string& name);
Init parse_init(const std::string& name);
GradFormat parse_grad_format(const std::string& name);
// "none", "norm" or "value"; `argument` names the caller's parameter in the error.
ClipKind parse_clip_kind(const std::string& name, const char* argument);
Optimizer parse_optimizer(const std::string& name);

const char* activation_name(Activation a);
std::vector<std::string> activation_names();

// Leaky ReLU's negative slope, fixed by the public contract.
inline constexpr double kLeakySlope = 0.01;
// LayerNorm/BatchNorm epsilon, as in PyTorch.
inline constexpr double kNormEps = 1e-5;

}  // namespace pyjac
