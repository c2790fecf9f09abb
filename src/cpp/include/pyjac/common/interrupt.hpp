// Cooperative interruption of long calls (Ctrl-C), without knowing about Python: the
// caller installs a check for its thread, and the core polls it between layers, steps
// and iterations, at most every kPollInterval, then stops with pyjac::Interrupted.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>

namespace pyjac {

// Thrown by the core when the installed check asked it to stop. Nothing the call was
// computing is returned, and nothing of the caller's has been changed by that call
// beyond what its documentation allows (a training epoch stops between steps).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// Returns true when the call should stop. Called only from the thread that installed it.
using InterruptCheck = std::function<bool()>;

inline constexpr std::chrono::milliseconds kPollInterval{20};

// Installs `check` for the calling thread while the scope lives (scopes nest).
class ScopedInterruptCheck {
 public:
  explicit ScopedInterruptCheck(InterruptCheck check);
  ~ScopedInterruptCheck();
  ScopedInterruptCheck(const ScopedInterruptCheck&) = delete;
  ScopedInterruptCheck& operator=(const ScopedInterruptCheck&) = delete;

 private:
  const InterruptCheck* previous_;
  InterruptCheck check_;
};

// From the installing thread, outside parallel regions: throws Interrupted when the
// check (polled at most every kPollInterval) says to stop. Without a check: nothing.
void check_interrupt();

// For parallel regions that synchronise once per step: construct it in the calling
// thread before the region. At the start of step k every thread of the team calls
// stop_at(k), and they all get the same answer: the decision thread 0 took at step
// k - 1; thread 0 then polls for step k + 1. This needs at least one barrier between
// consecutive steps, so that nobody reads a decision while it is written. After the
// region, rethrow().
class TeamInterrupt {
 public:
  TeamInterrupt();
  bool stop_at(int k);
  // For loops without barriers (each thread on its own items): any thread may ask;
  // only thread 0 polls. The answer may differ between threads by one item.
  bool requested();
  // After the region: rethrows what the check threw, or throws Interrupted when it
  // asked to stop.
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
    if (decided_[0].load() || decided_[1].load() || raised_.load()) throw Interrupted();
  }

 private:
  bool poll();
  const InterruptCheck* check_;
  std::exception_ptr error_;  // what the check threw, kept: nothing leaves a region
  std::chrono::steady_clock::time_point last_;
  std::atomic<bool> decided_[2] = {false, false};
  std::atomic<bool> raised_{false};
};

}  // namespace pyjac
