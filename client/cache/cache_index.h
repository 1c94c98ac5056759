// cache_index.h: the shared index of a cache, mapped from its index file:
// creation (atomic), validation of the header, the robust lock, and the hash
// table, LRU list, free list and lease table inside it. Knows nothing of
// volfs ioctls, so it is unit-tested on any filesystem.
//
// Invariant (whenever the lock is free): the derived fields of the index
// (chains, LRU list, free list, pin counts, totals) agree with the
// authoritative ones (entry states, keys, value ids, last_use, leases);
// check() verifies it and rebuild() restores it after a crash.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "index_layout.h"
#include "process_identity.h"

namespace volfs::cache_detail {

struct IndexGeometry {
  uint32_t max_entries = 4096;
  uint32_t max_leases = 1024;
};

// The file size an index of this geometry takes.
uint64_t index_file_size(const IndexGeometry& g);

class CacheIndex {
 public:
  // Opens the index file at path. If it does not exist and create is set,
  // builds one in a temporary file beside it and renames it into place
  // (RENAME_NOREPLACE), so no process ever maps a half-built index and of
  // racing creators one wins and the others open its file. Throws
  // std::system_error: EPROTO for a file that is not an index of this layout
  // and build (the message names the mismatch), or the errno of the failure.
  static std::unique_ptr<CacheIndex> open(const std::filesystem::path& path,
                                          const IndexGeometry& geometry, bool create, mode_t mode);
  ~CacheIndex();
  CacheIndex(const CacheIndex&) = delete;
  CacheIndex& operator=(const CacheIndex&) = delete;

  const std::filesystem::path& path() const { return path_; }
  IndexHeader& header() const { return *header_; }
  // Where this process mapped the file (two mappings differ; for tests).
  const void* mapping_base() const { return base_; }
  uint32_t max_entries() const { return header_->max_entries; }
  uint32_t max_leases() const { return header_->max_leases; }
  Entry& entry(uint32_t i) const { return index_->entries[i]; }
  Lease& lease(uint32_t i) const { return index_->leases[i]; }

  // ---- Everything below requires the lock (IndexLock). ----

  // The live entry of key, or kNil.
  uint32_t find(std::string_view key, uint64_t key_hash) const;
  // The live entry holding value_id (hint first), or kNil.
  uint32_t find_value(uint64_t value_id, uint32_t hint) const;
  // Pops a free entry (still kEntryFree, unlinked) for the caller to fill and
  // publish; kNil if none is free.
  uint32_t allocate_entry();
  // Makes a filled entry live (the commit point), most recently used.
  void publish_entry(uint32_t i);
  // Returns a live entry to the free list (kEntryFree first).
  void remove_entry(uint32_t i);
  // Makes a live entry the most recently used.
  void touch(uint32_t i);
  // The least recently used live entry without pins, or kNil.
  uint32_t lru_victim() const;

  // A new value id and a write lease on it for `owner`; kNil if the lease
  // table is full.
  uint32_t add_write_lease(const ProcessIdentity& owner, uint64_t* value_id);
  // A pin lease on live entry i; kNil if the lease table is full.
  uint32_t add_pin(uint32_t entry, const ProcessIdentity& owner);
  // Drops pin lease l. Returns the entry whose last pin that was (its value
  // must be marked volatile again), or kNil.
  uint32_t release_pin(uint32_t l);
  // Drops write lease l.
  void release_write_lease(uint32_t l);
  // True if lease l is still the one handed out with this serial.
  bool lease_is(uint32_t l, uint64_t serial, pid_t pid) const;

  // What reclaiming the leases of dead processes left to do on the files.
  struct Reclaimed {
    size_t leases = 0;
    std::vector<uint32_t> unpinned;          // live entries that lost their last pin
    std::vector<uint64_t> abandoned_values;  // unpublished value ids of dead writers
  };
  // Frees the leases whose owner alive() says is dead.
  Reclaimed reclaim_leases(const std::function<bool(const ProcessIdentity&)>& alive);

  // Rebuilds every derived field from the authoritative ones (after a
  // process died holding the lock). Duplicate live keys keep the newest
  // value; entries that cannot be valid are freed.
  void rebuild();
  // Empty if the derived fields agree with the authoritative ones, else the
  // first disagreement.
  std::string check() const;

 private:
  CacheIndex(std::filesystem::path path, void* base, size_t size);
  static std::unique_ptr<CacheIndex> attach(int fd, const std::filesystem::path& path);
  static std::unique_ptr<CacheIndex> build(const std::filesystem::path& tmp, const IndexGeometry& g,
                                           mode_t mode);

  uint32_t bucket_of(uint64_t key_hash) const {
    return static_cast<uint32_t>(key_hash & (header_->bucket_count - 1));
  }
  void link_hash(uint32_t i);
  void unlink_hash(uint32_t i);
  void link_lru_front(uint32_t i);
  void unlink_lru(uint32_t i);
  uint32_t add_lease(const Lease& l);

  std::filesystem::path path_;
  void* base_ = nullptr;
  size_t size_ = 0;
  IndexHeader* header_ = nullptr;
  std::unique_ptr<Segment> segment_;
  Index* index_ = nullptr;  // in the segment; a plain pointer in process memory
};

// The index lock, held for the scope. On EOWNERDEAD (its last owner died
// holding it) rebuilds the index and marks the mutex consistent. Throws
// std::system_error ETIMEDOUT if a live holder keeps it past the timeout.
class IndexLock {
 public:
  IndexLock(CacheIndex& index, std::chrono::milliseconds timeout);
  ~IndexLock();
  IndexLock(const IndexLock&) = delete;
  IndexLock& operator=(const IndexLock&) = delete;
  bool recovered() const { return recovered_; }

 private:
  CacheIndex& index_;
  bool recovered_ = false;
};

}  // namespace volfs::cache_detail
