// segment_map.h: one holder's view of a segment file of a cache: the file
// open (its open file description is the holder, one pin bit in each slot
// word), mapped whole MAP_SHARED, and one volfs_slot per slot counting the
// holder's pins. Shared (shared_ptr) by its cache and every ValueView of its
// slots, so a view keeps the mapping and the holder's bit valid while it
// lives. Knows nothing of the index; works on any shared file whose words
// someone made LIVE (tests do it on /dev/shm by hand).
#pragma once

#include <volfs/client.h>
#include <volfs/volfs.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "index_layout.h"

namespace volfs::cache_detail {

class SegmentMap {
 public:
  // Takes fd (open O_RDWR on the segment file r describes) and maps it.
  // `pinned`: the holder just created every slot (registration pins them by
  // its bit); the caller unpins them with unpin_all(). Throws
  // std::system_error if the mapping fails (fd is closed then).
  SegmentMap(int fd, std::filesystem::path path, const SegmentRecord& r, uint32_t holder,
             bool pinned);
  ~SegmentMap();
  SegmentMap(const SegmentMap&) = delete;
  SegmentMap& operator=(const SegmentMap&) = delete;

  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  uint64_t file_id() const { return record_.file_id; }
  uint32_t slot_count() const { return record_.slot_count; }
  uint32_t holder() const { return holder_; }
  // File offset and mapped address of slot k's data.
  uint64_t data_offset(uint32_t k) const { return record_.data_offset + k * record_.slot_bytes; }
  std::byte* data(uint32_t k) const { return base_ + data_offset(k); }
  volfs_slot_word* word(uint32_t k) const { return reinterpret_cast<volfs_slot_word*>(base_) + k; }
  uint64_t load_word(uint32_t k) const { return __atomic_load_n(&word(k)->word, __ATOMIC_ACQUIRE); }
  // Some holder pins slot k now. Under the index lock this only turns false
  // by itself (every pin is taken under that lock).
  bool busy(uint32_t k) const { return (load_word(k) & VOLFS_SLOT_PIN_BITS) != 0; }
  // Pin bits set in all words (pins of all holders, for stats).
  uint64_t pins() const;

  // volfs_slot_pin: VOLFS_INTACT, VOLFS_PURGED, or -1 with errno.
  int pin(uint32_t k) { return volfs_slot_pin(&slots_[k]); }
  // Drops one pin of this holder; never fails for a pin it holds.
  void unpin(uint32_t k) { (void)volfs_slot_unpin(&slots_[k]); }
  void unpin_all();

 private:
  int fd_;
  std::filesystem::path path_;
  SegmentRecord record_;
  uint32_t holder_;
  std::byte* base_ = nullptr;
  std::unique_ptr<volfs_slot[]> slots_;  // never moved: threads share them
};

}  // namespace volfs::cache_detail
