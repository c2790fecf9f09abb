#include "pyjac/common/types.hpp"

#include <array>
#include <utility>

namespace pyjac {
namespace {

template <typename E, std::size_t N>
E parse(const std::string& name, const std::array<std::pair<const char*, E>, N>& table,
        const char* what) {
  for (const auto& [key, value] : table)
    if (name == key) return value;
  std::string valid;
  for (const auto& entry : table) valid += std::string(valid.empty() ? "" : ", ") + '"' +
                                           entry.first + '"';
  throw std::invalid_argument(std::string(what) + ": unknown name \"" + name +
                              "\"; expected one of " + valid);
}

constexpr std::array<std::pair<const char*, Activation>, 7> kActivations{{
    {"linear", Activation::Linear},
    {"sigmoid", Activation::Sigmoid},
    {"tanh", Activation::Tanh},
    {"relu", Activation::Relu},
    {"leaky_relu", Activation::LeakyRelu},
    {"gelu", Activation::Gelu},
    {"silu", Activation::Silu},
}};

}  // namespace

Activation parse_activation(const std::string& name) {
  return parse(name, kActivations, "activation");
}

Norm parse_norm(const std::string& name) {
  constexpr std::array<std::pair<const char*, Norm>, 3> table{{
      {"none", Norm::None}, {"layernorm", Norm::LayerNorm}, {"batchnorm", Norm::BatchNorm}}};
  return parse(name, table, "norm");
}

Loss parse_loss(const std::string& name) {
  constexpr std::array<std::pair<const char*, Loss>, 4> table{{
      {"sum_squares", Loss::SumSquares},
      {"mse", Loss::Mse},
      {"cross_entropy", Loss::CrossEntropy},
      {"grad_output", Loss::GradOutput}}};
  return parse(name, table, "loss");
}

Init parse_init(const std::string& name) {
  constexpr std::array<std::pair<const char*, Init>, 6> table{{
      {"gaussian", Init::Gaussian},
      {"xavier", Init::Xavier},
      {"xavier_uniform", Init::XavierUniform},
      {"he", Init::He},
      {"orthogonal", Init::Orthogonal},
      {"identity", Init::Identity}}};
  return parse(name, table, "init");
}

GradFormat parse_grad_format(const std::string& name) {
  constexpr std::array<std::pair<const char*, GradFormat>, 3> table{{
      {"native", GradFormat::Native},
      {"float16", GradFormat::Float16},
      {"bfloat16", GradFormat::BFloat16}}};
  return parse(name, table, "grad_dtype");
}

ClipKind parse_clip_kind(const std::string& name, const char* argument) {
  constexpr std::array<std::pair<const char*, ClipKind>, 3> table{{
      {"none", ClipKind::None}, {"norm", ClipKind::Norm}, {"value", ClipKind::Value}}};
  return parse(name, table, argument);
}

Optimizer parse_optimizer(const std::string& name) {
  constexpr std::array<std::pair<const char*, Optimizer>, 3> table{{
      {"sgd", Optimizer::Sgd}, {"adam", Optimizer::Adam}, {"adamw", Optimizer::AdamW}}};
  return parse(name, table, "optimizer");
}

const char* activation_name(Activation a) {
  for (const auto& [key, value] : kActivations)
    if (value == a) return key;
  return "?";
}

std::vector<std::string> activation_names() {
  std::vector<std::string> names;
  for (const auto& entry : kActivations) names.emplace_back(entry.first);
  return names;
}

}  // namespace pyjac
