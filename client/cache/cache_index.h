// cache_index.h: the shared index of a cache, mapped from its index file:
// creation (atomic), validation of the header, the robust lock, and the hash
// table, LRU list, free list and lease table inside it. Knows nothing of
// volfs ioctls, so it is unit-tested on any filesystem.
//
// Invariant (whenever the lock is free): the derived fields of the index
// (chains, LRU list, free lists of entries and slots, slot users, totals)
// agree with the authoritative ones (entry states, keys, value ids, slots,
// last_use, write leases, segment records); check() verifies it and
// rebuild() restores it after a crash. Slot words live in the segment files,
// not here: whether a slot is pinned comes in through a SlotBusy callback.
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
  uint32_t max_leases = 1024;  // puts in flight
  uint32_t max_segments = 256;
  uint32_t max_slots = 0;  // 0: 4 * max_entries + 2 * the slots of a one-page-class segment
  uint64_t segment_bytes = uint64_t{16} << 20;
  uint32_t page_size = 4096;
};

// True while the slot's word carries pin bits (a reader or a put holds it).
// Under the index lock pins only go away: every pin is taken under it.
using SlotBusy = std::function<bool(uint32_t segment, uint32_t slot)>;

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
  uint32_t max_segments() const { return header_->max_segments; }
  uint32_t max_slots() const { return header_->max_slots; }
  Entry& entry(uint32_t i) const { return index_->entries[i]; }
  Lease& lease(uint32_t i) const { return index_->leases[i]; }
  SegmentRecord& segment(uint32_t i) const { return index_->segments[i]; }
  SlotRecord& slot_record(uint32_t g) const { return index_->slots[g]; }

  // The size class of a value of `size` (> 0) bytes, kSizeClasses if none
  // holds it; the slot size of class c.
  uint32_t size_class_for(uint64_t size) const;
  uint64_t slot_bytes(uint32_t c) const { return uint64_t{header_->page_size} << c; }
  uint64_t max_value_size() const { return slot_bytes(kSizeClasses - 1); }

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
  // The least recently used live entry whose slot is not busy (an empty
  // value has none), of size class `cls` only unless it is kSizeClasses; kNil
  // if there is none.
  uint32_t lru_victim(const SlotBusy& busy, uint32_t cls = kSizeClasses) const;

  // ---- Segments and slots ----

  // The record a new segment of class c would get (file_id, geometry,
  // first_slot), in *plan, and its index; kNil if the segment table or the
  // slot table is full. Nothing changes until publish_segment.
  uint32_t plan_segment(uint32_t c, SegmentRecord* plan);
  // Commits a planned segment whose file is complete: its slots become free.
  void publish_segment(uint32_t s, const SegmentRecord& plan);
  // Takes the oldest free slot of class c that busy() says nobody pins (a
  // free slot may still be pinned by readers of the value it held) and
  // makes it kSlotWriting. Returns its global index (slot_record), or kNil.
  uint32_t take_free_slot(uint32_t c, const SlotBusy& busy);
  // Returns a kSlotWriting slot that never got published to its free list.
  void free_slot(uint32_t g);
  // The global slot index of slot k of segment s.
  uint32_t slot_index(uint32_t s, uint32_t k) const { return segment(s).first_slot + k; }

  // A new value id and a write lease on slot g (kSlotWriting) for `owner`;
  // kNil if the lease table is full.
  uint32_t add_write_lease(const ProcessIdentity& owner, uint32_t g, uint64_t* value_id);
  // Drops write lease l (its slot is the caller's business).
  void release_write_lease(uint32_t l);
  // True if lease l is still the one handed out with this serial.
  bool lease_is(uint32_t l, uint64_t serial, pid_t pid) const;

  // Frees the write leases whose owner alive() says is dead, and their
  // slots unless a live entry holds them (the writer published before it
  // died). Returns how many.
  size_t reclaim_leases(const std::function<bool(const ProcessIdentity&)>& alive);

  // Rebuilds every derived field from the authoritative ones (after a
  // process died holding the lock). Duplicate live keys keep the newest
  // value; entries that cannot be valid are freed.
  void rebuild();
  // Empty if the derived fields agree with the authoritative ones, else the
  // first disagreement.
  std::string check() const;
  // Free slots over all classes (for stats).
  uint64_t free_slots() const;

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
  void push_free_slot(uint32_t g);

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
