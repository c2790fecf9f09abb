#include "pyjac/common/interrupt.hpp"

#include <omp.h>

namespace pyjac {
namespace {

thread_local const InterruptCheck* t_check = nullptr;
thread_local std::chrono::steady_clock::time_point t_last{};

bool due(std::chrono::steady_clock::time_point& last) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last < kPollInterval) return false;
  last = now;
  return true;
}

}  // namespace

ScopedInterruptCheck::ScopedInterruptCheck(InterruptCheck check)
    : previous_(t_check), check_(std::move(check)) {
  t_check = &check_;
}

ScopedInterruptCheck::~ScopedInterruptCheck() { t_check = previous_; }

void check_interrupt() {
  if (t_check && due(t_last) && (*t_check)()) throw Interrupted();
}

TeamInterrupt::TeamInterrupt() : check_(t_check), last_(std::chrono::steady_clock::now()) {}

bool TeamInterrupt::poll() {
  // Thread 0 of a team is the thread that constructed this object (and installed the
  // check); the other threads never call into the caller's check.
  if (!check_ || omp_get_thread_num() != 0 || !due(last_)) return false;
  try {
    return (*check_)();
  } catch (...) {  // inside a parallel region: keep it for rethrow() and stop the team
    error_ = std::current_exception();
    return true;
  }
}

bool TeamInterrupt::stop_at(int k) {
  const bool stop = decided_[k & 1].load(std::memory_order_relaxed);
  if (stop) return true;
  if (omp_get_thread_num() == 0)
    decided_[(k + 1) & 1].store(raised_.load() || poll(), std::memory_order_relaxed);
  return false;
}

bool TeamInterrupt::requested() {
  if (raised_.load(std::memory_order_relaxed)) return true;
  if (poll()) raised_.store(true);
  return raised_.load(std::memory_order_relaxed);
}

}  // namespace pyjac
