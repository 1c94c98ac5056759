// FileState: see file_state.h. Every change of a page's flags goes through
// on_change, which keeps the global counters and the purge queue exact.
#include "file_state.h"

#include <algorithm>
#include <cassert>

namespace volfs::core {

void FileState::on_change(uint64_t pages, const PageFlags& o, const PageFlags& n) noexcept {
  auto n64 = static_cast<int64_t>(pages);
  auto delta = [n64](bool before, bool after) { return (int64_t{after} - int64_t{before}) * n64; };
  acc_.add_resident(delta(o.resident, n.resident));
  resident_pages_ += static_cast<uint64_t>(delta(o.resident, n.resident));
  strict_pages_ +=
      static_cast<uint64_t>(delta(o.is_volatile && o.strict, n.is_volatile && n.strict));
  acc_.add_volatile(delta(o.is_volatile, n.is_volatile));
  acc_.add_volatile_resident(delta(o.is_volatile && o.resident, n.is_volatile && n.resident));
  acc_.add_purged(delta(o.is_volatile && o.purged, n.is_volatile && n.purged));

  if (o.is_volatile) {
    auto it = marks_.find(o.seq);
    assert(it != marks_.end());
    MarkInfo& m = it->second;
    if (o.purgeable()) {
      assert(m.purgeable >= pages);
      m.purgeable -= pages;
      if (m.purgeable == 0) m.node = queue_.remove(m.prio, o.seq);
    }
    assert(m.pages >= pages);
    m.pages -= pages;
  }
  if (n.is_volatile) {
    auto it = marks_.find(n.seq);
    assert(it != marks_.end());
    MarkInfo& m = it->second;
    m.pages += pages;
    if (n.purgeable()) {
      if (m.purgeable == 0) {
        assert(!m.node.empty());
        queue_.add(std::move(m.node));
      }
      m.purgeable += pages;
    }
  }
  // A mark with no pages left is forgotten. The old one is checked after the
  // new one was counted, so a page moving within one mark never loses it.
  if (o.is_volatile) {
    auto it = marks_.find(o.seq);
    if (it->second.pages == 0) marks_.erase(it);
  }
}

WritePlan FileState::plan_write(PageRange r, bool writeback) const {
  WritePlan plan;
  plan.writeback = writeback;
  map_.for_each(r.first, r.end, [&](PageRange p, const PageFlags& f) {
    // Stale data racing a purge (purge_id), or write-back of a page that is
    // strict purged by now (re-marked strict after a purge, or dirtied while
    // a purge finished): nobody can read it, and a purged volatile page may
    // lose writes, so it is dropped, not an error that a later fsync would
    // report.
    if (write_drops(f, writeback)) return;
    // A write(2) into a purged page: EIO if strict, else the page holds data
    // again (still volatile, still purged).
    if (f.is_volatile && f.strict && f.purged) plan.eio = true;
    if (f.is_volatile) plan.touches_volatile = true;
    if (f == PageMap::kHole) ++plan.holes;
    if (!plan.keep.empty() && plan.keep.back().end == p.first) {
      plan.keep.back().end = p.end;
    } else {
      plan.keep.push_back(p);
    }
    if (!f.resident) plan.new_pages += p.pages();
  });
  return plan;
}

PageMap::Edit FileState::prepare_write(const WritePlan& plan) const {
  assert(!plan.eio);
  if (plan.keep.empty()) return {};
  // One rewrite of the span, so that the commit is one step: between the
  // kept ranges lie exactly the pieces the plan drops.
  const bool wb = plan.writeback;
  return map_.prepare(plan.keep.front().first, plan.keep.back().end, [wb](PageRange, PageFlags& f) {
    if (!write_drops(f, wb)) f.resident = true;
  });
}

PageMap::Edit FileState::prepare_resident(PageRange r) const {
  return map_.prepare(r.first, r.end, [](PageRange, PageFlags& f) { f.resident = true; });
}

uint64_t FileState::make_resident(PageRange r) {
  uint64_t added = 0;
  update(r, [&](PageRange p, PageFlags& f) {
    if (!f.resident) added += p.pages();
    f.resident = true;
  });
  return added;
}

uint64_t FileState::found_data(const std::vector<PageRange>& data) {
  uint64_t added = 0;
  for (const PageRange& d : data) {
    uint64_t here = 0;
    update(d, [&](PageRange p, PageFlags& f) {
      if (!f.resident) here += p.pages();
      f.resident = true;
    });
    acc_.charge_found(here);
    added += here;
  }
  return added;
}

uint64_t FileState::nonresident_in(PageRange r) const {
  uint64_t n = 0;
  map_.for_each(r.first, r.end, [&](PageRange p, const PageFlags& f) {
    if (!f.resident) n += p.pages();
  });
  return n;
}

uint64_t FileState::drop(uint64_t first, uint64_t end) {
  const uint64_t before = resident_pages_;
  // PageMap walks runs, not pages, so a huge range costs only its runs.
  // Where no run straddles an edge (a whole file: destruction), in place,
  // with no allocation; else a rewrite that may throw, changing nothing.
  auto forget = [](PageRange, PageFlags& f) { f = PageFlags{}; };
  if (!map_.update_in_place(first, end, forget,
                            [this](PageRange p, const PageFlags& o, const PageFlags& n) {
                              on_change(p.pages(), o, n);
                            })) {
    update(PageRange{first, end}, forget);
  }
  return before - resident_pages_;
}

void FileState::mark(PageRange r, uint8_t prio, bool strict, uint64_t seq) {
  if (r.first >= r.end) return;
  assert(marks_.find(seq) == marks_.end());
  // Everything allocated before anything changes: the mark's queue node,
  // its MarkInfo, the rewrite of its pages.
  PurgeQueue::Node node =
      PurgeQueue::make_node(PurgeEntry{.prio = prio, .seq = seq, .ino = ino_, .range = r});
  PageMap::Edit edit = map_.prepare(r.first, r.end, [&](PageRange, PageFlags& f) {
    // A page that stays volatile keeps its purged flag: the data it lost
    // since it was first marked is still lost.
    f.purged = f.is_volatile && f.purged;
    f.is_volatile = true;
    f.strict = strict;
    f.prio = prio;
    f.seq = seq;
  });
  marks_.emplace(
      seq, MarkInfo{.prio = prio, .range = r, .pages = 0, .purgeable = 0, .node = std::move(node)});
  commit(std::move(edit));
  auto it = marks_.find(seq);
  if (it != marks_.end() && it->second.pages == 0) marks_.erase(it);
}

UnmarkResult FileState::unmark(PageRange r) {
  if (has_purging(r)) return UnmarkResult::kBusy;
  bool purged = false;
  update(r, [&](PageRange, PageFlags& f) {
    purged = purged || (f.is_volatile && f.purged);
    f = PageFlags{.resident = f.resident};
  });
  acc_.count_unmark(purged);
  return purged ? UnmarkResult::kPurged : UnmarkResult::kIntact;
}

RangeStatus FileState::status(PageRange r) const {
  RangeStatus s;
  map_.for_each(r.first, r.end, [&](PageRange p, const PageFlags& f) {
    uint64_t n = p.pages();
    (f.is_volatile ? s.volatile_pages : s.nonvolatile_pages) += n;
    if (f.is_volatile && f.purged) s.purged_pages += n;
    if (f.is_volatile && f.strict) s.strict_pages += n;
    if (f.resident) s.resident_pages += n;
  });
  return s;
}

bool FileState::has_strict_purged(PageRange r) const {
  bool found = false;
  map_.for_each(r.first, r.end, [&](PageRange, const PageFlags& f) {
    found = found || (f.is_volatile && f.strict && f.purged);
  });
  return found;
}

bool FileState::has_zero_fill_purged(PageRange r) const {
  bool found = false;
  map_.for_each(r.first, r.end, [&](PageRange, const PageFlags& f) {
    found = found || (f.is_volatile && !f.strict && f.purged);
  });
  return found;
}

uint64_t FileState::holes_in(PageRange r) const {
  uint64_t n = 0;
  map_.for_each(r.first, r.end, [&](PageRange, const PageFlags& f) { n += f == PageMap::kHole; });
  return n;
}

bool FileState::has_purging(PageRange r) const {
  bool found = false;
  map_.for_each(r.first, r.end,
                [&](PageRange, const PageFlags& f) { found = found || f.purge_id != 0; });
  return found;
}

std::vector<PageRange> FileState::purge(PageRange r, uint64_t seq, uint64_t max_pages,
                                        uint32_t purge_id) {
  assert(purge_id != 0);
  std::vector<PageRange> victims;
  uint64_t budget = max_pages;
  map_.for_each(r.first, r.end, [&](PageRange p, const PageFlags& f) {
    if (budget == 0 || !f.purgeable() || f.seq != seq) return;
    PageRange take{p.first, p.first + std::min(budget, p.pages())};
    budget -= take.pages();
    if (!victims.empty() && victims.back().end == take.first) {
      victims.back().end = take.end;
    } else {
      victims.push_back(take);
    }
  });
  if (victims.empty()) return victims;
  // One rewrite of the span: inside it, every purgeable page of the mark is
  // a victim (only the last victim may be cut short by the budget, and the
  // span ends with it).
  PageMap::Edit edit =
      map_.prepare(victims.front().first, victims.back().end, [&](PageRange, PageFlags& f) {
        if (!f.purgeable() || f.seq != seq) return;
        f.resident = false;
        f.purged = true;
        f.purge_id = purge_id;
      });
  // Count first: see Accounting::add for why the order matters to readers.
  acc_.count_purge(max_pages - budget);
  commit(std::move(edit));
  return victims;
}

void FileState::finish_purge(PageRange r, uint32_t purge_id) {
  auto clear = [purge_id](PageRange, PageFlags& f) {
    if (f.purge_id == purge_id) f.purge_id = 0;
  };
  // The pages carrying purge_id are runs of their own inside r (no other
  // page has that id), so clearing it only rewrites and merges runs: in
  // place, with no allocation, as phase 2 of a purge must not fail.
  if (map_.update_in_place(r.first, r.end, clear,
                           [this](PageRange p, const PageFlags& o, const PageFlags& n) {
                             on_change(p.pages(), o, n);
                           })) {
    return;
  }
  assert(!"finish_purge: a purging run straddles the range");
  update(r, clear);
}

}  // namespace volfs::core
