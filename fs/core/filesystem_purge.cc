// Filesystem, the purge engine: phase 1 under the inode locks, phase 2 on the worker.
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

void Filesystem::purge(uint64_t max_bytes, PurgeDone done) {
  uint64_t max_pages = max_bytes == VOLFS_PURGE_ALL ? UINT64_MAX : max_bytes / page_size_;
  PendingFinish fin =
      prepare_finish([this, done = std::move(done)](uint64_t pages) { done(pages * page_size_); });
  fin.state->pages = purge_pages(max_pages, fin.state->batches);
  acc_.count_request(PurgeCause::kExplicit, fin.state->pages);
  post_finish(std::move(fin));
}

bool Filesystem::purge_for_space(uint64_t pages) {
  PendingFinish fin = prepare_finish(nullptr);
  uint64_t n = fin.state->pages = purge_pages(pages, fin.state->batches);
  acc_.count_request(PurgeCause::kSizeLimit, n);
  // The store memory is free now; the kernel's copies go on the worker, as
  // this handler may be the write-back that the invalidation waits for.
  post_finish(std::move(fin));
  if (n > 0) return true;
  // Nothing volatile left: a file being freed right now may give the room,
  // or one freed since the charge failed may have (its drop is over, and
  // wait_for_drops finds none under way): the counts tell.
  (void)wait_for_drops();
  return room_for(pages) || wait_for_a_last_close();
}

bool Filesystem::room_for(uint64_t pages) const {
  return acc_.charged_pages() + pages <= acc_.limit_pages();
}

bool Filesystem::wait_for_a_last_close() {
  // A file deleted while open gives its room back at its last close, whose
  // RELEASE the kernel sends without waiting. One read before this request
  // is found by wait_for_drops (ReadBarrier), but the kernel holds a
  // RELEASE back while max_background requests of its kind (RELEASEs,
  // read-ahead, write-back) are out, and a later write may overtake it; so
  // may any with -o clone_fd (libfuse's loop). Give it a moment.
  if (deleted_open_.load(std::memory_order_relaxed) == 0) return false;
  std::unique_lock lock(drops_mu_);
  const uint64_t finished = drops_finished_;
  return drops_cv_.wait_for(lock, kReleaseGrace, [&] { return drops_finished_ > finished; });
}

bool Filesystem::wait_for_drops() {
  // Bounded, against a drop that waits for something stuck.
  const auto until = std::chrono::steady_clock::now() + kDropWait;
  // A RELEASE or FORGET read before this request is served first.
  if (ReadBarrier* b = read_barrier_.load()) b->wait(until);
  std::unique_lock lock(drops_mu_);
  if (drops_under_way_.empty()) return false;
  // Only for those under way now: new ones keep coming under a stream of
  // closes.
  const uint64_t last = drops_started_;
  drops_cv_.wait_until(
      lock, until, [&] { return drops_under_way_.empty() || *drops_under_way_.begin() > last; });
  return true;
}

uint64_t Filesystem::purge_pages(uint64_t max_pages, std::vector<PurgeBatch>& out) {
  uint64_t total = 0;
  bool rescanned = false;
  uint64_t missed_seq = 0;  // the entry the last purge_entry found empty
  int misses = 0;           // how many times in a row
  // Slots unpinned since the daemon last looked join the queue first, in
  // the order of their unpins.
  sync_slot_files();
  // Each entry's purge is all or nothing; an allocation failure after some
  // succeeded ends the purge early (it purged less, which is allowed), so
  // that the caller finishes what was done. With nothing done, it is the
  // caller's error (ENOMEM).
  while (total < max_pages) try {
      std::optional<PurgeEntry> e = queue_.front();
      if (!e && !rescanned) {
        // Volatile pages that were holes when marked and were stored since,
        // through passthrough, are in no queue entry yet: look for them once.
        rescanned = true;
        sync_passthrough_files();
        e = queue_.front();
      }
      if (!e) break;
      uint64_t n = purge_entry(*e, max_pages - total, out);
      if (n == 0) {
        // The entry changed between front() and the inode's lock: another
        // purge took its pages, an unmark or truncate ended it. It may be
        // queued again already (a write stored into its purged zero-fill
        // pages, which another purge had just taken), so the next round may
        // find it at the front with pages to purge. A queue entry always has
        // purgeable pages under its inode's lock, so only a run of misses on
        // one entry means that broke.
        misses = e->seq == missed_seq ? misses + 1 : 1;
        missed_seq = e->seq;
        if (misses >= kMaxPurgeMisses) {
          assert(!"purge queue entry without purgeable pages");
          break;
        }
      } else {
        misses = 0;
      }
      total += n;
    } catch (const std::bad_alloc&) {
      if (total == 0) throw;
      break;
    }
  return total;
}

uint64_t Filesystem::purge_entry(const PurgeEntry& e, uint64_t max_pages,
                                 std::vector<PurgeBatch>& out) {
  std::shared_ptr<Inode> i = find(e.ino);
  if (!i || !i->is_reg()) return 0;
  std::unique_lock io(i->io_mu);
  std::lock_guard lock(i->mu);
  // A slot's mark: all of the slot or nothing, and only if its word says so.
  if (SlotTable::Slot* s = i->slots ? i->slots->find_by_data(e.range) : nullptr;
      s && s->view == SlotTable::View::kVolatile && s->seq == e.seq) {
    return purge_slot(*i, *s);
  }
  // In passthrough the store is the only copy, and the daemon learns which
  // pages hold data only by asking it: a page stored since the mark is
  // purged too, a page never stored is no loss and stays intact.
  const bool passthrough = i->passthrough();
  // Only pages not known to hold data need the store's answer (SEEK_DATA
  // and mincore cost per page: a fifth of a 512 MiB purge); pages known
  // resident are taken and punched whatever the probe would say.
  sync_with_store(*i, i->state->nonresident_in(e.range) ? e.range : PageRange{0, 0});
  uint32_t id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  if (id == 0) id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  // The batch's slot first: after state->purge nothing may fail.
  out.emplace_back();
  std::vector<PageRange> victims;
  try {
    victims = i->state->purge(e.range, e.seq, max_pages, id);
  } catch (...) {
    out.pop_back();
    throw;
  }
  uint64_t pages = 0;
  for (const PageRange& v : victims) {
    // Punching the store frees the memory now, and in passthrough every
    // mapping and read sees the hole at once. Should it fail (it cannot for
    // tmpfs short of a kernel bug), the pages still read as purged.
    (void)i->store->punch(v.first * page_size_, v.pages() * page_size_);
    pages += v.pages();
  }
  if (pages == 0) {
    out.pop_back();
    return 0;
  }
  acc_.uncharge(pages);
  if (passthrough) {
    out.pop_back();
    // No kernel page cache to drop: the purge is complete. A store racing
    // the punch lands before it (lost, and the page answers PURGED) or
    // after it (kept, and the page still answers PURGED): never INTACT.
    i->state->finish_purge(PageRange{victims.front().first, victims.back().end}, id);
    // Whoever sees the pages purged also finds the room they gave back gone
    // from the private tmpfs (fit_backing takes only the backing's lock).
    fit_backing();
    return pages;
  }
  out.back() = PurgeBatch{i, id, std::move(victims)};  // moves only
  return pages;
}

Filesystem::PendingFinish Filesystem::prepare_finish(std::function<void(uint64_t pages)> then) {
  auto state = std::make_shared<PurgeFinish>();
  state->then = std::move(then);
  PurgeWorker::Job job = PurgeWorker::make_job([this, state] {
    finish_purge(state->batches);
    if (state->then) state->then(state->pages);
  });
  return PendingFinish{std::move(state), std::move(job)};
}

void Filesystem::post_finish(PendingFinish&& f) {
  if (f.state->batches.empty() || !worker_) {
    f.job.front()();
    return;
  }
  worker_->post(std::move(f.job));
}

void Filesystem::finish_purge(const std::vector<PurgeBatch>& batches) {
  auto invalidate_all = [&] {
    if (!invalidator_) return;
    for (const PurgeBatch& b : batches) {
      for (const PageRange& r : b.ranges) {
        invalidator_->invalidate(b.inode->ino, r.first * page_size_, r.pages() * page_size_);
      }
    }
  };
  // 1. Drop the kernel's copies. Dirty ones come back as WRITEs first; they
  //    hit PURGING pages and are dropped, so purged data is not resurrected.
  invalidate_all();
  // 2. Writes are accepted again. Unmarks still wait (settling): step 3 may
  //    still drop a cached page that the store does not hold.
  for (const PurgeBatch& b : batches) {
    std::lock_guard lock(b.inode->mu);
    b.inode->state->finish_purge(PageRange{b.ranges.front().first, b.ranges.back().end},
                                 b.purge_id);
    ++b.inode->settling;
  }
  // 3. A page faulted in and dirtied during step 1 is written back now and
  //    kept (its page is purged-but-volatile, so keeping it is allowed), and
  //    a cached page whose write-back step 1 dropped is dropped, so the
  //    kernel and the store agree again.
  invalidate_all();
  // 4. Unmarks that waited for this purge answer now. Swapped out, not
  //    copied: this step allocates nothing.
  for (const PurgeBatch& b : batches) {
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(b.inode->mu);
      if (--b.inode->settling == 0) waiters.swap(b.inode->waiters);
    }
    for (auto& w : waiters) w();
  }
}

}  // namespace volfs::core
