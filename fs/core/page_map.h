// PageMap: the per-page state of one file, stored as runs of equal state.
// Invariant: runs are disjoint, non-empty, never hold the default state, and no
// two adjacent runs hold equal state (they are merged), so the map's size is
// the number of distinct state changes, not the number of pages.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace volfs::core {

// State of one page. Default-constructed means: a hole, not volatile.
struct PageFlags {
  uint64_t seq = 0;       // volatile: the mark that made it so (purge LRU order)
  uint32_t purge_id = 0;  // non-zero while a purge of this page is finishing
  bool resident = false;  // the store holds this page
  bool is_volatile = false;
  bool strict = false;  // volatile: purged access is an error, not zeros
  bool purged = false;  // volatile: lost its data since it was marked
  uint8_t prio = 0;     // volatile: purge priority class, 0 is purged first

  bool operator==(const PageFlags&) const = default;
  // A page the purge engine may take: volatile with data present (a purged
  // page written again holds data again, and may be purged again).
  bool purgeable() const { return is_volatile && resident; }
};

// Half-open page interval [first, end).
struct PageRange {
  uint64_t first = 0;
  uint64_t end = 0;
  uint64_t pages() const { return end - first; }
  bool operator==(const PageRange&) const = default;
};

class PageMap {
  struct Run {
    uint64_t end;
    PageFlags flags;
  };

 public:
  // Calls fn(PageRange, const PageFlags&) for every maximal piece of
  // [first, end) in order, holes included (with default flags).
  template <class Fn>
  void for_each(uint64_t first, uint64_t end, Fn&& fn) const {
    uint64_t pos = first;
    auto it = runs_.upper_bound(first);
    if (it != runs_.begin() && std::prev(it)->second.end > first) --it;
    for (; pos < end; ++it) {
      if (it == runs_.end() || it->first >= end) {
        fn(PageRange{pos, end}, kHole);
        break;
      }
      if (it->first > pos) fn(PageRange{pos, it->first}, kHole);
      uint64_t run_first = std::max(it->first, pos);
      uint64_t run_end = std::min(it->second.end, end);
      fn(PageRange{run_first, run_end}, it->second.flags);
      pos = run_end;
    }
  }

  // A prepared rewrite of [first, end): the runs that replace those of
  // [lo, hi) (the rewritten pages widened to the runs that touch them, so
  // that equal neighbours merge), and the pieces whose flags change.
  // Everything it needs is allocated when it is built; commit() only moves.
  struct Edit {
    struct Change {
      PageRange range;
      PageFlags old;
      PageFlags now;
    };
    uint64_t lo = 0, hi = 0;
    std::map<uint64_t, Run> runs;  // the new runs of [lo, hi), merged
    std::vector<Change> changes;   // in page order
  };

  // Builds the rewrite of [first, end): for every piece, fn(PageRange,
  // PageFlags&) on a copy of its flags. Pieces come in order; holes are
  // passed with default flags. May throw (std::bad_alloc); the map is not
  // touched. Valid until the map changes.
  template <class Fn>
  Edit prepare(uint64_t first, uint64_t end, Fn&& fn) const {
    Edit e;
    if (first >= end) return e;
    // Widen to the run ending at or containing `first` and the run
    // containing or starting at `end`: they may split or merge.
    e.lo = first;
    auto it = runs_.lower_bound(first);
    if (it != runs_.begin() && std::prev(it)->second.end >= first) e.lo = std::prev(it)->first;
    e.hi = end;
    it = runs_.upper_bound(end);
    if (it != runs_.begin() && std::prev(it)->second.end > end) e.hi = std::prev(it)->second.end;
    struct Piece {
      PageRange range;
      PageFlags flags;
    };
    std::vector<Piece> pieces;
    auto keep = [&](PageRange r, const PageFlags& f) { pieces.push_back(Piece{r, f}); };
    for_each(e.lo, first, keep);
    for_each(first, end, [&](PageRange r, const PageFlags& f) {
      PageFlags now = f;
      fn(r, now);
      if (!(now == f)) e.changes.push_back(typename Edit::Change{r, f, now});
      pieces.push_back(Piece{r, now});
    });
    for_each(end, e.hi, keep);
    uint64_t run_first = 0;
    const Piece* cur = nullptr;  // the run being built
    auto close = [&] {
      if (cur && !(cur->flags == kHole))
        e.runs.emplace_hint(e.runs.end(), run_first, Run{cur->range.end, cur->flags});
    };
    for (Piece& p : pieces) {
      if (cur && cur->flags == p.flags) {
        p.range.first = run_first;
      } else {
        close();
        run_first = p.range.first;
      }
      cur = &p;
    }
    close();
    return e;
  }

  // Installs a prepared rewrite, then calls observer(PageRange, old, new)
  // for every changed piece in order. Never allocates: the old runs are
  // erased, the prepared nodes spliced in (std::map::merge moves nodes).
  template <class Observer>
  void commit(Edit&& e, Observer&& observer) noexcept {
    if (e.lo >= e.hi) return;
    runs_.erase(runs_.lower_bound(e.lo), runs_.lower_bound(e.hi));
    runs_.merge(e.runs);
    assert(e.runs.empty());
    for (const auto& c : e.changes) observer(c.range, c.old, c.now);
  }

  // Rewrites [first, end): prepare, then commit. Strong guarantee: if it
  // throws, nothing changed and the observer was not called.
  template <class Fn, class Observer>
  void update(uint64_t first, uint64_t end, Fn&& fn, Observer&& observer) {
    commit(prepare(first, end, fn), observer);
  }

  // For an fn that changes no run partly outside [first, end): rewrites
  // the runs in place and merges equal neighbours, with no allocation.
  // Returns false, having changed nothing, if some run straddling an edge
  // would change (then update() is needed).
  template <class Fn, class Observer>
  bool update_in_place(uint64_t first, uint64_t end, Fn&& fn, Observer&& observer) noexcept {
    if (first >= end) return true;
    auto it = runs_.upper_bound(first);
    if (it != runs_.begin() && std::prev(it)->second.end > first) --it;
    auto stop = runs_.lower_bound(end);
    for (auto k = it; k != stop; ++k) {
      if (k->first >= first && k->second.end <= end) continue;
      PageFlags now = k->second.flags;
      fn(PageRange{std::max(k->first, first), std::min(k->second.end, end)}, now);
      if (!(now == k->second.flags)) return false;
    }
    for (auto k = it; k != stop; ++k) {
      if (k->first < first || k->second.end > end) continue;
      PageFlags now = k->second.flags;
      fn(PageRange{k->first, k->second.end}, now);
      if (now == k->second.flags) continue;
      PageFlags old = k->second.flags;
      k->second.flags = now;
      observer(PageRange{k->first, k->second.end}, old, now);
    }
    // Flags never become the hole's here in practice; drop such runs anyway.
    for (auto k = it; k != stop;) {
      if (k->second.flags == kHole) {
        k = runs_.erase(k);
      } else {
        ++k;
      }
    }
    coalesce(first, end);
    return true;
  }

  // Number of runs: the memory cost of the map.
  size_t run_count() const { return runs_.size(); }

  // Calls fn(PageRange, const PageFlags&) for every run (never holes); the
  // fuzz target compares them with its model.
  template <class Fn>
  void for_each_run(Fn&& fn) const {
    for (const auto& [first, run] : runs_) fn(PageRange{first, run.end}, run.flags);
  }

  // Checks the class invariant; for tests.
  bool valid() const {
    uint64_t prev_end = 0;
    const PageFlags* prev = nullptr;
    for (const auto& [first, run] : runs_) {
      if (run.end <= first || first < prev_end || run.flags == kHole) return false;
      if (prev && prev_end == first && *prev == run.flags) return false;
      prev_end = run.end;
      prev = &run.flags;
    }
    return true;
  }

  static constexpr PageFlags kHole{};

 private:
  // Merges equal adjacent runs from the one before `first` to the one at `end`.
  void coalesce(uint64_t first, uint64_t end) {
    auto it = runs_.lower_bound(first);
    if (it != runs_.begin()) --it;
    while (it != runs_.end() && it->first <= end) {
      auto next = std::next(it);
      if (next == runs_.end()) break;
      if (it->second.end == next->first && it->second.flags == next->second.flags) {
        it->second.end = next->second.end;
        runs_.erase(next);
      } else {
        it = next;
      }
    }
  }

  std::map<uint64_t, Run> runs_;  // keyed by first page
};

}  // namespace volfs::core
