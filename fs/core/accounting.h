// Accounting: the global page counters of a mount, shared by every file.
// Counters move by deltas applied under the owning file's lock, so each one is
// exact whenever no operation is in flight; a snapshot taken during operations
// may mix before and after states of different files, never of one page.
#pragma once

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>

namespace volfs::core {

// Why pages were purged: each trigger of the purge engine is counted apart.
// The adapter maps these onto VOLFS_SOURCE_* (same order) at the ABI edge.
enum class PurgeCause : uint8_t {
  kSizeLimit,     // a write that could not charge size=
  kWatermark,     // purge_high=/purge_low=
  kExplicit,      // VOLFS_IOC_PURGE
  kOnMark,        // -o purge_on_mark
  kMemAvailable,  // MemAvailable below mem_min=
  kPsi,           // a PSI trigger on /proc/pressure/memory
  kCgroup,        // the daemon's memory cgroup near its limit
};
inline constexpr size_t kPurgeCauses = 7;

// Per cause: requests (the trigger asked for a purge, even if another
// trigger's purge in the same round covered it or nothing was purgeable),
// purges (requests that took at least one page) and the pages taken.
struct CauseCounters {
  uint64_t signals = 0;
  uint64_t purges = 0;
  uint64_t pages = 0;
};

struct AccountingSnapshot {
  uint64_t page_size = 0;
  uint64_t limit_pages = 0;
  uint64_t charged_pages = 0;
  uint64_t files = 0;
  uint64_t inodes = 0;
  uint64_t resident_pages = 0;
  uint64_t volatile_pages = 0;
  uint64_t volatile_resident_pages = 0;
  uint64_t purged_pages = 0;
  uint64_t pages_purged_total = 0;
  uint64_t purge_events_total = 0;
  // Reserved, always 0: volfs answers PURGED only when a page of the range
  // lost stored contents (only resident pages are purged), so no answer is
  // false. Kept because volfs_stats carries it (docs/volatile-ranges.md).
  uint64_t false_purged_total = 0;
  uint64_t unmark_purged_total = 0;
  uint64_t unmark_intact_total = 0;
  std::array<CauseCounters, kPurgeCauses> causes{};
};

class Accounting {
 public:
  Accounting(uint64_t page_size, uint64_t limit_pages)
      : page_size_(page_size), limit_pages_(limit_pages) {}

  // Reserves `pages` of the size limit for pages about to become resident.
  // Relaxed is enough: the counter guards a quota, it publishes no data.
  [[nodiscard]] bool try_charge(uint64_t pages) {
    uint64_t cur = charged_.load(std::memory_order_relaxed);
    do {
      if (pages > limit_pages_ || cur > limit_pages_ - pages) return false;
    } while (!charged_.compare_exchange_weak(cur, cur + pages, std::memory_order_relaxed));
    return true;
  }
  // Charges pages that are resident already, limit or not: FUSE passthrough
  // writes reach the store without the daemon, which finds them afterwards
  // (the private tmpfs of the store enforced the limit on them).
  void charge_found(uint64_t pages) { charged_.fetch_add(pages, std::memory_order_relaxed); }
  void uncharge(uint64_t pages) {
    [[maybe_unused]] uint64_t before = charged_.fetch_sub(pages, std::memory_order_relaxed);
    assert(before >= pages);
  }
  uint64_t charged_pages() const { return charged_.load(std::memory_order_relaxed); }
  uint64_t limit_pages() const { return limit_pages_; }
  uint64_t page_size() const { return page_size_; }

  // Deltas, applied by FileState under the file's lock.
  void add_resident(int64_t d) { add(resident_, d); }
  void add_volatile(int64_t d) { add(volatile_, d); }
  void add_volatile_resident(int64_t d) { add(volatile_resident_, d); }
  void add_purged(int64_t d) { add(purged_, d); }
  void add_files(int64_t d) { add(files_, d); }
  void add_inodes(int64_t d) { add(inodes_, d); }
  void count_purge(uint64_t pages) {
    add(pages_purged_total_, static_cast<int64_t>(pages));
    add(purge_events_total_, 1);
  }
  // A trigger asked for a purge and `pages` were taken for it (0: none).
  void count_request(PurgeCause cause, uint64_t pages) {
    CauseAtomics& c = causes_[static_cast<size_t>(cause)];
    add(c.signals, 1);
    if (pages) {
      add(c.purges, 1);
      add(c.pages, static_cast<int64_t>(pages));
    }
  }
  void count_unmark(bool purged) { add(purged ? unmark_purged_ : unmark_intact_, 1); }

  // Reserves an inode number slot against `limit`; false when full.
  [[nodiscard]] bool try_add_inode(uint64_t limit) {
    uint64_t cur = inodes_.load(std::memory_order_relaxed);
    do {
      if (cur >= limit) return false;
    } while (!inodes_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
    return true;
  }
  uint64_t inodes() const { return inodes_.load(std::memory_order_relaxed); }
  uint64_t resident_pages() const { return resident_.load(std::memory_order_relaxed); }

  AccountingSnapshot snapshot() const {
    auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_acquire); };
    std::array<CauseCounters, kPurgeCauses> causes{};
    for (size_t k = 0; k < kPurgeCauses; ++k) {
      causes[k] = {r(causes_[k].signals), r(causes_[k].purges), r(causes_[k].pages)};
    }
    return AccountingSnapshot{
        .page_size = page_size_,
        .limit_pages = limit_pages_,
        .charged_pages = r(charged_),
        .files = r(files_),
        .inodes = r(inodes_),
        .resident_pages = r(resident_),
        .volatile_pages = r(volatile_),
        .volatile_resident_pages = r(volatile_resident_),
        .purged_pages = r(purged_),
        .pages_purged_total = r(pages_purged_total_),
        .purge_events_total = r(purge_events_total_),
        .false_purged_total = 0,
        .unmark_purged_total = r(unmark_purged_),
        .unmark_intact_total = r(unmark_intact_),
        .causes = causes,
    };
  }

 private:
  // Release here, acquire in snapshot(): an operation that moves several
  // counters moves the totals first (count_purge before the pages leave), so
  // a snapshot that sees a later counter's new value, read in field order,
  // also sees the earlier ones. Under the file locks nothing else is needed.
  static void add(std::atomic<uint64_t>& a, int64_t d) {
    a.fetch_add(static_cast<uint64_t>(d), std::memory_order_release);
  }

  const uint64_t page_size_;
  const uint64_t limit_pages_;
  std::atomic<uint64_t> charged_{0};
  std::atomic<uint64_t> files_{0};
  std::atomic<uint64_t> inodes_{0};
  std::atomic<uint64_t> resident_{0};
  std::atomic<uint64_t> volatile_{0};
  std::atomic<uint64_t> volatile_resident_{0};
  std::atomic<uint64_t> purged_{0};
  std::atomic<uint64_t> pages_purged_total_{0};
  std::atomic<uint64_t> purge_events_total_{0};
  std::atomic<uint64_t> unmark_purged_{0};
  std::atomic<uint64_t> unmark_intact_{0};
  struct CauseAtomics {
    std::atomic<uint64_t> signals{0}, purges{0}, pages{0};
  };
  std::array<CauseAtomics, kPurgeCauses> causes_{};
};

}  // namespace volfs::core
