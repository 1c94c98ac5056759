// shared_cache_testing.h: hooks into a SharedCache for its tests (crash
// points, the lock, the index). Not installed; not for applications.
#pragma once

#include <volfs/shared_cache.h>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "cache_index.h"
#include "fault_point.h"

namespace volfs::cache_detail {

struct SharedCacheTestPeer {
  static CacheIndex& index(SharedCache& cache);
  // Runs fn holding the index lock (fn may kill the process).
  static void run_locked(SharedCache& cache, const std::function<void()>& fn);
  // The value file of key, or an empty path if key is absent or empty.
  static std::filesystem::path value_path(SharedCache& cache, std::string_view key);
  // CacheIndex::check() under the lock: empty if the index is consistent.
  static std::string check(SharedCache& cache);
};

}  // namespace volfs::cache_detail
