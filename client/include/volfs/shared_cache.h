// volfs/shared_cache.h: a key -> bytes cache that unrelated processes open by
// name on a volfs mount. Values live in volfs slots of a few segment files;
// released values are purgeable (the daemon may purge them); a get pins its
// value's slot (no system call once the segment is mapped) and never returns
// corrupted, partial or stale bytes: a purged or damaged value is a miss.
// Design: docs/shared-cache.md.
#pragma once

#include <sys/types.h>
#include <volfs/volfs.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

namespace volfs {

namespace cache_detail {
class CacheImpl;
struct SharedCacheTestPeer;
}  // namespace cache_detail

struct SharedCacheOptions {
  // Geometry, fixed when the cache is created (an existing cache keeps its
  // own): index entries (keys), and leases (puts in flight, over all
  // processes; readers take none). A full index evicts the least recently
  // used entry nobody pins; a full lease table is an error (ENOSPC).
  uint32_t max_entries = 4096;
  uint32_t max_leases = 1024;
  // Value storage, fixed at creation too. Values live in slots of size
  // classes of 1, 2, 4, ... pages (up to 32768 pages, 128 MiB with 4 KiB
  // pages); each class grows by segment files of segment_bytes of slots
  // (at least one slot), up to max_segments files and max_slots slots in
  // all (0: 4 * max_entries + twice the slots of a one-page-class segment).
  // A class that can grow no more evicts its least recently used value
  // nobody pins. Segment files are sparse: memory is what values fill.
  uint32_t max_segments = 256;
  uint32_t max_slots = 0;
  uint64_t segment_bytes = uint64_t{16} << 20;
  // Create the cache if it does not exist (otherwise ENOENT).
  bool create = true;
  // Mode of the index file and value files (the values directory gets x bits
  // where r is set).
  mode_t mode = 0600;
  // Purge priority of released values, 0..7, lower is purged first.
  int priority = VOLFS_PRIORITY_DEFAULT;
  // Longest wait for the index lock before ETIMEDOUT: a process that died
  // holding it is recovered at once; only a live, stuck holder makes us wait.
  std::chrono::milliseconds lock_timeout{10000};
  // How often a lock holder looks for leases of dead processes.
  std::chrono::milliseconds reap_interval{1000};
  // Unused since values live in segment files (each SharedCache keeps every
  // segment open and mapped); kept for source compatibility.
  size_t open_files = 64;
};

struct SharedCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;          // all misses, purged and corrupt ones included
  uint64_t purged_misses = 0;   // the value was purged by the daemon
  uint64_t corrupt_misses = 0;  // checksum mismatch: a bug somewhere, never returned
  uint64_t puts = 0;
  uint64_t erases = 0;
  uint64_t evictions = 0;  // released entries dropped to make room
  // Only in stats(): the state of the whole cache now.
  uint64_t entries = 0;
  uint64_t bytes = 0;       // sum of the live values' sizes
  uint64_t pinned = 0;      // pin bits set in slot words: holders pinning slots, puts included
  uint64_t segments = 0;    // segment files
  uint64_t slots = 0;       // slots in them
  uint64_t free_slots = 0;  // slots holding no live value nor a put in flight
  uint64_t leases_reclaimed = 0;  // leases of dead processes taken back
  uint64_t lock_recoveries = 0;   // index lock taken over from a dead owner
  uint64_t max_entries = 0;
  uint64_t max_leases = 0;
};

class SharedCache;

// A pinned value: readable, and safe from purges, while the view lives.
// Destroying it drops the pin (a compare-and-swap, no lock, no system call);
// once no holder pins the slot, the daemon may purge it. Move-only. A view
// may outlive the SharedCache it came from (it shares the segment's mapping
// and open file).
class ValueView {
 public:
  ValueView(ValueView&& o) noexcept;
  ValueView& operator=(ValueView&& o) noexcept;
  ValueView(const ValueView&) = delete;
  ValueView& operator=(const ValueView&) = delete;
  ~ValueView();

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::string_view str() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  friend class cache_detail::CacheImpl;
  struct Pin;
  ValueView(std::unique_ptr<Pin> pin, const std::byte* data, size_t size);
  void release() noexcept;

  std::unique_ptr<Pin> pin_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

class SharedCache {
 public:
  static constexpr size_t kMaxKeySize = 240;

  // Opens the cache `name` in `dir`, which must be on a volfs mount (ENOTTY
  // otherwise): the index dir/NAME.index and the values in dir/NAME.values/.
  // Creates them if absent and options.create. An index of another layout or
  // build (magic, layout version, ABI fingerprint) is refused with EPROTO and
  // a message naming the mismatch.
  static SharedCache open(const std::filesystem::path& dir, std::string_view name,
                          const SharedCacheOptions& options = {});

  SharedCache(SharedCache&&) noexcept;
  SharedCache& operator=(SharedCache&&) noexcept;
  SharedCache(const SharedCache&) = delete;
  SharedCache& operator=(const SharedCache&) = delete;
  ~SharedCache();

  // Stores a copy of value under key, replacing any older value (whose
  // current readers keep reading the old bytes). Keys are 1..kMaxKeySize
  // bytes. Throws std::system_error: ENOSPC when every index entry is
  // pinned, the value's size class is full of pinned slots, or the lease
  // table is full; EFBIG for a value above the largest class; EUSERS when
  // 62 SharedCache objects hold a segment file already; or the mount's error.
  void put(std::string_view key, std::span<const std::byte> value);
  void put(std::string_view key, std::string_view value) {
    put(key, std::as_bytes(std::span(value.data(), value.size())));
  }

  // The value of key, pinned, or nullopt on a miss (absent, purged, or
  // failing its checksum; the last two drop the entry).
  std::optional<ValueView> get(std::string_view key);

  // Drops key; true if it was there. Readers holding it keep their bytes.
  bool erase(std::string_view key);

  // Counters of the whole cache (all processes) and its current state.
  SharedCacheStats stats() const;
  // Counters of this SharedCache object only (entries/bytes/pinned are 0).
  SharedCacheStats local_stats() const;

  // Takes back the leases (puts in flight) of processes that died; done
  // anyway every reap_interval. Returns how many. (Pins of dead readers go
  // away with their open files: the daemon clears their bits.)
  size_t reclaim_dead_leases();

  const std::filesystem::path& index_path() const;
  const std::filesystem::path& values_dir() const;

 private:
  friend struct cache_detail::SharedCacheTestPeer;
  explicit SharedCache(std::shared_ptr<cache_detail::CacheImpl> impl);
  std::shared_ptr<cache_detail::CacheImpl> impl_;
};

}  // namespace volfs
