// volfs/file.h: the C++ client API. A volfs::File is an open file on a volfs
// mount: size it, map it, mark ranges volatile, unmark them and learn whether
// they were purged. Errors are std::system_error naming the file and range.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace volfs {

// A byte range; length 0 means "to the end of the file". Offset and length
// must be multiples of the page size.
struct Range {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct MarkOptions {
  bool strict = false;                    // purged pages raise SIGBUS/EIO instead of reading zeros
  int priority = VOLFS_PRIORITY_DEFAULT;  // 0..7, lower is purged first
};

// What UNMARK learned. Ignoring it defeats the point, hence [[nodiscard]].
class [[nodiscard]] UnmarkResult {
 public:
  explicit UnmarkResult(bool purged) : purged_(purged) {}
  bool purged() const { return purged_; }
  bool intact() const { return !purged_; }

 private:
  bool purged_;
};

struct RangeStatus {
  uint64_t nonvolatile_pages = 0;
  uint64_t volatile_pages = 0;
  uint64_t purged_pages = 0;
  uint64_t resident_pages = 0;
  uint64_t strict_pages = 0;
  // Slots whose data overlaps the range: all, pinned now, purged and not
  // pinned since (zero from a daemon without slots).
  uint64_t slots = 0;
  uint64_t pinned_slots = 0;
  uint64_t purged_slots = 0;
};

// A shared mapping of a File; unmapped on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* data, size_t size) : data_(data), size_(size) {}
  ~Mapping();
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  template <class T = char>
  T* data() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// What VOLFS_IOC_SLOT_REGISTER answered: the open file's pin bit, and
// whether the slot is new (then it is pinned by that bit: Slot(..., true)).
struct SlotRegistration {
  uint32_t holder = 0;
  bool created = false;
};

class File {
 public:
  // Opens (flags as open(2), O_CLOEXEC added) a file that must be on a volfs
  // mount: anything else fails with ENOTTY, never silently.
  static File open(const std::filesystem::path& path, int flags = 0, mode_t mode = 0600);
  // Opens or creates for reading and writing.
  static File create(const std::filesystem::path& path, mode_t mode = 0600);

  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  int fd() const { return fd_; }
  const std::filesystem::path& path() const { return path_; }
  uint64_t size() const;
  void resize(uint64_t size);
  // Maps [offset, offset + length) MAP_SHARED; length 0 maps to the end.
  Mapping map(uint64_t offset = 0, uint64_t length = 0, int prot = PROT_READ | PROT_WRITE) const;

  void mark_volatile(Range r, MarkOptions o = {});
  UnmarkResult unmark(Range r);
  // Many ranges, one FUSE round trip per VOLFS_BATCH_MAX of them. Each batch
  // is checked before it is applied: a bad range throws, and only the
  // batches before its own have been applied. Results are in range order.
  void mark_volatile_ranges(std::span<const Range> ranges, MarkOptions o = {});
  [[nodiscard]] std::vector<UnmarkResult> unmark_ranges(std::span<const Range> ranges);
  RangeStatus status(Range r = {}) const;
  volfs_stats stats() const;
  // Purges up to `bytes` of the mount's volatile data (VOLFS_PURGE_ALL for
  // all); root or the mount owner only. Returns the bytes purged.
  uint64_t purge(uint64_t bytes);

  // Slots (Slot below; docs/volatile-ranges.md, "Slots"). The file must be
  // in passthrough io mode. register_slot makes `data` a slot with its word
  // at word_offset of this file, or attaches to the slot there.
  SlotRegistration register_slot(Range data, uint64_t word_offset, MarkOptions o = {});
  // `count` slots: slot k is data shifted by k * data.length, its word at
  // word_offset + k * sizeof(volfs_slot_word); all created or all attached.
  SlotRegistration register_slots(Range data, uint64_t word_offset, uint32_t count,
                                  MarkOptions o = {});
  // This open file's pin bit (taken on first use).
  uint32_t slot_holder();
  UnmarkResult unregister_slot(uint64_t word_offset);

  static uint64_t page_size();

 private:
  File(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  [[noreturn]] void fail(const char* what, Range r) const;
  [[noreturn]] void fail(const char* what) const;
  uint32_t mark_flags(MarkOptions o, Range r) const;

  int fd_ = -1;
  std::filesystem::path path_;
};

// RAII pin: unmarks the range on construction (purged() says whether its
// data was lost while it was volatile) and marks it volatile again on
// destruction. The range must be volatile or not, as the caller left it.
class [[nodiscard]] Pin {
 public:
  Pin(File& file, Range r, MarkOptions o = {});
  ~Pin();
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  bool purged() const { return purged_; }

 private:
  File& file_;
  Range range_;
  MarkOptions options_;
  bool purged_;
};

// A slot as one holder (an open File) sees it: pin and unpin are a
// compare-and-swap on the slot's word, no system call. Shared by the
// holder's threads, hence neither copied nor moved; the File whose bit it
// uses must stay open while pins are held. See volfs_slot_pin/unpin.
class Slot {
 public:
  // `word`: in a MAP_SHARED mapping of the slot's file; `pinned`: the slot
  // was just created through this holder (one pin to drop).
  Slot(volfs_slot_word* word, uint32_t holder, bool pinned = false) {
    volfs_slot_init(&slot_, word, holder, pinned ? 1 : 0);
  }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  // purged(): the data was purged since the slot was last pinned; the range
  // reads as zeros and is pinned now. Throws std::system_error (ESTALE) if
  // the word is no slot.
  UnmarkResult pin();
  void unpin();
  // The word's state now (VOLFS_SLOT_*), for diagnostics: it may change at once.
  uint32_t state() const { return VOLFS_SLOT_STATE(__atomic_load_n(slot_.word, __ATOMIC_RELAXED)); }

 private:
  volfs_slot slot_{};
};

// RAII pin of a Slot: pinned from construction to destruction.
class [[nodiscard]] SlotPin {
 public:
  explicit SlotPin(Slot& s) : slot_(&s), purged_(s.pin().purged()) {}
  ~SlotPin() {
    if (slot_) slot_->unpin();
  }
  SlotPin(SlotPin&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)), purged_(o.purged_) {}
  SlotPin& operator=(SlotPin&&) = delete;
  SlotPin(const SlotPin&) = delete;
  SlotPin& operator=(const SlotPin&) = delete;
  bool purged() const { return purged_; }
  bool intact() const { return !purged_; }

 private:
  Slot* slot_;
  bool purged_;
};

// Global accounting of the volfs mount that `path` is on.
volfs_stats stats(const std::filesystem::path& path);
// Purges the mount that `path` is on; returns the bytes purged.
uint64_t purge(const std::filesystem::path& path, uint64_t bytes);

}  // namespace volfs
