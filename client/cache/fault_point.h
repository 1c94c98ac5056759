// fault_point.h: named points inside the cache's critical sections where a
// crash test can kill the process (or do anything else). Without a hook they
// cost one relaxed load.
#pragma once

#include <atomic>

namespace volfs::cache_detail {

using FaultHook = void (*)(const char* point);

inline std::atomic<FaultHook>& fault_hook() {
  static std::atomic<FaultHook> hook{nullptr};
  return hook;
}

// Relaxed: the hook is set by a test before the code it watches runs, in the
// same thread or before fork.
inline void fault_point(const char* point) {
  if (FaultHook h = fault_hook().load(std::memory_order_relaxed)) h(point);
}

}  // namespace volfs::cache_detail
