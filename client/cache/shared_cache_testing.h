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
  // The word of key's slot now (state and pin bits), or 0 if key is absent
  // or empty.
  static uint64_t slot_word(SharedCache& cache, std::string_view key);
  // The segment file holding key's value, or an empty path.
  static std::filesystem::path segment_path(SharedCache& cache, std::string_view key);
  // CacheIndex::check() under the lock: empty if the index is consistent.
  static std::string check(SharedCache& cache);
};

}  // namespace volfs::cache_detail
