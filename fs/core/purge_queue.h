// PurgeQueue: the global purge order across all files of a mount.
// One entry per mark (priority, sequence) that still has purgeable pages;
// ordered by priority class, then by mark age (least recently marked first).
// Lock order: a file's lock comes before queue_mu_; nothing is called with
// queue_mu_ held.
#pragma once

#include <cassert>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>

#include "page_map.h"

namespace volfs {

struct PurgeEntry {
  uint8_t prio = 0;
  uint64_t seq = 0;
  uint64_t ino = 0;
  PageRange range;  // the pages the mark covered; purge looks only there

  bool operator<(const PurgeEntry& o) const { return prio != o.prio ? prio < o.prio : seq < o.seq; }
};

class PurgeQueue {
 public:
  void add(const PurgeEntry& e) {
    std::lock_guard lock(mu_);
    [[maybe_unused]] bool inserted = entries_.insert(e).second;
    assert(inserted);
  }
  void remove(uint8_t prio, uint64_t seq) {
    std::lock_guard lock(mu_);
    [[maybe_unused]] size_t n = entries_.erase(key(prio, seq));
    assert(n == 1);
  }
  std::optional<PurgeEntry> front() const {
    std::lock_guard lock(mu_);
    if (entries_.empty()) return std::nullopt;
    return *entries_.begin();
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

 private:
  static PurgeEntry key(uint8_t prio, uint64_t seq) {
    PurgeEntry e;
    e.prio = prio;
    e.seq = seq;
    return e;
  }

  mutable std::mutex mu_;         // guards entries_; innermost lock
  std::set<PurgeEntry> entries_;  // GUARDED_BY(mu_)
};

}  // namespace volfs
