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
#include <vector>

#include "page_map.h"

namespace volfs::core {

struct PurgeEntry {
  uint8_t prio = 0;
  uint64_t seq = 0;
  uint64_t ino = 0;
  PageRange range;  // the pages the mark covered; purge looks only there

  bool operator<(const PurgeEntry& o) const { return prio != o.prio ? prio < o.prio : seq < o.seq; }
};

class PurgeQueue {
 public:
  // An entry's storage, made before the state change that queues it, so
  // that queueing and unqueueing never allocate (docs/design.md, "Out of
  // memory"): a mark owns its node, and lends it to the queue while it has
  // purgeable pages.
  using Node = std::set<PurgeEntry>::node_type;
  static Node make_node(const PurgeEntry& e) {
    std::set<PurgeEntry> one;
    one.insert(e);
    return one.extract(one.begin());
  }

  void add(Node&& n) noexcept {
    std::lock_guard lock(mu_);
    [[maybe_unused]] auto r = entries_.insert(std::move(n));
    assert(r.inserted);
  }
  void add(const PurgeEntry& e) { add(make_node(e)); }
  // Returns the entry's node, for the next add().
  Node remove(uint8_t prio, uint64_t seq) noexcept {
    std::lock_guard lock(mu_);
    Node n = entries_.extract(key(prio, seq));
    assert(!n.empty());
    return n;
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
  // Every entry in purge order; for tests.
  std::vector<PurgeEntry> entries() const {
    std::lock_guard lock(mu_);
    return {entries_.begin(), entries_.end()};
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

}  // namespace volfs::core
