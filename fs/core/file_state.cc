// FileState: see file_state.h. Every change of a page's flags goes through
// on_change, which keeps the global counters and the purge queue exact.
#include "file_state.h"

#include <algorithm>
#include <cassert>

namespace volfs {

void FileState::on_change(uint64_t pages, const PageFlags& o, const PageFlags& n) {
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
      if (m.purgeable == 0) queue_.remove(m.prio, o.seq);
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
        queue_.add(PurgeEntry{.prio = m.prio, .seq = n.seq, .ino = ino_, .range = m.range});
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
  map_.for_each(r.first, r.end, [&](PageRange p, const PageFlags& f) {
    if (f.purge_id != 0 && writeback) return;  // stale data racing a purge: dropped
    // Write-back of a page that is strict purged by now (re-marked strict
    // after a purge, or dirtied while a purge finished): nobody can read it,
    // and a purged volatile page may lose writes, so it is dropped, not an
    // error that a later fsync would report.
    if (writeback && f.is_volatile && f.strict && f.purged) return;
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

void FileState::commit_write(const WritePlan& plan) {
  assert(!plan.eio);
  for (const PageRange& r : plan.keep) {
    update(r, [](PageRange, PageFlags& f) { f.resident = true; });
  }
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
    update(d, [&](PageRange p, PageFlags& f) {
      if (!f.resident) added += p.pages();
      f.resident = true;
    });
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
  uint64_t freed = 0;
  // PageMap walks runs, not pages, so a huge range costs only its runs.
  update(PageRange{first, end}, [&](PageRange p, PageFlags& f) {
    if (f.resident) freed += p.pages();
    f = PageFlags{};
  });
  return freed;
}

void FileState::mark(PageRange r, uint8_t prio, bool strict, uint64_t seq) {
  if (r.first >= r.end) return;
  assert(marks_.find(seq) == marks_.end());
  marks_.emplace(seq, MarkInfo{.prio = prio, .range = r, .pages = 0, .purgeable = 0});
  update(r, [&](PageRange, PageFlags& f) {
    // A page that stays volatile keeps its purged flag: the data it lost
    // since it was first marked is still lost.
    f.purged = f.is_volatile && f.purged;
    f.is_volatile = true;
    f.strict = strict;
    f.prio = prio;
    f.seq = seq;
  });
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
  // Count first: see Accounting::add for why the order matters to readers.
  if (budget < max_pages) acc_.count_purge(max_pages - budget);
  for (const PageRange& v : victims) {
    update(v, [&](PageRange, PageFlags& f) {
      f.resident = false;
      f.purged = true;
      f.purge_id = purge_id;
    });
  }
  return victims;
}

void FileState::finish_purge(PageRange r, uint32_t purge_id) {
  update(r, [&](PageRange, PageFlags& f) {
    if (f.purge_id == purge_id) f.purge_id = 0;
  });
}

}  // namespace volfs
