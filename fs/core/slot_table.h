// SlotTable: the slots of one file (docs/volatile-ranges.md, "Slots"): where
// each slot's data and lock word are, which open files hold pin bits, and the
// daemon's side of the word protocol of client/include/volfs/volfs.h. The
// words live in the file's store, mapped here MAP_SHARED; clients map the
// same pages through FUSE passthrough and pin with a compare-and-swap.
// Not thread-safe: the owning inode's mu guards it. The words themselves
// change under it at any time (clients), so every decision taken from a word
// is a compare-and-swap, and nothing here trusts a word's contents beyond
// what the swap proves: a client may write anything there.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "page_map.h"

namespace volfs::core {

class SlotTable {
 public:
  // What the file's FileState holds for the slot's data: the daemon learns
  // of pins and unpins only when it looks at the words (Filesystem::sync_slots).
  enum class View : uint8_t {
    kPinned,    // non-volatile: pinned when last looked at
    kVolatile,  // marked volatile with `seq`, in the purge queue while resident
    kPurged,    // purged by the daemon; the word says PURGED until the next pin
  };

  struct Slot {
    uint64_t word_offset = 0;
    PageRange data;
    uint8_t prio = 0;
    View view = View::kPinned;
    uint64_t seq = 0;          // FileState mark while view != kPinned
    uint64_t* word = nullptr;  // in a mapping of the store; atomic access only
  };

  SlotTable(int store_fd, uint64_t page_size) : fd_(store_fd), page_size_(page_size) {}
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  bool empty() const { return slots_.empty(); }
  size_t size() const { return slots_.size(); }

  // Holders: an open file's pin bit, 0..VOLFS_SLOT_HOLDERS-1; keyed by an
  // opaque id of the open file. nullopt: every bit is taken (EUSERS).
  std::optional<uint32_t> holder(const void* open_file);
  std::optional<uint32_t> find_holder(const void* open_file) const;
  // The open file is gone: its bit is cleared in every word and freed.
  void release_holder(const void* open_file);

  Slot* find(uint64_t word_offset);
  Slot* find_by_data(PageRange data);  // the slot whose data is exactly `data`
  // Whether r touches any slot's data or any page holding a slot word.
  bool overlaps(PageRange r) const { return data_overlaps(r) || has_word_page(r); }
  bool data_overlaps(PageRange r) const;
  bool has_word_page(PageRange r) const;
  // Whether byte range [off, off + len) touches any slot word.
  bool touches_word(uint64_t off, uint64_t len) const;
  template <class Fn>
  void for_each(Fn&& fn) {
    for (auto& [off, s] : slots_) fn(s);
  }

  // Adds a slot whose word page the caller allocated in the store. Maps the
  // page (once per page); sets the word LIVE, pinned by `holder`. -errno on
  // a failed mmap, with nothing added.
  int add(uint64_t word_offset, PageRange data, uint8_t prio, uint32_t holder);
  // Removes the slot: its word turns NONE (waking pins that wait on it)
  // unless `word_gone` (truncated or punched away), and its page is unmapped
  // when no other word needs it.
  void remove(uint64_t word_offset, bool word_gone);

  // The word protocol, daemon side.
  static uint64_t load(const Slot& s);
  // LIVE or PURGED without pin bits -> PURGING: the data may be punched.
  static bool take_for_purge(const Slot& s);
  // PURGING -> PURGED, and wakes pins that wait.
  static void end_purge(const Slot& s);
  // PURGING -> LIVE without pins: a purge that punched nothing gave up.
  static void abort_purge(const Slot& s);
  // A stray PURGING that no purge of ours holds (a client wrote it): PURGED,
  // so that pins do not wait for ever. Returns whether it did so.
  static bool settle_stray_purging(const Slot& s);

 private:
  struct Page {
    void* addr = nullptr;
    int users = 0;
  };
  void unmap_user(uint64_t page);

  const int fd_;
  const uint64_t page_size_;
  std::map<uint64_t, Slot> slots_;           // by word_offset
  std::map<uint64_t, uint64_t> by_data_;     // data.first -> word_offset
  std::map<uint64_t, Page> pages_;           // store page index -> mapping
  std::map<const void*, uint32_t> holders_;  // open file -> bit
  uint64_t holder_bits_ = 0;                 // bits taken
};

}  // namespace volfs::core
