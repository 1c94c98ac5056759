// index_layout.h: the on-disk (on-volfs) layout of a shared cache index, the
// ABI between every process that maps it. Invariant: page 0 is a fixed-layout
// IndexHeader checked before anything else is trusted; after it comes a
// Boost.Interprocess segment holding only offset_ptr-based containers of
// plain structs, allocated once at creation and never resized. Values live
// in slots of segment files beside the index (docs/shared-cache.md).
#pragma once

#include <pthread.h>
#include <volfs/volfs.h>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>
#include <boost/version.hpp>
#include <cstddef>
#include <cstdint>

namespace volfs::cache_detail {

namespace bip = boost::interprocess;

inline constexpr char kIndexMagic[16] = "volfs.cache.idx";  // 15 chars + NUL
// Bump on any change of the structs below or of their meaning. 2: values in
// slots of segment files; 3: entries hold value_checksum, not XXH64.
inline constexpr uint32_t kLayoutVersion = 3;
inline constexpr uint32_t kIndexReady = 0x52454459;  // "REDY"
inline constexpr uint32_t kMaxKeySize = 240;
inline constexpr uint32_t kNil = UINT32_MAX;
// The segment starts here; page 0 (of 4 KiB, whatever the page size) is the
// header's.
inline constexpr uint64_t kSegmentOffset = 4096;
inline constexpr char kIndexObjectName[] = "volfs.cache.index";

// The segment's allocator takes no lock of its own (null_mutex_family): it
// only runs while the index is being created, by the one process that owns
// the still-unpublished file; afterwards nothing allocates. Boost's own
// interprocess_mutex is not robust, so a process dying inside an allocation
// would wedge everyone; here that cannot happen.
using Segment =
    bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<bip::null_mutex_family>,
                                       bip::iset_index>;
template <class T>
using ShmAllocator = bip::allocator<T, Segment::segment_manager>;
template <class T>
using ShmVector = bip::vector<T, ShmAllocator<T>>;

enum EntryState : uint32_t { kEntryFree = 0, kEntryLive = 1 };

// One key. `state` is the commit point: a put fills a free entry, then sets
// kEntryLive; a removal sets kEntryFree first. Everything marked "derived" is
// rebuilt from the authoritative fields after a crash (CacheIndex::rebuild).
struct Entry {
  uint32_t state;
  uint32_t key_size;
  uint64_t key_hash;  // checksum64(key)
  uint64_t value_id;  // unique per put, never reused: of two live entries of a key the newer wins
  uint64_t size;      // value bytes
  uint64_t checksum;  // checksum64(value, seed = key_hash)
  uint64_t last_use;  // header tick of the last put or get: the LRU order
  uint32_t segment;   // the value's slot: segment record and slot in it; kNil for an empty value
  uint32_t slot;
  uint32_t hash_next;  // derived: bucket chain of live entries, free list of free ones
  uint32_t lru_prev;   // derived: towards the most recently used
  uint32_t lru_next;   // derived: towards the least recently used
  uint32_t reserved;
  char key[kMaxKeySize];
};

enum LeaseKind : uint32_t { kLeaseFree = 0, kLeaseWrite = 2 };

// A put in flight: it owns slot (segment, slot) and writes value_id into it
// before publishing. Owned by a process; reclaimed when that process is gone
// (pid no longer exists, or exists with another start time, or is a zombie):
// its slot goes back to the free list unless an entry names it. Readers take
// no leases: a reader's pin is its holder bit in the slot's word, which the
// daemon clears when the reader's open file is released.
struct Lease {
  uint32_t kind;
  int32_t pid;
  uint64_t start_time;  // clock ticks after boot (/proc/PID/stat field 22)
  uint64_t value_id;
  uint64_t serial;  // unique per lease: a handle checks it is still its own
  uint32_t segment;
  uint32_t slot;
};

// Value storage: size class c holds values of up to page_size << c bytes in
// slots of that size. Each segment file (NAME.values/seg-<file_id>) holds
// slot_count slots of one class: their lock words (struct volfs_slot_word,
// 16 bytes each) from offset 0, their data from data_offset, slot k at
// data_offset + k * slot_bytes. Segments are never retired.
inline constexpr uint32_t kSizeClasses = 16;  // 1 page .. 32768 pages
enum SegmentState : uint32_t { kSegmentFree = 0, kSegmentReady = 1 };

struct SegmentRecord {
  uint32_t state;  // kSegmentReady is the commit point: the file is complete and registered
  uint32_t size_class;
  uint64_t file_id;  // names the file; never reused
  uint64_t file_size;
  uint64_t data_offset;
  uint64_t slot_bytes;
  uint32_t slot_count;
  uint32_t first_slot;  // its slots are slots[first_slot .. first_slot + slot_count)
};

// Per slot, all derived (from live entries and write leases).
inline constexpr uint32_t kSlotWriting = UINT32_MAX - 1;  // user: a put in flight
struct SlotRecord {
  uint32_t user;     // the live entry in it, kSlotWriting, or kNil (free)
  uint32_t next;     // free list of its class, oldest freed first
  uint32_t segment;  // the ready segment it belongs to
  uint32_t reserved;
};

struct ClassFreeList {
  uint32_t head;  // derived: slot indices, FIFO (a slot freed long ago is least likely pinned)
  uint32_t tail;
  uint32_t count;
  uint32_t segments;  // derived: ready segments of the class
};

struct Index {
  Index(uint32_t max_entries, uint32_t bucket_count, uint32_t max_leases, uint32_t max_segments,
        uint32_t max_slots, Segment::segment_manager* sm)
      : entries(max_entries, Entry{}, ShmAllocator<Entry>(sm)),
        buckets(bucket_count, kNil, ShmAllocator<uint32_t>(sm)),
        leases(max_leases, Lease{}, ShmAllocator<Lease>(sm)),
        segments(max_segments, SegmentRecord{}, ShmAllocator<SegmentRecord>(sm)),
        slots(max_slots, SlotRecord{kNil, kNil, kNil, 0}, ShmAllocator<SlotRecord>(sm)) {}
  ShmVector<Entry> entries;
  ShmVector<uint32_t> buckets;  // derived: heads of the chains by key_hash
  ShmVector<Lease> leases;
  ShmVector<SegmentRecord> segments;
  ShmVector<SlotRecord> slots;
};

// Everything this build assumes about the layout. Stored at creation and
// compared field by field on open, so a mismatch names what differs.
struct AbiFingerprint {
  uint32_t endian_marker;  // 0x01020304 as written by the creator
  uint32_t pointer_size;
  uint32_t header_size;
  uint32_t entry_size;
  uint32_t lease_size;
  uint32_t index_size;
  uint32_t mutex_size;
  uint32_t segment_manager_size;
  uint32_t boost_version;
  uint32_t max_key_size;
  uint32_t segment_record_size;
  uint32_t slot_word_size;  // sizeof(volfs_slot_word): the ABI of volfs slots
  uint32_t size_classes;
  uint32_t reserved[3];
};

struct IndexCounters {
  uint64_t hits;
  uint64_t misses;
  uint64_t purged_misses;
  uint64_t corrupt_misses;
  uint64_t puts;
  uint64_t erases;
  uint64_t evictions;
  uint64_t leases_reclaimed;
  uint64_t lock_recoveries;
  uint64_t segments_created;
  uint64_t reserved[6];
};

// Page 0 of the index file.
struct IndexHeader {
  // Written once by the creator before the file is published (renamed into
  // place); read-only afterwards.
  char magic[16];
  uint32_t layout_version;
  uint32_t ready;  // kIndexReady
  AbiFingerprint abi;
  uint64_t file_size;
  uint64_t segment_offset;
  uint64_t segment_size;
  uint32_t max_entries;
  uint32_t bucket_count;  // a power of two
  uint32_t max_leases;
  uint32_t max_segments;
  uint32_t max_slots;
  uint32_t page_size;      // of the creator; slot sizes are multiples of it
  uint64_t segment_bytes;  // data bytes a segment aims at (slot_count = this / slot size)
  uint64_t reserved1[6];

  // Robust, process-shared: a process that dies holding it hands the next
  // locker EOWNERDEAD, which rebuilds the derived fields and goes on. It
  // guards everything below and all of Index. It is the only lock of the
  // index; the per-process locks of a SharedCache (its open-file cache) are
  // never held while waiting for it.
  alignas(64) pthread_mutex_t mutex;
  int32_t lock_owner;     // pid of the holder, for error messages
  uint32_t free_head;     // derived: free entries chained by hash_next
  uint32_t lru_head;      // derived: most recently used live entry
  uint32_t lru_tail;      // derived: least recently used live entry
  uint32_t live_entries;  // derived
  uint32_t slots_used;    // derived: slot records handed to ready segments
  uint64_t live_bytes;    // derived
  uint64_t next_value_id;
  uint64_t next_serial;
  uint64_t next_file_id;  // names the next segment file
  uint64_t tick;
  uint64_t last_reap_ns;  // CLOCK_MONOTONIC_COARSE (system-wide)
  uint32_t lease_hint;    // where the next lease search starts
  uint32_t reserved2;
  ClassFreeList classes[kSizeClasses];  // derived
  IndexCounters counters;
  uint64_t reserved3[16];
};

static_assert(sizeof(IndexHeader) <= kSegmentOffset, "the header fits in page 0");
static_assert(sizeof(kIndexMagic) == 16, "magic is 16 bytes");

inline AbiFingerprint this_build_abi() {
  AbiFingerprint a{};
  a.endian_marker = 0x01020304;
  a.pointer_size = sizeof(void*);
  a.header_size = sizeof(IndexHeader);
  a.entry_size = sizeof(Entry);
  a.lease_size = sizeof(Lease);
  a.index_size = sizeof(Index);
  a.mutex_size = sizeof(pthread_mutex_t);
  a.segment_manager_size = sizeof(Segment::segment_manager);
  a.boost_version = BOOST_VERSION;
  a.max_key_size = kMaxKeySize;
  a.segment_record_size = sizeof(SegmentRecord);
  a.slot_word_size = sizeof(volfs_slot_word);
  a.size_classes = kSizeClasses;
  return a;
}

}  // namespace volfs::cache_detail
