// FileState: page-precise volatile/resident/purged state of one file, kept in
// step with the global Accounting and PurgeQueue on every change.
// Not thread-safe: the owning inode's lock guards it. Invariants: the global
// counters equal the sum over all files of their pages' classification, and a
// mark has a PurgeQueue entry iff it has purgeable pages (volatile, resident)
// in this file. Every mutation has the strong guarantee: it allocates first
// and may throw std::bad_alloc with nothing changed, then commits with
// operations that cannot throw (docs/design.md, "Out of memory").
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "accounting.h"
#include "page_map.h"
#include "purge_queue.h"

namespace volfs::core {

struct RangeStatus {
  uint64_t nonvolatile_pages = 0;
  uint64_t volatile_pages = 0;
  uint64_t purged_pages = 0;
  uint64_t resident_pages = 0;
  uint64_t strict_pages = 0;
  // Slots whose data overlaps the range (filled in by Filesystem).
  uint64_t slots = 0;
  uint64_t pinned_slots = 0;
  uint64_t purged_slots = 0;
};

// What a write of a page range may do: fail with EIO (it touches a strict
// purged page), or land in `keep`. The rest belongs to pages whose purge is
// finishing, written back from the kernel's cache: that stale data is
// acknowledged and dropped, or it would resurrect what the purge freed.
struct WritePlan {
  bool eio = false;
  std::vector<PageRange> keep;
  uint64_t new_pages = 0;         // pages in `keep` that are not resident yet
  bool touches_volatile = false;  // some page in the range is volatile
  uint64_t holes = 0;             // hole pieces in the range (see max_new_runs)
  bool writeback = false;         // as planned
};

enum class UnmarkResult { kIntact, kPurged, kBusy };

class FileState {
 public:
  FileState(uint64_t ino, Accounting& acc, PurgeQueue& queue)
      : ino_(ino), acc_(acc), queue_(queue) {}
  ~FileState() { drop(0, kEndOfFile); }
  FileState(const FileState&) = delete;
  FileState& operator=(const FileState&) = delete;

  static constexpr uint64_t kEndOfFile = UINT64_MAX;

  // `writeback`: the data comes from the kernel's page cache (dirty mmap
  // pages), not from a write(2) issued now.
  WritePlan plan_write(PageRange r, bool writeback) const;
  // Makes the plan's pages resident; the caller charged plan.new_pages.
  void commit_write(const WritePlan& plan) { commit(prepare_write(plan)); }
  // The same in two steps, for callers with a fallible step of their own
  // between them (the store's): prepare may throw and changes nothing;
  // commit cannot fail. Nothing may change the state in between.
  [[nodiscard]] PageMap::Edit prepare_write(const WritePlan& plan) const;
  [[nodiscard]] PageMap::Edit prepare_resident(PageRange r) const;
  [[nodiscard]] PageMap::Edit prepare_drop(PageRange r) const {
    return map_.prepare(r.first, r.end, [](PageRange, PageFlags& f) { f = PageFlags{}; });
  }
  // Commits a prepared drop; returns the resident pages dropped.
  uint64_t commit_drop(PageMap::Edit&& e) noexcept {
    const uint64_t before = resident_pages_;
    commit(std::move(e));
    return before - resident_pages_;
  }
  void commit(PageMap::Edit&& e) noexcept {
    map_.commit(std::move(e), [this](PageRange p, const PageFlags& o, const PageFlags& n) {
      on_change(p.pages(), o, n);
    });
  }
  // Makes pages resident with no conditions (fallocate); returns how many
  // were not resident before (the caller charged that many beforehand, as
  // counted by nonresident_in).
  uint64_t make_resident(PageRange r);
  uint64_t nonresident_in(PageRange r) const;
  // Makes the pages of `data` resident: the store holds data there (FUSE
  // passthrough: writes and stores reach the store without the daemon, but
  // pages leave it only by the daemon's own punch, truncate or purge, so the
  // bits never need clearing here; fallocated pages read as holes to
  // SEEK_DATA and stay resident too). Charges them (Accounting::
  // charge_found) range by range, so that an allocation failure midway
  // leaves the charge and the state in step. Returns how many it found.
  uint64_t found_data(const std::vector<PageRange>& data);

  // Forgets every state of the pages (truncate, punch, delete). Returns the
  // number of resident pages dropped, for the caller to uncharge.
  uint64_t drop(uint64_t first, uint64_t end);

  void mark(PageRange r, uint8_t prio, bool strict, uint64_t seq);
  // kBusy: a purge of a page in the range is finishing; retry after it.
  UnmarkResult unmark(PageRange r);
  RangeStatus status(PageRange r) const;
  bool has_strict_purged(PageRange r) const;
  // Purged zero-fill pages: the kernel may cache their zeros.
  bool has_zero_fill_purged(PageRange r) const;
  // Hole pieces in r: an update of r adds at most holes_in(r) + 2 runs (each
  // hole may become a run, and the runs at both edges may split).
  uint64_t holes_in(PageRange r) const;
  bool has_purging(PageRange r) const;

  // Purges up to max_pages purgeable pages of mark `seq` inside r, lowest
  // first: they become purged, not resident, and carry purge_id until
  // finish_purge. Returns the page runs to punch out of the store.
  std::vector<PageRange> purge(PageRange r, uint64_t seq, uint64_t max_pages, uint32_t purge_id);
  void finish_purge(PageRange r, uint32_t purge_id);

  const PageMap& map() const { return map_; }
  uint64_t resident_pages() const { return resident_pages_; }
  uint64_t strict_pages() const { return strict_pages_; }  // volatile and strict
  uint64_t ino() const { return ino_; }

 private:
  struct MarkInfo {
    uint8_t prio = 0;
    PageRange range;
    uint64_t pages = 0;      // volatile pages carrying this seq
    uint64_t purgeable = 0;  // of which purgeable
    PurgeQueue::Node node;   // its queue entry while not queued (purgeable == 0)
  };
  // A write of page f drops its data (see WritePlan).
  static bool write_drops(const PageFlags& f, bool writeback) {
    return writeback && (f.purge_id != 0 || (f.is_volatile && f.strict && f.purged));
  }

  template <class Fn>
  void update(PageRange r, Fn&& fn) {
    commit(map_.prepare(r.first, r.end, fn));
  }
  // Keeps the counters and the queue in step; never allocates.
  void on_change(uint64_t pages, const PageFlags& o, const PageFlags& n) noexcept;

  const uint64_t ino_;
  Accounting& acc_;
  PurgeQueue& queue_;
  PageMap map_;
  std::unordered_map<uint64_t, MarkInfo> marks_;  // by seq
  uint64_t resident_pages_ = 0;
  uint64_t strict_pages_ = 0;
};

}  // namespace volfs::core
