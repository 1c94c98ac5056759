// Filesystem: see filesystem.h for the interface and the lock order, and
// docs/design.md and docs/volatile-ranges.md for the purge protocol.
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

namespace volfs {
namespace {

constexpr size_t kNameMax = 255;
constexpr size_t kXattrValueMax = size_t{64} * 1024;
constexpr uint64_t kBogoDirentSize = 20;  // tmpfs reports directory sizes this way
constexpr int kWriteAttempts = 4;         // purges for space before ENOSPC

timespec now() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

}  // namespace

Filesystem::Filesystem(const MountOptions& options, uint64_t page_size)
    : options_(options), page_size_(page_size), acc_(page_size, options.size_bytes / page_size) {
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
  }
}

void Filesystem::start(CacheInvalidator* invalidator) {
  invalidator_ = invalidator;
  std::unique_ptr<PressureSource> source;
  if (options_.purge_high_pct) {
    source = std::make_unique<WatermarkPressure>(options_.purge_high_pct, options_.purge_low_pct);
  }
  worker_ = std::make_unique<PurgeWorker>(
      std::move(source), [this] { return acc_.snapshot(); },
      [this](uint64_t pages) {
        std::vector<PurgeBatch> batches;
        purge_pages(pages, batches);
        finish_purge(batches);
      });
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
    st.st_blocks = static_cast<blkcnt_t>(i.state->resident_pages() * (page_size_ / 512));
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
    Status s = truncate_locked(*i, a.size);
    if (!s.ok()) return Err{s.err()};
  }
  {
    std::lock_guard lock(i->mu);
    timespec t = now();
    if (a.set_mode) i->mode = i->type | (a.mode & 07777);
    if (a.set_uid) i->uid = a.uid;
    if (a.set_gid) i->gid = a.gid;
    if (a.set_atime) i->atime = a.atime_now ? t : a.atime;
    if (a.set_mtime) i->mtime = a.mtime_now ? t : a.mtime;
    i->ctime = a.set_ctime ? a.ctime : t;
  }
  return stat_of(*i);
}

Status Filesystem::truncate_locked(Inode& i, uint64_t size) {
  if (size < i.size) {
    // Pages wholly past the new end lose all state, volatile or not; a
    // partial last page stays (the store zeroes its tail).
    uint64_t first_gone = (size + page_size_ - 1) / page_size_;
    acc_.uncharge(i.state->drop(first_gone, FileState::kEndOfFile));
  }
  if (int r = i.store->truncate(size); r < 0) return Err{-r};
  i.size = size;
  i.mtime = i.ctime = now();
  return {};
}

// ---------------------------------------------------------------------------
// Namespace.

Result<Entry> Filesystem::lookup(uint64_t parent, std::string_view name) {
  std::shared_lock lock(ns_mu_);
  auto dir = find_locked(parent);
  if (!dir) return Err{ENOENT};
  if (!dir->is_dir()) return Err{ENOTDIR};
  if (name.size() > kNameMax) return Err{ENAMETOOLONG};
  uint64_t ino = 0;
  if (name == ".") {
    ino = parent;
  } else if (name == "..") {
    ino = dir->dir.parent;
  } else {
    auto it = dir->dir.entries.find(name);
    if (it == dir->dir.entries.end()) return Err{ENOENT};
    ino = it->second.ino;
  }
  auto i = find_locked(ino);
  assert(i);
  // nlookup is only decremented under the exclusive lock, so counting up
  // under the shared one cannot race with a destruction.
  std::atomic_ref<uint64_t>(i->nlookup).fetch_add(1, std::memory_order_relaxed);
  return Entry{ino, stat_of(*i)};
}

void Filesystem::forget(uint64_t ino, uint64_t nlookup) {
  std::unique_lock lock(ns_mu_);
  auto i = find_locked(ino);
  if (!i) return;
  assert(i->nlookup >= nlookup);
  i->nlookup -= std::min(i->nlookup, nlookup);
  maybe_destroy(i);
}

void Filesystem::maybe_destroy(const std::shared_ptr<Inode>& i) {
  if (i->ino == kRootIno || i->nlookup > 0 || i->nlink > 0) return;
  inodes_.erase(i->ino);
  acc_.add_inodes(-1);
  if (i->is_reg()) {
    // Open files hold the kernel's reference, so none is open now; a purge
    // may still hold the inode and will find nothing left to take.
    std::unique_lock io(i->io_mu);
    std::lock_guard lock(i->mu);
    acc_.uncharge(i->state->drop(0, FileState::kEndOfFile));
    (void)i->store->truncate(0);
    acc_.add_files(-1);
  }
}

void Filesystem::touch_dir(Inode& dir) {
  std::lock_guard lock(dir.mu);
  dir.mtime = dir.ctime = now();
}

void Filesystem::add_entry(Inode& dir, std::string_view name, uint64_t ino) {
  uint64_t cookie = dir.dir.next_cookie++;
  dir.dir.entries.emplace(std::string(name), DirEntry{ino, cookie});
  dir.dir.by_cookie.emplace(cookie, std::string(name));
  touch_dir(dir);
}

void Filesystem::remove_entry(Inode& dir, std::string_view name) {
  auto it = dir.dir.entries.find(name);
  assert(it != dir.dir.entries.end());
  dir.dir.by_cookie.erase(it->second.cookie);
  dir.dir.entries.erase(it);
  touch_dir(dir);
}

void Filesystem::drop_link(const std::shared_ptr<Inode>& i) {
  {
    std::lock_guard lock(i->mu);
    assert(i->nlink > 0);
    --i->nlink;
    i->ctime = now();
  }
  maybe_destroy(i);
}

Result<Entry> Filesystem::make_node(uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                                    const Caller& c, std::string_view target) {
  std::unique_lock lock(ns_mu_);
  auto dir = find_locked(parent);
  if (!dir) return Err{ENOENT};
  if (!dir->is_dir()) return Err{ENOTDIR};
  if (dir->nlink == 0) return Err{ENOENT};  // removed while we held it
  if (name.size() > kNameMax) return Err{ENAMETOOLONG};
  if (dir->dir.entries.count(name)) return Err{EEXIST};
  if (!acc_.try_add_inode(options_.nr_inodes)) return Err{ENOSPC};

  auto i = std::make_shared<Inode>(next_ino_, mode);
  i->mode = mode;
  i->uid = c.uid;
  i->gid = c.gid;
  {
    std::lock_guard dlock(dir->mu);
    if (dir->mode & S_ISGID) {  // BSD group semantics of setgid directories
      i->gid = dir->gid;
      if (i->is_dir()) i->mode |= S_ISGID;
    }
  }
  i->nlink = i->is_dir() ? 2 : 1;
  i->rdev = rdev;
  i->atime = i->mtime = i->ctime = now();
  if (i->is_reg()) {
    i->store = std::make_unique<Store>();
    if (int r = i->store->open(); r < 0) {
      acc_.add_inodes(-1);
      return Err{-r};
    }
    i->state = std::make_unique<FileState>(i->ino, acc_, queue_);
    acc_.add_files(1);
  }
  if (i->type == S_IFLNK) {
    i->symlink_target = std::string(target);
    i->size = target.size();
  }
  if (i->is_dir()) {
    i->dir.parent = parent;
    std::lock_guard dlock(dir->mu);
    ++dir->nlink;
  }
  ++next_ino_;
  i->nlookup = 1;
  inodes_.emplace(i->ino, i);
  add_entry(*dir, name, i->ino);
  return Entry{i->ino, stat_of(*i)};
}

Result<Entry> Filesystem::mknod(uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                                const Caller& c) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK:
      break;
    default:
      return Err{EINVAL};
  }
  return make_node(parent, name, mode, rdev, c, {});
}

Result<Entry> Filesystem::mkdir(uint64_t parent, std::string_view name, mode_t mode,
                                const Caller& c) {
  return make_node(parent, name, S_IFDIR | (mode & 07777), 0, c, {});
}

Result<Entry> Filesystem::symlink(std::string_view target, uint64_t parent, std::string_view name,
                                  const Caller& c) {
  if (target.size() >= PATH_MAX) return Err{ENAMETOOLONG};
  return make_node(parent, name, S_IFLNK | 0777, 0, c, target);
}

Result<Entry> Filesystem::create(uint64_t parent, std::string_view name, mode_t mode,
                                 const Caller& c) {
  return make_node(parent, name, S_IFREG | (mode & 07777), 0, c, {});
}

Result<Entry> Filesystem::link(uint64_t ino, uint64_t parent, std::string_view name) {
  std::unique_lock lock(ns_mu_);
  auto i = find_locked(ino);
  auto dir = find_locked(parent);
  if (!i || !dir) return Err{ENOENT};
  if (i->is_dir()) return Err{EPERM};
  if (!dir->is_dir()) return Err{ENOTDIR};
  if (dir->nlink == 0) return Err{ENOENT};
  if (name.size() > kNameMax) return Err{ENAMETOOLONG};
  if (dir->dir.entries.count(name)) return Err{EEXIST};
  {
    std::lock_guard ilock(i->mu);
    if (i->nlink == 0) return Err{ENOENT};  // linkat of an unlinked O_TMPFILE-like file
    ++i->nlink;
    i->ctime = now();
  }
  add_entry(*dir, name, ino);
  std::atomic_ref<uint64_t>(i->nlookup).fetch_add(1, std::memory_order_relaxed);
  return Entry{ino, stat_of(*i)};
}

Status Filesystem::unlink(uint64_t parent, std::string_view name) {
  std::unique_lock lock(ns_mu_);
  auto dir = find_locked(parent);
  if (!dir) return Err{ENOENT};
  if (!dir->is_dir()) return Err{ENOTDIR};
  auto it = dir->dir.entries.find(name);
  if (it == dir->dir.entries.end()) return Err{ENOENT};
  auto i = find_locked(it->second.ino);
  if (i->is_dir()) return Err{EISDIR};
  remove_entry(*dir, name);
  drop_link(i);
  return {};
}

Status Filesystem::rmdir(uint64_t parent, std::string_view name) {
  std::unique_lock lock(ns_mu_);
  auto dir = find_locked(parent);
  if (!dir) return Err{ENOENT};
  if (!dir->is_dir()) return Err{ENOTDIR};
  if (name == ".") return Err{EINVAL};
  if (name == "..") return Err{ENOTEMPTY};
  auto it = dir->dir.entries.find(name);
  if (it == dir->dir.entries.end()) return Err{ENOENT};
  auto i = find_locked(it->second.ino);
  if (!i->is_dir()) return Err{ENOTDIR};
  if (!i->dir.entries.empty()) return Err{ENOTEMPTY};
  remove_entry(*dir, name);
  {
    std::lock_guard dlock(dir->mu);
    --dir->nlink;
  }
  {
    std::lock_guard ilock(i->mu);
    i->nlink = 0;
    i->ctime = now();
  }
  maybe_destroy(i);
  return {};
}

Status Filesystem::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, unsigned flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Err{EINVAL};
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Err{EINVAL};
  if (new_name.size() > kNameMax) return Err{ENAMETOOLONG};
  std::unique_lock lock(ns_mu_);
  auto from_dir = find_locked(parent);
  auto to_dir = find_locked(new_parent);
  if (!from_dir || !to_dir) return Err{ENOENT};
  if (!from_dir->is_dir() || !to_dir->is_dir()) return Err{ENOTDIR};
  auto from_it = from_dir->dir.entries.find(name);
  if (from_it == from_dir->dir.entries.end()) return Err{ENOENT};
  auto src = find_locked(from_it->second.ino);
  auto to_it = to_dir->dir.entries.find(new_name);
  std::shared_ptr<Inode> dst =
      to_it == to_dir->dir.entries.end() ? nullptr : find_locked(to_it->second.ino);

  if ((flags & RENAME_NOREPLACE) && dst) return Err{EEXIST};
  if ((flags & RENAME_EXCHANGE) && !dst) return Err{ENOENT};
  if (dst == src) return {};  // same inode: POSIX says do nothing

  // A directory must not move below itself.
  auto is_ancestor = [&](uint64_t anc, uint64_t ino) {
    for (;;) {
      if (ino == anc) return true;
      if (ino == kRootIno) return false;
      ino = find_locked(ino)->dir.parent;
    }
  };
  if (src->is_dir() && is_ancestor(src->ino, new_parent)) return Err{EINVAL};
  if ((flags & RENAME_EXCHANGE) && dst->is_dir() && is_ancestor(dst->ino, parent)) {
    return Err{EINVAL};
  }

  auto move_dir_link = [&](Inode& d, Inode& from, Inode& to) {
    if (!d.is_dir() || &from == &to) return;
    d.dir.parent = to.ino;
    std::scoped_lock locks(from.mu, to.mu);
    --from.nlink;
    ++to.nlink;
  };
  auto touch = [](Inode& i) {
    std::lock_guard l(i.mu);
    i.ctime = now();
  };

  if (flags & RENAME_EXCHANGE) {
    from_it->second.ino = dst->ino;
    to_it->second.ino = src->ino;
    move_dir_link(*src, *from_dir, *to_dir);
    move_dir_link(*dst, *to_dir, *from_dir);
    touch_dir(*from_dir);
    touch_dir(*to_dir);
    touch(*src);
    touch(*dst);
    return {};
  }

  if (dst) {
    if (src->is_dir() && !dst->is_dir()) return Err{ENOTDIR};
    if (!src->is_dir() && dst->is_dir()) return Err{EISDIR};
    if (dst->is_dir() && !dst->dir.entries.empty()) return Err{ENOTEMPTY};
    remove_entry(*to_dir, new_name);
    if (dst->is_dir()) {
      {
        std::lock_guard l(to_dir->mu);
        --to_dir->nlink;
      }
      {
        std::lock_guard l(dst->mu);
        dst->nlink = 0;
      }
      maybe_destroy(dst);
    } else {
      drop_link(dst);
    }
  }
  std::string moved(name);
  remove_entry(*from_dir, moved);
  add_entry(*to_dir, new_name, src->ino);
  move_dir_link(*src, *from_dir, *to_dir);
  touch(*src);
  return {};
}

Result<std::string> Filesystem::readlink(uint64_t ino) {
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  if (i->type != S_IFLNK) return Err{EINVAL};
  return i->symlink_target;
}

Status Filesystem::opendir(uint64_t ino) {
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  if (!i->is_dir()) return Err{ENOTDIR};
  return {};
}

Status Filesystem::readdir(uint64_t ino, uint64_t offset, const DirFiller& add) {
  std::shared_lock lock(ns_mu_);
  auto d = find_locked(ino);
  if (!d) return Err{ENOENT};
  if (!d->is_dir()) return Err{ENOTDIR};
  if (offset < 1 && !add(".", ino, S_IFDIR, 1)) return {};
  if (offset < 2 && !add("..", d->dir.parent, S_IFDIR, 2)) return {};
  for (auto it = d->dir.by_cookie.upper_bound(std::max<uint64_t>(offset, 2));
       it != d->dir.by_cookie.end(); ++it) {
    const DirEntry& e = d->dir.entries.find(it->second)->second;
    if (!add(it->second, e.ino, find_locked(e.ino)->type, it->first)) break;
  }
  return {};
}

struct statvfs Filesystem::statfs() const {
  struct statvfs s {};
  AccountingSnapshot a = acc_.snapshot();
  s.f_bsize = s.f_frsize = page_size_;
  s.f_blocks = a.limit_pages;
  s.f_bfree = s.f_bavail = a.limit_pages - std::min(a.limit_pages, a.charged_pages);
  s.f_files = options_.nr_inodes;
  s.f_ffree = s.f_favail = options_.nr_inodes - std::min(options_.nr_inodes, a.inodes);
  s.f_namemax = kNameMax;
  return s;
}

// ---------------------------------------------------------------------------
// File data.

Result<std::unique_ptr<OpenFile>> Filesystem::open(uint64_t ino, int flags) {
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  if (i->is_dir() && (flags & O_ACCMODE) != O_RDONLY) return Err{EISDIR};
  if ((flags & O_TRUNC) && i->is_reg() && (flags & O_ACCMODE) != O_RDONLY) {
    std::unique_lock io(i->io_mu);
    std::lock_guard lock(i->mu);
    if (i->size != 0) {
      Status s = truncate_locked(*i, 0);
      if (!s.ok()) return Err{s.err()};
    }
  }
  auto f = std::make_unique<OpenFile>();
  f->inode = std::move(i);
  f->flags = flags;
  return f;
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

Result<size_t> Filesystem::write(const OpenFile& f, const char* buf, size_t size, uint64_t off,
                                 bool writeback) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return Err{EINVAL};
  if (size == 0) return size_t{0};
  if (off > static_cast<uint64_t>(LLONG_MAX) - size) return Err{EFBIG};
  const uint64_t end = off + size;
  const PageRange pages{off / page_size_, (end + page_size_ - 1) / page_size_};
  for (int attempt = 0;; ++attempt) {
    std::shared_lock io(i.io_mu);
    std::unique_lock lock(i.mu);
    WritePlan plan = i.state->plan_write(pages, writeback);
    if (plan.eio) return Err{EIO};
    if (plan.new_pages && !acc_.try_charge(plan.new_pages)) {
      lock.unlock();
      io.unlock();
      if (attempt + 1 == kWriteAttempts || !purge_for_space(plan.new_pages)) return Err{ENOSPC};
      continue;
    }
    i.state->commit_write(plan);
    if (end > i.size) {
      // The store grows under mu, so concurrent writers never shrink it.
      if (int r = i.store->truncate(end); r < 0) return Err{-r};
      i.size = end;
    }
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
    if (int r = i.store->punch(off, len); r < 0) return Err{-r};
    uint64_t first = (off + page_size_ - 1) / page_size_;
    uint64_t last = end / page_size_;
    if (first < last) acc_.uncharge(i.state->drop(first, last));
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
    uint64_t need = i.state->nonresident_in(pages);
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
    [[maybe_unused]] uint64_t added = i.state->make_resident(pages);
    assert(added == need);
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
    if (off >= i.size) return Err{ENXIO};
  }
  int64_t r = i.store->seek(off, whence);
  if (r < 0) return Err{static_cast<int>(-r)};
  return static_cast<uint64_t>(r);
}

// ---------------------------------------------------------------------------
// Extended attributes: the user.* namespace, as tmpfs offers it.

namespace {
Status check_xattr_name(std::string_view name) {
  if (name.size() > XATTR_NAME_MAX) return Err{ERANGE};
  if (name.substr(0, 5) != "user." || name.size() == 5) return Err{EOPNOTSUPP};
  return {};
}
}  // namespace

Status Filesystem::setxattr(uint64_t ino, std::string_view name, std::string_view value,
                            int flags) {
  if (Status s = check_xattr_name(name); !s.ok()) return s;
  if (value.size() > kXattrValueMax) return Err{E2BIG};
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  std::lock_guard lock(i->mu);
  auto it = i->xattrs.find(name);
  if ((flags & XATTR_CREATE) && it != i->xattrs.end()) return Err{EEXIST};
  if ((flags & XATTR_REPLACE) && it == i->xattrs.end()) return Err{ENODATA};
  if (it == i->xattrs.end()) {
    i->xattrs.emplace(std::string(name), std::string(value));
  } else {
    it->second = std::string(value);
  }
  i->ctime = now();
  return {};
}

Result<std::string> Filesystem::getxattr(uint64_t ino, std::string_view name) {
  if (Status s = check_xattr_name(name); !s.ok()) {
    return Err{s.err() == EOPNOTSUPP ? ENODATA : s.err()};
  }
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  std::lock_guard lock(i->mu);
  auto it = i->xattrs.find(name);
  if (it == i->xattrs.end()) return Err{ENODATA};
  return it->second;
}

Result<std::string> Filesystem::listxattr(uint64_t ino) {
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  std::lock_guard lock(i->mu);
  std::string out;
  for (const auto& [name, value] : i->xattrs) {
    out += name;
    out.push_back('\0');
  }
  return out;
}

Status Filesystem::removexattr(uint64_t ino, std::string_view name) {
  if (Status s = check_xattr_name(name); !s.ok()) return s;
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  std::lock_guard lock(i->mu);
  auto it = i->xattrs.find(name);
  if (it == i->xattrs.end()) return Err{ENODATA};
  i->xattrs.erase(it);
  i->ctime = now();
  return {};
}

// ---------------------------------------------------------------------------
// Volatile ranges.

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

void Filesystem::mark(const OpenFile& f, ByteRange r, uint32_t flags, MarkDone done) {
  mark_batch(f, {MarkRequest{r, flags}}, std::move(done));
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
    if (m.flags & ~VOLFS_MARK_VALID_FLAGS) return done(Err{EINVAL});
    if ((m.flags & VOLFS_MARK_PRIORITY_MASK) && !(m.flags & VOLFS_MARK_HAS_PRIORITY)) {
      return done(Err{EINVAL});
    }
  }
  std::vector<PurgeEntry> entries;
  entries.reserve(ranges.size());
  int err = 0;  // answered after mu is released
  {
    std::lock_guard lock(i->mu);
    std::vector<PageRange> pages;
    pages.reserve(ranges.size());
    for (const MarkRequest& m : ranges) {
      Result<PageRange> p = volatile_range(*i, m.range, /*for_mark=*/true);
      if (!p.ok()) {
        err = p.err();
        break;
      }
      pages.push_back(*p);
    }
    for (size_t k = 0; k < pages.size() && !err; ++k) {
      const uint32_t flags = ranges[k].flags;
      uint8_t prio = (flags & VOLFS_MARK_HAS_PRIORITY)
                         ? static_cast<uint8_t>((flags & VOLFS_MARK_PRIORITY_MASK) >>
                                                VOLFS_MARK_PRIORITY_SHIFT)
                         : VOLFS_PRIORITY_DEFAULT;
      uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
      i->state->mark(pages[k], prio, flags & VOLFS_MARK_STRICT, seq);
      entries.push_back(PurgeEntry{.prio = prio, .seq = seq, .ino = i->ino, .range = pages[k]});
    }
  }
  if (err) return done(Err{err});
  if (!options_.purge_on_mark) return done({});
  // Debug mode: purge what was just marked, and answer once every mapping
  // sees it, so applications meet the purged state as early as possible.
  std::vector<PurgeBatch> batches;
  for (const PurgeEntry& e : entries) purge_entry(e, UINT64_MAX, batches);
  post_finish(std::move(batches), [done = std::move(done)] { done({}); });
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
    for (const ByteRange& r : ranges) {
      Result<PageRange> p = volatile_range(*i, r, /*for_mark=*/false);
      if (!p.ok()) {
        err = p.err();
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
      job->inode->waiters.push_back([this, job] { try_unmark(job); });
      return;
    }
    job->purged.push_back(res == UnmarkResult::kPurged);
  }
  lock.unlock();
  job->done(std::move(job->purged));
}

Result<RangeStatus> Filesystem::range_status(const OpenFile& f, ByteRange r) {
  Inode& i = *f.inode;
  if (!i.is_reg()) return Err{EINVAL};
  std::lock_guard lock(i.mu);
  Result<PageRange> pages = volatile_range(i, r, /*for_mark=*/false);
  if (!pages.ok()) return Err{pages.err()};
  return i.state->status(*pages);
}

void Filesystem::purge(uint64_t max_bytes, PurgeDone done) {
  uint64_t max_pages = max_bytes == VOLFS_PURGE_ALL ? UINT64_MAX : max_bytes / page_size_;
  std::vector<PurgeBatch> batches;
  uint64_t pages = purge_pages(max_pages, batches);
  post_finish(std::move(batches),
              [this, pages, done = std::move(done)] { done(pages * page_size_); });
}

bool Filesystem::purge_for_space(uint64_t pages) {
  std::vector<PurgeBatch> batches;
  uint64_t n = purge_pages(pages, batches);
  // The store memory is free now; the kernel's copies go on the worker, as
  // this handler may be the write-back that the invalidation waits for.
  post_finish(std::move(batches), nullptr);
  return n > 0;
}

uint64_t Filesystem::purge_pages(uint64_t max_pages, std::vector<PurgeBatch>& out) {
  uint64_t total = 0;
  while (total < max_pages) {
    std::optional<PurgeEntry> e = queue_.front();
    if (!e) break;
    uint64_t n = purge_entry(*e, max_pages - total, out);
    if (n == 0) {
      // The entry changed between front() and the inode's lock; a queue
      // entry always has purgeable pages, so a second miss means it is gone.
      std::optional<PurgeEntry> again = queue_.front();
      if (again && again->seq == e->seq && again->prio == e->prio) {
        assert(!"purge queue entry without purgeable pages");
        break;
      }
    }
    total += n;
  }
  return total;
}

uint64_t Filesystem::purge_entry(const PurgeEntry& e, uint64_t max_pages,
                                 std::vector<PurgeBatch>& out) {
  std::shared_ptr<Inode> i = find(e.ino);
  if (!i || !i->is_reg()) return 0;
  std::unique_lock io(i->io_mu);
  std::lock_guard lock(i->mu);
  uint32_t id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  if (id == 0) id = next_purge_id_.fetch_add(1, std::memory_order_relaxed);
  std::vector<PageRange> victims = i->state->purge(e.range, e.seq, max_pages, id);
  uint64_t pages = 0;
  for (const PageRange& v : victims) {
    // Punching the memfd frees the memory now. Should it fail (it cannot for
    // a memfd short of a kernel bug), the pages still read as purged.
    (void)i->store->punch(v.first * page_size_, v.pages() * page_size_);
    pages += v.pages();
  }
  if (pages == 0) return 0;
  acc_.uncharge(pages);
  out.push_back(PurgeBatch{i, id, std::move(victims)});
  return pages;
}

void Filesystem::post_finish(std::vector<PurgeBatch> batches, std::function<void()> then) {
  if (batches.empty() || !worker_) {
    finish_purge(batches);
    if (then) then();
    return;
  }
  worker_->post([this, batches = std::move(batches), then = std::move(then)] {
    finish_purge(batches);
    if (then) then();
  });
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
  // 4. Unmarks that waited for this purge answer now.
  std::vector<std::function<void()>> waiters;
  for (const PurgeBatch& b : batches) {
    std::lock_guard lock(b.inode->mu);
    if (--b.inode->settling == 0) {
      for (auto& w : b.inode->waiters) waiters.push_back(std::move(w));
      b.inode->waiters.clear();
    }
  }
  for (auto& w : waiters) w();
}

}  // namespace volfs
