// Allocation-failure injection for the core's unit tests: replaces the global
// operator new/delete of the test binary that includes it, so include it from
// exactly one source file of a binary. While g_fail_countdown is N > 0, the
// Nth allocation on this thread throws std::bad_alloc (thread-local: gtest's
// own threads and the purge worker are not affected).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
thread_local long g_fail_countdown = 0;
void* checked_alloc(std::size_t n) {
  if (g_fail_countdown > 0 && --g_fail_countdown == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return checked_alloc(n); }
void* operator new[](std::size_t n) { return checked_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
// The nothrow forms too: ASan reports a new/free mismatch when one form comes
// from the library and its delete from here (Store's std::nothrow new).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return checked_alloc(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
