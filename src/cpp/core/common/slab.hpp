// Storage that is written before it is read: not zero-filled, and grow-only when asked
// for again, so that passes over many layers or blocks reuse their slabs instead of
// touching fresh pages for each (a zero-filled std::vector costs a memset and its page
// faults on every call). Large slabs ask for transparent huge pages: one fault per 2 MiB
// instead of one per 4 KiB (the tapes of one transformer pass are hundreds of MiB).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pyjac::detail {

template <typename T>
class Slab {
  static_assert(std::is_trivially_default_constructible_v<T> &&
                std::is_trivially_destructible_v<T>);

 public:
  Slab() = default;
  explicit Slab(std::size_t n) { resize(n); }
  void resize(std::size_t n) {
    if (n > capacity_) {
      p_.reset(allocate(n));
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
  T& operator[](std::size_t i) { return p_.get()[i]; }
  const T& operator[](std::size_t i) const { return p_.get()[i]; }

 private:
  static constexpr std::size_t kHugePage = std::size_t(2) << 20;
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  static T* allocate(std::size_t n) {
    const std::size_t bytes = std::max<std::size_t>(n, 1) * sizeof(T);
    void* p = nullptr;
    if (bytes >= kHugePage) {
      p = std::aligned_alloc(kHugePage, (bytes + kHugePage - 1) / kHugePage * kHugePage);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      if (p) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: ignored where unsupported
#endif
    } else {
      p = std::malloc(bytes);
    }
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }

  std::unique_ptr<T, Free> p_;
  std::size_t size_ = 0, capacity_ = 0;
};

}  // namespace pyjac::detail
