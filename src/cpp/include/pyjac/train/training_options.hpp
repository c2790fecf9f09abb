// What every training loop (chains and recurrent nets) takes, and its checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "pyjac/common/types.hpp"
#include "pyjac/train/optimizer.hpp"

namespace pyjac {

struct TrainingOptions {
  Loss loss = Loss::CrossEntropy;  // or Mse
  int batch_size = 32;
  OptimizerOptions optimizer;
  std::int64_t steps_before = 0;  // updates applied in earlier epochs (Adam's step count)
  ClipKind clip = ClipKind::None; // over every parameter: the global norm, or each entry
  double clip_value = 0.0;
  int n_threads = -1;
};

// std::invalid_argument naming the option.
inline void check_training_options(const TrainingOptions& o) {
  if (o.batch_size < 1) throw std::invalid_argument("batch_size: must be at least 1");
  check_optimizer(o.optimizer);
  if (o.steps_before < 0) throw std::invalid_argument("steps_before: must be at least 0");
  if (o.clip != ClipKind::None && (!(o.clip_value > 0.0) || !std::isfinite(o.clip_value)))
    throw std::invalid_argument("clip: must be a positive finite number");
  if (o.loss != Loss::CrossEntropy && o.loss != Loss::Mse)
    throw std::invalid_argument("loss: training needs 'cross_entropy' or 'mse'");
}

// The loss reads exactly one of the two: labels for cross_entropy, values for mse.
inline void check_targets(Loss loss, const void* targets, const std::int64_t* labels) {
  if (loss == Loss::CrossEntropy && (!labels || targets))
    throw std::invalid_argument("y: cross_entropy needs integer labels (and no target values)");
  if (loss == Loss::Mse && (!targets || labels))
    throw std::invalid_argument("y: mse needs target values (and no labels)");
}

}  // namespace pyjac
