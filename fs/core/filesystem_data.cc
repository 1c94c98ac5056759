// Filesystem, file data: open, read, write, fallocate, lseek on the per-file Store.
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
#include <cstdio>
#include <cstring>
#include <utility>

#include "filesystem_internal.h"

namespace volfs::core {

Result<std::unique_ptr<OpenFile>> Filesystem::open(uint64_t ino, int flags,
                                                   const std::function<Credentials()>& truncating) {
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  const bool writable = (flags & O_ACCMODE) != O_RDONLY;
  if (i->is_dir() && writable) return Err{EISDIR};
  // Passthrough writes meet the size limit in the kernel, without the
  // daemon: on a nearly full mount, an open for writing waits for the room
  // of the files being freed right now (closed or unlinked just before, say,
  // with the RELEASE or FORGET still on its way), as a write through the
  // daemon does (purge_for_space).
  if (writable && i->is_reg() && passthrough() && nearly_full()) (void)wait_for_drops();
  // Below, a file whose data was dropped (drop_if_unreachable) had its path
  // looked up before its unlink: the open says ENOENT, as if it came after.
  bool dropped_privileges = false;
  if ((flags & O_TRUNC) && i->is_reg() && writable) {
    std::unique_lock io(i->io_mu);
    std::lock_guard lock(i->mu);
    if (i->data_dropped) return Err{ENOENT};
    if (i->size != 0) {
      Status s = truncate_locked(*i, 0);
      if (!s.ok()) return Err{s.err()};
    }
    // Even of an empty file, as the kernel's do_truncate does. The open's
    // reply has no attributes, so the kernel must be told to ask again.
    if (i->kill_privileges(PrivilegeKill::kModify, truncating)) {
      i->ctime = now();
      dropped_privileges = true;
    }
  }
  if (dropped_privileges && invalidator_) invalidator_->invalidate_attributes(ino);
  auto f = std::make_unique<OpenFile>();
  f->flags = flags;
  if (i->is_reg()) {
    std::lock_guard lock(i->mu);
    if (i->data_dropped) return Err{ENOENT};
    if (i->nlink == 0 && i->opens == 0) deleted_open_.fetch_add(1, std::memory_order_relaxed);
    ++i->opens;  // the data stays while f exists
    if (i->io_mode == IoMode::kUndecided) {
      i->io_mode = passthrough() && !i->prefer_cached ? IoMode::kPassthrough : IoMode::kCached;
      f->decided = true;
    }
    f->passthrough = i->passthrough();
    if (f->passthrough) ++i->passthrough_opens;
  }
  f->inode = std::move(i);
  return f;
}

Result<int> Filesystem::backing_id(OpenFile& f, const std::function<int(int fd)>& register_fd) {
  Inode& i = *f.inode;
  assert(f.passthrough);
  std::lock_guard lock(i.mu);
  if (i.backing_id > 0) return i.backing_id;
  int id = register_fd(i.store->fd());
  if (id > 0) return i.backing_id = id;
  // The kernel refuses (no CAP_SYS_ADMIN, say): it will refuse the next
  // file too. This one can still turn cached if nothing else opened it.
  set_passthrough(false);
  if (!f.decided || i.passthrough_opens != 1) return Err{EIO};
  i.io_mode = IoMode::kCached;
  i.passthrough_opens = 0;
  f.passthrough = false;
  return 0;
}

void Filesystem::release(OpenFile& f, const std::function<void(int id)>& unregister) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return;
  // The kernel sent this RELEASE at a close(2) that did not wait for it:
  // from the first moment, an open for writing waits for it to be done,
  // as it may free a deleted file.
  DropInProgress busy(*this);
  int id = 0;
  {
    std::lock_guard lock(i.mu);
    if (f.passthrough) {
      if (f.slot_holder) {
        // The open file's pins go with it (its process may have died holding
        // them); what they kept becomes purgeable now, not at the next round.
        i.slots->release_holder(&f);
        sync_slots(i);
      }
      assert(i.passthrough_opens > 0);
      if (--i.passthrough_opens == 0) id = std::exchange(i.backing_id, 0);
    }
    assert(i.opens > 0);
    if (--i.opens == 0 && i.nlink == 0) deleted_open_.fetch_sub(1, std::memory_order_relaxed);
  }
  // The kernel's reference to the store goes before the daemon's, so that
  // the pages are free when the counts say so.
  if (id > 0 && unregister) unregister(id);
  drop_if_unreachable(i, LastLink::kClosed);
}

Status Filesystem::read(const OpenFile& f, uint64_t off, size_t size, const ReadReply& reply) {
  // Once the reply is sent the kernel may RELEASE the file and FORGET the
  // inode on other threads, before this function has unlocked io_mu: so `f`
  // is not touched after the reply, and this reference keeps the inode alive.
  const std::shared_ptr<Inode> inode = f.inode;
  Inode& i = *inode;
  if (!i.is_reg()) return Err{EINVAL};
  std::shared_lock io(i.io_mu);
  uint64_t len = 0;
  {
    std::lock_guard lock(i.mu);
    if (off < i.size) len = std::min<uint64_t>(size, i.size - off);
    if (len && i.state->has_strict_purged(
                   PageRange{off / page_size_, (off + len + page_size_ - 1) / page_size_})) {
      return Err{EIO};
    }
  }
  // The reply is built while io_mu is held: a purge cannot free these pages
  // between our reading them and the kernel caching them (see design.md).
  reply(i.store->fd(), off, static_cast<size_t>(len));
  return {};
}

void Filesystem::forget_wb_failed(Inode& i, PageRange r) {
  if (i.wb_failed.empty() || r.first >= r.end) return;
  std::vector<PageRange> left;
  for (const PageRange& f : i.wb_failed) {
    if (f.end <= r.first || f.first >= r.end) {
      left.push_back(f);
      continue;
    }
    if (f.first < r.first) left.push_back(PageRange{f.first, r.first});
    if (f.end > r.end) left.push_back(PageRange{r.end, f.end});
  }
  i.wb_failed.swap(left);
  if (i.wb_failed.empty()) i.wb_err = 0;
}

void Filesystem::note_wb_failed(Inode& i, PageRange r, int err) {
  std::vector<PageRange> all = i.wb_failed;
  all.push_back(r);
  std::sort(all.begin(), all.end(),
            [](const PageRange& a, const PageRange& b) { return a.first < b.first; });
  std::vector<PageRange> merged;
  for (const PageRange& f : all) {
    if (!merged.empty() && f.first <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, f.end);
    } else {
      merged.push_back(f);
    }
  }
  // Bounded: beyond kMaxWritebackRanges the ranges become one that covers
  // them all, which errs towards reporting (a rewrite of all of it clears it).
  if (merged.size() > kMaxWritebackRanges) {
    merged = {PageRange{merged.front().first, merged.back().end}};
  }
  i.wb_failed.swap(merged);
  i.wb_err = err;
}

Status Filesystem::fsync(const OpenFile& f) {
  Inode& i = *f.inode;
  std::lock_guard lock(i.mu);
  if (!i.wb_failed.empty()) return Err{i.wb_err};
  return {};
}

Result<size_t> Filesystem::write(const OpenFile& f, const char* buf, size_t size, uint64_t off,
                                 bool writeback) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return Err{EINVAL};
  if (size == 0) return size_t{0};
  if (off > static_cast<uint64_t>(LLONG_MAX) - size) return Err{EFBIG};
  const PageRange pages{off / page_size_, (off + size + page_size_ - 1) / page_size_};
  Result<size_t> r = write_pages(i, buf, size, off, writeback);
  if (r.ok()) {
    // Rewritten: whatever failed there before holds data now. Only whole
    // pages count (a partial write leaves the rest of the page lost), the
    // last page of the file being whole up to its end.
    std::lock_guard lock(i.mu);
    if (!i.wb_failed.empty()) {
      uint64_t last = off + size >= i.size ? pages.end : (off + size) / page_size_;
      forget_wb_failed(i, PageRange{(off + page_size_ - 1) / page_size_, last});
    }
    return r;
  }
  if (!writeback) return r;
  // Dirty pages of a mapping the kernel could not write back (ENOSPC on a
  // full mount): it marks them clean and keeps them, so readers would see
  // bytes the store does not hold, and only the first msync or fsync after
  // it would hear of it. Remember the error for every later FSYNC, and
  // drop the kernel's copies: on the worker, as the kernel waits for this
  // reply before it can let go of the pages.
  {
    std::lock_guard lock(i.mu);
    note_wb_failed(i, pages, r.err());
  }
  std::fprintf(stderr,
               "volfs: write-back of inode %llu [%llu, +%zu) failed: %s; fsync reports it "
               "until the pages are written again\n",
               static_cast<unsigned long long>(i.ino), static_cast<unsigned long long>(off), size,
               std::strerror(r.err()));
  std::shared_ptr<Inode> inode = f.inode;
  auto drop = [this, inode, pages] {
    if (invalidator_) {
      invalidator_->invalidate(inode->ino, pages.first * page_size_, pages.pages() * page_size_);
    }
  };
  if (worker_) worker_->post(drop);
  return r;
}

Result<size_t> Filesystem::write_pages(Inode& i, const char* buf, size_t size, uint64_t off,
                                       bool writeback) {
  const uint64_t end = off + size;
  const PageRange pages{off / page_size_, (end + page_size_ - 1) / page_size_};
  for (int attempt = 0;; ++attempt) {
    std::shared_lock io(i.io_mu);
    std::unique_lock lock(i.mu);
    WritePlan plan = i.state->plan_write(pages, writeback);
    if (plan.eio) return Err{EIO};
    // Allocated before anything changes; committed with no failure possible.
    PageMap::Edit edit = i.state->prepare_write(plan);
    // Volatile pages may lose their data and keep their runs (purge): bound
    // the runs they can leave behind (kMaxRunsPerFile).
    if (plan.touches_volatile && i.state->map().run_count() + plan.holes + 2 > kMaxRunsPerFile) {
      return Err{ENOSPC};
    }
    if (plan.new_pages && !acc_.try_charge(plan.new_pages)) {
      lock.unlock();
      io.unlock();
      if (attempt + 1 == kWriteAttempts || !purge_for_space(plan.new_pages)) return Err{ENOSPC};
      continue;
    }
    if (end > i.size) {
      // The store grows under mu, so concurrent writers never shrink it;
      // before the commit, so that a failure leaves nothing to undo.
      if (int r = i.store->truncate(end); r < 0) {
        if (plan.new_pages) acc_.uncharge(plan.new_pages);
        return Err{-r};
      }
      i.size = end;
    }
    i.state->commit(std::move(edit));
    i.mtime = i.ctime = now();
    lock.unlock();
    if (options_.purge_high_pct && worker_) worker_->wake();
    for (const PageRange& k : plan.keep) {
      uint64_t b = std::max(off, k.first * page_size_);
      uint64_t e = std::min(end, k.end * page_size_);
      ssize_t n = i.store->pwrite(buf + (b - off), e - b, b);
      if (n < 0) return Err{static_cast<int>(-n)};
    }
    return size;
  }
}

Status Filesystem::fallocate(const OpenFile& f, int mode, uint64_t off, uint64_t len) {
  Inode& i = *f.inode;
  if (!f.writable()) return Err{EBADF};
  if (i.is_dir()) return Err{EISDIR};
  if (!i.is_reg()) return Err{ENODEV};
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    return Err{EOPNOTSUPP};
  }
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) return Err{EOPNOTSUPP};
  if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)) return Err{EOPNOTSUPP};
  if (len == 0) return Err{EINVAL};
  if (off > static_cast<uint64_t>(LLONG_MAX) - len) return Err{EFBIG};
  const uint64_t end = off + len;
  const bool keep_size = mode & FALLOC_FL_KEEP_SIZE;

  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    // Whole pages lose their data and any volatile state; partial pages at
    // the edges are zeroed in place. ZERO_RANGE leaves holes too: they read
    // as zeros and cost nothing until written.
    std::unique_lock io(i.io_mu);
    std::lock_guard lock(i.mu);
    sync_with_store(i, PageRange{0, 0});
    uint64_t first = (off + page_size_ - 1) / page_size_;
    uint64_t last = std::max(first, end / page_size_);
    // Unpinned slots in the range turn PURGING now and PURGED after the punch.
    std::vector<SlotTable::Slot*> slots = slots_before_punch(i, off, len);
    struct EndPurges {
      std::vector<SlotTable::Slot*>& slots;
      ~EndPurges() {
        for (SlotTable::Slot* s : slots) SlotTable::end_purge(*s);
      }
    } end_purges{slots};
    PageMap::Edit edit = i.state->prepare_drop(PageRange{first, last});  // before the punch
    if (int r = i.store->punch(off, len); r < 0) return Err{-r};
    acc_.uncharge(i.state->commit_drop(std::move(edit)));
    forget_wb_failed(i, PageRange{first, last});
    if (!keep_size && end > i.size) {
      if (int r = i.store->truncate(end); r < 0) return Err{-r};
      i.size = end;
    }
    i.mtime = i.ctime = now();
    return {};
  }

  const PageRange pages{off / page_size_, (end + page_size_ - 1) / page_size_};
  for (int attempt = 0;; ++attempt) {
    std::unique_lock io(i.io_mu);
    std::unique_lock lock(i.mu);
    sync_with_store(i, pages);
    uint64_t need = i.state->nonresident_in(pages);
    PageMap::Edit edit = i.state->prepare_resident(pages);
    if (need && !acc_.try_charge(need)) {
      lock.unlock();
      io.unlock();
      if (attempt + 1 == kWriteAttempts || !purge_for_space(need)) return Err{ENOSPC};
      continue;
    }
    if (int r = i.store->allocate(off, len); r < 0) {
      acc_.uncharge(need);
      return Err{-r};
    }
    [[maybe_unused]] uint64_t before = i.state->resident_pages();
    i.state->commit(std::move(edit));
    assert(i.state->resident_pages() - before == need);
    if (!keep_size && end > i.size) {
      if (int r = i.store->truncate(end); r < 0) return Err{-r};
      i.size = end;
    }
    i.ctime = now();
    if (!keep_size) i.mtime = i.ctime;
    return {};
  }
}

Result<uint64_t> Filesystem::lseek(const OpenFile& f, uint64_t off, int whence) {
  Inode& i = *f.inode;
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return Err{EINVAL};
  if (!i.is_reg()) return Err{EINVAL};
  std::shared_lock io(i.io_mu);
  {
    std::lock_guard lock(i.mu);
    sync_with_store(i, PageRange{0, 0});
    if (off >= i.size) return Err{ENXIO};
  }
  int64_t r = i.store->seek(off, whence);
  if (r < 0) return Err{static_cast<int>(-r)};
  return static_cast<uint64_t>(r);
}

}  // namespace volfs::core
