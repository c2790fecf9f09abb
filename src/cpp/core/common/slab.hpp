// Storage that is written before it is read: not zero-filled, and grow-only when asked
// for again, so that passes over many layers or blocks reuse their slabs instead of
// touching fresh pages for each (a zero-filled std::vector costs a memset and its page
// faults on every call).
#pragma once

#include <cstddef>
#include <memory>

namespace pyjac::detail {

template <typename T>
class Slab {
 public:
  Slab() = default;
  explicit Slab(std::size_t n) { resize(n); }
  void resize(std::size_t n) {
    if (n > capacity_) {
      p_.reset(new T[n]);
      capacity_ = n;
    }
    size_ = n;
  }
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }
  T* begin() { return p_.get(); }
  T* end() { return p_.get() + size_; }
  const T* begin() const { return p_.get(); }
  const T* end() const { return p_.get() + size_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }

 private:
  std::unique_ptr<T[]> p_;
  std::size_t size_ = 0, capacity_ = 0;
};

}  // namespace pyjac::detail
