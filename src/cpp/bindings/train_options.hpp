// Conversions shared by the training bindings (chains and recurrent nets).
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "pyjac/train/training_options.hpp"

namespace pyjac::bindings {

// The optimiser's settings from the dict the Python layer checked: optimizer, lr,
// momentum, nesterov, weight_decay, beta1, beta2, eps.
inline OptimizerOptions optimizer_options(const py::dict& d) {
  OptimizerOptions o;
  o.kind = parse_optimizer(d["optimizer"].cast<std::string>());
  o.lr = d["lr"].cast<double>();
  o.momentum = d["momentum"].cast<double>();
  o.nesterov = d["nesterov"].cast<bool>();
  o.weight_decay = d["weight_decay"].cast<double>();
  o.beta1 = d["beta1"].cast<double>();
  o.beta2 = d["beta2"].cast<double>();
  o.eps = d["eps"].cast<double>();
  return o;
}

// The options every training loop shares, from the arguments of its binding.
inline void set_training_options(TrainingOptions& o, const std::string& loss, int batch_size,
                                 const py::dict& optimizer, std::int64_t steps_before,
                                 const std::string& clip_mode, double clip, int n_threads) {
  o.loss = parse_loss(loss);
  o.batch_size = batch_size;
  o.optimizer = optimizer_options(optimizer);
  o.steps_before = steps_before;
  o.clip = parse_clip_kind(clip_mode, "clip_mode");
  o.clip_value = clip;
  o.n_threads = n_threads;
}

// The records every training epoch returns (EpochStats, RecurrentEpochStats).
template <typename Stats>
py::dict epoch_records(const Stats& s) {
  py::dict r;
  r["step_loss"] = to_numpy(s.step_loss);
  r["step_grad_norm"] = to_numpy(s.step_grad_norm);
  r["step_clipped_norm"] = to_numpy(s.step_clipped_norm);
  r["grad_norm"] = to_numpy(s.grad_norm);  // through depth, or through time
  r["log_grad_norm"] = to_numpy(s.log_grad_norm);
  r["mean_loss"] = s.mean_loss;
  r["accuracy"] = s.accuracy;
  r["first_nonfinite_step"] = index_or_none(s.first_nonfinite_step);
  r["applied_steps"] = s.applied_steps;
  return r;
}

// The optimiser writes into the caller's arrays, so a converted copy would be silently
// lost: `item` must already be a writable C-contiguous array of T with `size` entries.
template <typename T>
T* writable_array(const py::handle& item, py::ssize_t size, const std::string& name) {
  auto a = py::array_t<T>::ensure(item);
  if (!a || a.ptr() != item.ptr() || !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(name +
                                ": must be a writable C-contiguous array of the model's dtype");
  if (a.size() != size) throw std::invalid_argument(name + ": wrong shape");
  return a.mutable_data();
}

// One writable array per entry of `sizes`, or none (an empty list).
template <typename T>
std::vector<T*> writable_list(const py::sequence& seq, const std::vector<py::ssize_t>& sizes,
                              const char* name) {
  std::vector<T*> out;
  if (seq.size() == 0) return out;
  if (seq.size() != sizes.size())
    throw std::invalid_argument(std::string(name) + ": one array per parameter is required");
  for (std::size_t i = 0; i < seq.size(); ++i)
    out.push_back(writable_array<T>(seq[i], sizes[i], std::string(name) + "[" +
                                                          std::to_string(i) + "]"));
  return out;
}

}  // namespace pyjac::bindings
