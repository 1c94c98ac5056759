// Filesystem: construction, the purge worker's start and stop, the inode table
// and attributes. The rest is split by section: filesystem_{namespace,data,
// xattr,volatile,purge}.cc. See filesystem.h for the interface and lock order.
#include "filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/xattr.h>
#include <time.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>

#include "filesystem_internal.h"

namespace volfs::core {

Filesystem::Filesystem(const MountOptions& options, uint64_t page_size, Backing backing)
    : options_(options),
      page_size_(page_size),
      backing_(std::move(backing)),
      acc_(page_size, options.size_bytes / page_size) {
  auto root = std::make_shared<Inode>(kRootIno, S_IFDIR);
  root->mode = S_IFDIR | (options.root_mode & 07777);
  root->uid = options.uid;
  root->gid = options.gid;
  root->nlink = 2;
  root->atime = root->mtime = root->ctime = now();
  root->dir.parent = kRootIno;
  inodes_.emplace(kRootIno, std::move(root));
  acc_.add_inodes(1);
}

Filesystem::~Filesystem() {
  stop();
  // Release every file's pages so that the accounting ends balanced.
  for (auto& [ino, inode] : inodes_) {
    if (inode->is_reg()) acc_.uncharge(inode->state->drop(0, FileState::kEndOfFile));
    acc_.uncharge(xattr_pages(inode->xattr_bytes));
  }
}

void Filesystem::start(CacheInvalidator* invalidator,
                       std::vector<std::unique_ptr<PressureSource>> system) {
  invalidator_ = invalidator;
  std::vector<std::unique_ptr<PressureSource>> sources;
  if (options_.purge_high_pct) {
    sources.push_back(
        std::make_unique<WatermarkPressure>(options_.purge_high_pct, options_.purge_low_pct));
  }
  if (backing_.private_tmpfs()) sources.push_back(std::make_unique<SizeLimitPressure>());
  for (auto& s : system) sources.push_back(std::move(s));
  worker_ = std::make_unique<PurgeWorker>(
      std::move(sources),
      [this] {
        sync_slot_files();  // unpins are seen within a round
        fit_backing();
        return pressure_snapshot();
      },
      [this](PurgeCause cause, uint64_t pages) {
        std::vector<PurgeBatch> batches;
        uint64_t n = pages ? purge_pages(pages, batches) : 0;
        acc_.count_request(cause, n);
        // Synchronously: the round's memory is back (both copies, the
        // store's and the kernel's cache) before the next round looks.
        finish_purge(batches);
        return n;
      });
}

PressureStatus Filesystem::pressure() const {
  PressureStatus st;
  if (worker_) worker_->report(st);
  return st;
}

void Filesystem::stop() { worker_.reset(); }

// ---------------------------------------------------------------------------
// Inode table and attributes.

std::shared_ptr<Inode> Filesystem::find(uint64_t ino) const {
  std::shared_lock lock(ns_mu_);
  return find_locked(ino);
}

std::shared_ptr<Inode> Filesystem::find_locked(uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second;
}

struct stat Filesystem::stat_of(Inode& i) {
  struct stat st {};
  std::lock_guard lock(i.mu);
  st.st_ino = i.ino;
  st.st_mode = i.mode;
  st.st_nlink = i.nlink;
  st.st_uid = i.uid;
  st.st_gid = i.gid;
  st.st_rdev = i.rdev;
  st.st_blksize = static_cast<blksize_t>(page_size_);
  if (i.is_dir()) {
    st.st_size = static_cast<off_t>((i.dir.entries.size() + 2) * kBogoDirentSize);
  } else {
    st.st_size = static_cast<off_t>(i.size);
  }
  if (i.is_reg()) {
    sync_with_store(i, PageRange{0, 0});
    st.st_size = static_cast<off_t>(i.size);
    // The store's own count: exact in both io modes, each page once.
    struct stat backing {};
    st.st_blocks = i.store->stat(backing) == 0 ? backing.st_blocks : 0;
  }
  st.st_atim = i.atime;
  st.st_mtim = i.mtime;
  st.st_ctim = i.ctime;
  return st;
}

Result<struct stat> Filesystem::getattr(uint64_t ino) {
  std::shared_lock lock(ns_mu_);
  auto i = find_locked(ino);
  if (!i) return Err{ENOENT};
  return stat_of(*i);
}

Result<struct stat> Filesystem::setattr(uint64_t ino, const SetAttr& a) {
  std::shared_lock ns(ns_mu_);
  auto i = find_locked(ino);
  if (!i) return Err{ENOENT};
  if (a.set_size) {
    if (i->is_dir()) return Err{EISDIR};
    if (!i->is_reg()) return Err{EINVAL};
    std::unique_lock io(i->io_mu);
    std::lock_guard lock(i->mu);
    if (i->data_dropped) return Err{ENOENT};  // as open() says
    Status s = truncate_locked(*i, a.size);
    if (!s.ok()) return Err{s.err()};
  }
  {
    std::lock_guard lock(i->mu);
    timespec t = now();
    const mode_t dropped = i->kill_privileges(a.kill, a.credentials);
    if (a.set_mode) i->mode = i->type | (a.mode & 07777 & ~dropped);
    if (a.set_uid) i->uid = a.uid;
    if (a.set_gid) i->gid = a.gid;
    if (a.set_atime) i->atime = a.atime_now ? t : a.atime;
    if (a.set_mtime) i->mtime = a.mtime_now ? t : a.mtime;
    i->ctime = a.set_ctime ? a.ctime : t;
    // The store's mtime follows, so that sync_with_store, which takes the
    // later of the two, sees passthrough writes after this and nothing else.
    if (i->is_reg() && a.set_mtime) (void)i->store->set_times(i->atime, i->mtime);
  }
  return stat_of(*i);
}

AccountingSnapshot Filesystem::stats() {
  sync_passthrough_files();
  return acc_.snapshot();
}

void Filesystem::sync_passthrough_files() {
  if (!passthrough()) return;
  std::vector<std::shared_ptr<Inode>> files;
  {
    std::shared_lock lock(ns_mu_);
    for (const auto& [ino, i] : inodes_) {
      if (i->is_reg()) files.push_back(i);
    }
  }
  for (const auto& i : files) {
    std::lock_guard lock(i->mu);
    sync_with_store(*i, PageRange{0, FileState::kEndOfFile});
    sync_slots(*i);
  }
}

bool Filesystem::nearly_full() const {
  const uint64_t limit = acc_.limit_pages();
  std::optional<uint64_t> used = backing_.used_pages();
  return used && *used + limit / 8 >= limit;
}

AccountingSnapshot Filesystem::pressure_snapshot() const {
  AccountingSnapshot s = acc_.snapshot();
  if (std::optional<uint64_t> used = backing_.used_pages()) {
    s.charged_pages = std::max(s.charged_pages, *used);
  }
  return s;
}

bool Filesystem::fit_backing() {
  AccountingSnapshot s = acc_.snapshot();
  // Volatile room in whole MiB: a MARK/UNMARK loop then reconfigures the
  // tmpfs once per MiB of change, not on every call; with nothing volatile
  // left the limit is size= exactly.
  constexpr uint64_t kGrain = 1 << 20;
  const uint64_t v = s.volatile_resident_pages * page_size_;
  uint64_t room = options_.size_bytes + (v + kGrain - 1) / kGrain * kGrain;
  uint64_t used = backing_.used_pages().value_or(0) * page_size_;
  (void)backing_.set_size(std::max(room, used));
  return used > options_.size_bytes;
}

void Filesystem::sync_with_store(Inode& i, PageRange r) {
  if (!i.passthrough()) return;
  struct stat st {};
  if (i.store->stat(st) < 0) return;
  i.size = static_cast<uint64_t>(st.st_size);
  auto later = [](timespec& mine, const timespec& theirs) {
    if (theirs.tv_sec > mine.tv_sec ||
        (theirs.tv_sec == mine.tv_sec && theirs.tv_nsec > mine.tv_nsec)) {
      mine = theirs;
    }
  };
  later(i.mtime, st.st_mtim);
  later(i.ctime, st.st_ctim);
  if (r.first >= r.end) return;
  (void)i.state->found_data(i.store->data_runs(r, page_size_, i.size));  // charges them
}

Status Filesystem::truncate_locked(Inode& i, uint64_t size) {
  sync_with_store(i, PageRange{0, 0});
  if (size < i.size) slots_before_truncate(i, size);
  // Pages wholly past the new end lose all state, volatile or not; a
  // partial last page stays (the store zeroes its tail). The rewrite is
  // prepared first and the store changed next: if either fails, nothing
  // has changed.
  PageMap::Edit edit;
  if (size < i.size) {
    edit = i.state->prepare_drop(
        PageRange{(size + page_size_ - 1) / page_size_, FileState::kEndOfFile});
  }
  if (int r = i.store->truncate(size); r < 0) return Err{-r};
  acc_.uncharge(i.state->commit_drop(std::move(edit)));
  if (size < i.size) {
    forget_wb_failed(i, PageRange{(size + page_size_ - 1) / page_size_, FileState::kEndOfFile});
  }
  i.size = size;
  i.mtime = i.ctime = now();
  return {};
}

}  // namespace volfs::core
