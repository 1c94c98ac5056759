// Filesystem, volatile ranges: mark, unmark (batches) and range status.
// See filesystem.h for the interface and the lock order.
#include "filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/xattr.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>

#include "filesystem_internal.h"

namespace volfs::core {

Result<PageRange> Filesystem::volatile_range(const Inode& i, ByteRange r, bool for_mark) const {
  if (r.offset % page_size_ || r.length % page_size_) return Err{EINVAL};
  if (r.offset > UINT64_MAX - r.length) return Err{EINVAL};
  uint64_t file_pages = (i.size + page_size_ - 1) / page_size_;
  uint64_t first = r.offset / page_size_;
  uint64_t end = r.length ? (r.offset + r.length) / page_size_ : std::max(first, file_pages);
  // Volatile pages live inside the file (truncate takes them away), so a
  // mark may not reach past its end; unmark and status may, harmlessly.
  if (for_mark && end > file_pages) return Err{EINVAL};
  return PageRange{first, end};
}

void Filesystem::mark(const OpenFile& f, ByteRange r, MarkOptions o, MarkDone done) {
  mark_batch(f, {MarkRequest{r, o}}, std::move(done));
}

void Filesystem::unmark(const OpenFile& f, ByteRange r, UnmarkDone done) {
  unmark_batch(f, {r}, [done = std::move(done)](Result<std::vector<bool>> purged) {
    if (!purged.ok()) return done(Err{purged.err()});
    done(bool{purged->front()});
  });
}

void Filesystem::mark_batch(const OpenFile& f, const std::vector<MarkRequest>& ranges,
                            MarkDone done) {
  std::shared_ptr<Inode> i = f.inode;
  if (!i->is_reg()) return done(Err{EINVAL});
  if (!f.writable()) return done(Err{EBADF});
  for (const MarkRequest& m : ranges) {
    if (m.options.prio > kMaxPriority) return done(Err{EINVAL});
  }
  std::vector<PurgeEntry> entries;
  entries.reserve(ranges.size());
  std::vector<PageRange> strict_now;  // purged zero-fill pages made strict
  strict_now.reserve(ranges.size());
  // A strict mark may have to drop the kernel's zeros on the worker after
  // it commits: that job is allocated now (docs/design.md, "Out of memory").
  std::shared_ptr<MarkInvalidation> inval;
  PurgeWorker::Job inval_job;
  for (const MarkRequest& m : ranges) {
    if (!m.options.strict || inval) continue;
    inval = std::make_shared<MarkInvalidation>();
    inval_job = PurgeWorker::make_job([this, inval] { run_invalidation(*inval); });
  }
  int err = 0;  // answered after mu is released
  {
    std::lock_guard lock(i->mu);
    sync_with_store(*i, PageRange{0, 0});
    std::vector<PageRange> pages;
    pages.reserve(ranges.size());
    for (const MarkRequest& m : ranges) {
      Result<PageRange> p = volatile_range(*i, m.range, /*for_mark=*/true);
      if (!p.ok()) {
        err = p.err();
        break;
      }
      // Strict pages need the kernel to ask the daemon before each access,
      // which it never does for a file in passthrough.
      if (m.options.strict && i->passthrough()) {
        err = EOPNOTSUPP;
        break;
      }
      // A slot's volatility is its word's alone.
      if (i->slots && i->slots->overlaps(*p)) {
        err = EBUSY;
        break;
      }
      pages.push_back(*p);
    }
    // Which pages hold data: passthrough writes went around the daemon.
    // One look over the batch's hull when it is compact (a batch of 64
    // neighbouring ranges then costs one mincore, not 64).
    if (!err && i->passthrough() && !pages.empty()) {
      PageRange hull = pages.front();
      uint64_t total = 0;
      for (const PageRange& p : pages) {
        hull = PageRange{std::min(hull.first, p.first), std::max(hull.end, p.end)};
        total += p.pages();
      }
      if (hull.pages() <= 4 * total + 64) {
        sync_with_store(*i, hull);
      } else {
        for (const PageRange& p : pages) sync_with_store(*i, p);
      }
    }
    // Bound the file's runs (kMaxRunsPerFile) before anything changes, so
    // a batch is all or nothing. Each range adds at most its holes + 2 runs;
    // + 3, as an earlier range of the batch may split a hole this one sees.
    uint64_t runs = i->state->map().run_count();
    for (size_t k = 0; k < pages.size() && !err; ++k) {
      runs += i->state->holes_in(pages[k]) + 3;
      if (runs > kMaxRunsPerFile) err = ENOSPC;
    }
    for (size_t k = 0; k < pages.size() && !err; ++k) {
      const MarkOptions o = ranges[k].options;
      const uint8_t prio = o.prio;
      uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
      const bool zeros = o.strict && i->state->has_zero_fill_purged(pages[k]);
      try {
        i->state->mark(pages[k], prio, o.strict, seq);
      } catch (const std::bad_alloc&) {
        // Each mark is all or nothing; the ranges before this one stay
        // marked, as after that many single calls of which this one failed.
        if (k == 0) throw;
        err = ENOMEM;
        break;
      }
      if (zeros) strict_now.push_back(pages[k]);  // reserved: cannot fail
      entries.push_back(PurgeEntry{.prio = prio, .seq = seq, .ino = i->ino, .range = pages[k]});
    }
    if (!strict_now.empty()) ++i->settling;  // ended by run_invalidation
  }
  if (err && strict_now.empty()) return done(Err{err});
  // Room for writes next to the data just marked; and passthrough writes the
  // daemon did not see may have gone above size= already: purge now, not at
  // the next tick.
  if (fit_backing() && worker_) worker_->wake();
  if (!strict_now.empty()) {
    // Those pages read as zeros until now, and the kernel may hold the zeros
    // in its cache and in mappings: drop them before answering, so that from
    // the answer on every read fails (EIO, SIGBUS) as on any strict purged
    // page. The inode settles meanwhile (under mu, with the mark), so that
    // GET_STATUS, which already says strict and purged, and UNMARK wait.
    // Only moves from here on: nothing can fail with the inode settling.
    inval->inode = std::move(i);
    inval->ranges = std::move(strict_now);
    inval->entries = std::move(entries);
    inval->err = err;
    inval->done = std::move(done);
    if (!worker_) return inval_job.front()();
    return worker_->post(std::move(inval_job));
  }
  finish_mark(entries, done);
}

void Filesystem::finish_mark(const std::vector<PurgeEntry>& entries, const MarkDone& done) {
  if (!options_.purge_on_mark) return done({});
  // Debug mode: purge what was just marked, and answer once every mapping
  // sees it, so applications meet the purged state as early as possible.
  // The marks stand whatever happens here: out of memory, the purge is
  // shorter (or none), and the mark still succeeds.
  PendingFinish fin;
  try {
    fin = prepare_finish([done](uint64_t) { done({}); });
  } catch (const std::bad_alloc&) {
    return done({});
  }
  uint64_t purged = 0;
  try {
    for (const PurgeEntry& e : entries) purged += purge_entry(e, UINT64_MAX, fin.state->batches);
  } catch (const std::bad_alloc&) {
  }
  fin.state->pages = purged;
  acc_.count_request(PurgeCause::kOnMark, purged);
  post_finish(std::move(fin));
}

void Filesystem::unmark_batch(const OpenFile& f, const std::vector<ByteRange>& ranges,
                              UnmarkBatchDone done) {
  std::shared_ptr<Inode> i = f.inode;
  if (!i->is_reg()) return done(Err{EINVAL});
  if (!f.writable()) return done(Err{EBADF});
  auto job = std::make_shared<UnmarkJob>();
  job->inode = i;
  job->done = std::move(done);
  int err = 0;  // answered after mu is released
  {
    std::lock_guard lock(i->mu);
    sync_with_store(*i, PageRange{0, 0});
    for (const ByteRange& r : ranges) {
      Result<PageRange> p = volatile_range(*i, r, /*for_mark=*/false);
      if (!p.ok()) {
        err = p.err();
        break;
      }
      if (i->slots && i->slots->overlaps(*p)) {
        err = EBUSY;  // pinned by a slot pin, not by UNMARK
        break;
      }
      job->ranges.push_back(*p);
    }
  }
  if (err) return job->done(Err{err});
  try_unmark(std::move(job));
}

// By value, and copied (not moved) into a waiter below: this copy keeps the job, and with it the
// inode whose mu `lock` holds, alive until after the unlock, even if the purge worker takes the
// waiter, runs it and drops the last reference the moment mu is free.
// NOLINTNEXTLINE(performance-unnecessary-value-param)
void Filesystem::try_unmark(std::shared_ptr<UnmarkJob> job) {
  std::unique_lock lock(job->inode->mu);
  for (; job->next < job->ranges.size(); ++job->next) {
    UnmarkResult res = job->inode->settling ? UnmarkResult::kBusy
                                            : job->inode->state->unmark(job->ranges[job->next]);
    if (res == UnmarkResult::kBusy) {
      // A purge of a page in the range is finishing (or, settling, of a page
      // of this file). Its last step runs this again, which goes on from
      // this range. Answering before then would let it drop a write made
      // after the unmark returned, or let its last invalidation turn a page
      // that is non-volatile by then into zeros.
      try {
        job->inode->waiters.push_back([this, job] { try_unmark(job); });
      } catch (const std::bad_alloc&) {
        // This may run as a waiter on the worker, where nobody would answer:
        // answer now. The ranges before this one are unmarked.
        lock.unlock();
        return job->done(Err{ENOMEM});
      }
      return;
    }
    job->purged.push_back(res == UnmarkResult::kPurged);
  }
  lock.unlock();
  fit_backing();
  job->done(std::move(job->purged));
}

void Filesystem::range_status(const OpenFile& f, ByteRange r, StatusDone done) {
  std::shared_ptr<Inode> i = f.inode;
  if (!i->is_reg()) return done(Err{EINVAL});
  Result<PageRange> pages = Err{EINVAL};
  {
    std::lock_guard lock(i->mu);
    sync_with_store(*i, PageRange{0, 0});
    pages = volatile_range(*i, r, /*for_mark=*/false);
  }
  if (!pages.ok()) return done(Err{pages.err()});
  try_status(std::move(i), *pages, std::move(done));
}

// By value for the reason try_unmark's job is: `i` must outlive the unlock of its mu.
// NOLINTNEXTLINE(performance-unnecessary-value-param)
void Filesystem::try_status(std::shared_ptr<Inode> i, PageRange r, StatusDone done) {
  std::unique_lock lock(i->mu);
  // Phase 1 records pages purged before phase 2 drops the kernel's copies:
  // until then read(2) may still return the old contents of a page that the
  // status would call purged. Status and reads agree at every instant a
  // client can see both only if the status waits, as an unmark does.
  if (i->settling || i->state->has_purging(r)) {
    try {
      i->waiters.push_back([this, i, r, done] { try_status(i, r, done); });
    } catch (const std::bad_alloc&) {
      lock.unlock();
      return done(Err{ENOMEM});  // see try_unmark
    }
    return;
  }
  sync_with_store(*i, r);  // resident pages, exact
  sync_slots(*i);
  RangeStatus st = i->state->status(r);
  if (i->slots) {
    i->slots->for_each([&](const SlotTable::Slot& s) {
      if (s.data.end <= r.first || r.end <= s.data.first) return;
      const uint64_t w = SlotTable::load(s);
      ++st.slots;
      if (VOLFS_SLOT_STATE(w) == VOLFS_SLOT_LIVE && (w & VOLFS_SLOT_PIN_BITS)) ++st.pinned_slots;
      if (VOLFS_SLOT_STATE(w) == VOLFS_SLOT_PURGED) ++st.purged_slots;
    });
  }
  lock.unlock();
  done(st);
}

void Filesystem::run_invalidation(MarkInvalidation& m) {
  if (invalidator_) {
    for (const PageRange& r : m.ranges) {
      invalidator_->invalidate(m.inode->ino, r.first * page_size_, r.pages() * page_size_);
    }
  }
  std::vector<std::function<void()>> waiters;
  {
    std::lock_guard lock(m.inode->mu);
    if (--m.inode->settling == 0) waiters.swap(m.inode->waiters);
  }
  for (auto& w : waiters) w();
  if (m.err) return m.done(Err{m.err});
  finish_mark(m.entries, m.done);
}

}  // namespace volfs::core
