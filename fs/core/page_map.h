// PageMap: the per-page state of one file, stored as runs of equal state.
// Invariant: runs are disjoint, non-empty, never hold the default state, and no
// two adjacent runs hold equal state (they are merged), so the map's size is
// the number of distinct state changes, not the number of pages.
#pragma once

#include <cassert>
#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

namespace volfs {

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

  // Rewrites [first, end): for every piece, calls fn(PageRange, PageFlags&)
  // on a copy of its flags, then observer(PageRange, old, new) and stores the
  // result. Pieces come in order; holes are passed with default flags.
  template <class Fn, class Observer>
  void update(uint64_t first, uint64_t end, Fn&& fn, Observer&& observer) {
    if (first >= end) return;
    struct Piece {
      PageRange range;
      PageFlags flags;
    };
    std::vector<Piece> pieces;
    for_each(first, end, [&](PageRange r, const PageFlags& f) { pieces.push_back(Piece{r, f}); });
    split_at(first);
    split_at(end);
    runs_.erase(runs_.lower_bound(first), runs_.lower_bound(end));
    for (auto& p : pieces) {
      PageFlags old = p.flags;
      fn(p.range, p.flags);
      if (!(old == p.flags)) observer(p.range, old, p.flags);
      if (!(p.flags == kHole)) runs_.emplace(p.range.first, Run{p.range.end, p.flags});
    }
    coalesce(first, end);
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
  struct Run {
    uint64_t end;
    PageFlags flags;
  };

  // Makes `page` the start of a run if a run covers it.
  void split_at(uint64_t page) {
    auto it = runs_.upper_bound(page);
    if (it == runs_.begin()) return;
    --it;
    if (it->first < page && it->second.end > page) {
      Run tail{it->second.end, it->second.flags};
      it->second.end = page;
      runs_.emplace_hint(std::next(it), page, tail);
    }
  }

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

}  // namespace volfs
