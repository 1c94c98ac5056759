// Filesystem, namespace: lookup, forget, create, link, unlink, rename, readdir.
// See filesystem.h for the interface and the lock order.
#include "filesystem.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/xattr.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "filesystem_internal.h"

namespace volfs::core {

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

void Filesystem::drop_if_unreachable(Inode& i, LastLink why) noexcept {
  if (!i.is_reg()) return;
  // Both are final at zero: link() refuses an inode without links, and
  // open() one whose data is dropped. An open file (even one the kernel
  // forgot first, if it ever does) is dropped at its RELEASE, after the
  // kernel has let go of the store.
  auto reachable = [&] { return i.data_dropped || i.nlink > 0 || i.opens > 0; };
  {
    std::lock_guard lock(i.mu);  // the common case, without waiting for io_mu
    if (reachable()) return;
  }
  // From here the room may be coming: a write or an open that finds the
  // mount full waits for it (wait_for_drops) rather than failing.
  DropInProgress busy(*this);
  std::unique_lock io(i.io_mu);
  std::lock_guard lock(i.mu);
  if (reachable()) return;
  if (why != LastLink::kForgotten && i.passthrough() &&
      mapped_elsewhere(*i.store, why == LastLink::kClosed)) {
    return;
  }
  i.data_dropped = true;  // from now on open() says ENOENT
  // A purge that still holds the inode finds no pages left to take (and its
  // punch of the closed store is a harmless EBADF). The slot table maps the
  // store's word pages: it goes too, or they would keep the whole file.
  i.slots.reset();
  i.store->close();
  acc_.uncharge(i.state->drop(0, FileState::kEndOfFile));
  acc_.add_files(-1);
}

Filesystem::DropInProgress::DropInProgress(Filesystem& f) : fs_(f) {
  std::lock_guard lock(fs_.drops_mu_);
  ticket_ = ++fs_.drops_started_;
  fs_.drops_under_way_.insert(ticket_);
}

Filesystem::DropInProgress::~DropInProgress() {
  {
    std::lock_guard lock(fs_.drops_mu_);
    fs_.drops_under_way_.erase(ticket_);
    ++fs_.drops_finished_;
  }
  fs_.drops_cv_.notify_all();
}

bool Filesystem::mapped_elsewhere(const Store& store, bool just_closed) {
  // A cached mapping holds its FUSE file open. A passthrough mapping does
  // not: the kernel maps a file of its own, opened on the store for the
  // FUSE open, and keeps it when the FUSE file is released. If it is there,
  // the kernel's FORGET tells when the last mapping is gone. Right after the
  // last close the kernel may not have let go of the file of that open yet
  // (the closing thread does, after sending the RELEASE): ask a few times.
  // (The RELEASE has no one waiting for it.)
  const auto until = std::chrono::steady_clock::now() +
                     (just_closed ? std::chrono::microseconds(200) : std::chrono::microseconds(0));
  for (;;) {
    if (!store.opened_elsewhere()) return false;
    if (std::chrono::steady_clock::now() >= until) return true;
    std::this_thread::yield();
  }
}

void Filesystem::forget(uint64_t ino, uint64_t nlookup) {
  OrphanCheck orphan(*this);  // normally dropped at its unlink or last release already
  std::unique_lock lock(ns_mu_);
  auto i = find_locked(ino);
  if (!i) return;
  assert(i->nlookup >= nlookup);
  i->nlookup -= std::min(i->nlookup, nlookup);
  if (maybe_destroy(i)) orphan.why = LastLink::kForgotten;
  orphan.inode = std::move(i);
}

bool Filesystem::maybe_destroy(const std::shared_ptr<Inode>& i) {
  if (i->ino == kRootIno || i->nlookup > 0 || i->nlink > 0) return false;
  inodes_.erase(i->ino);
  acc_.add_inodes(-1);
  {
    std::lock_guard lock(i->mu);
    acc_.uncharge(xattr_pages(i->xattr_bytes));
    i->xattr_bytes = 0;
  }
  return true;
}

void Filesystem::touch_dir(Inode& dir) {
  std::lock_guard lock(dir.mu);
  dir.mtime = dir.ctime = now();
}

void Filesystem::add_entry(Inode& dir, std::string_view name, uint64_t ino) {
  // Both entries or neither: bad_alloc leaves the directory as it was.
  uint64_t cookie = dir.dir.next_cookie;
  auto it = dir.dir.entries.emplace(std::string(name), DirEntry{ino, cookie}).first;
  try {
    dir.dir.by_cookie.emplace(cookie, std::string(name));
  } catch (...) {
    dir.dir.entries.erase(it);
    throw;
  }
  ++dir.dir.next_cookie;
  touch_dir(dir);
}

void Filesystem::remove_entry(Inode& dir, std::string_view name) {
  auto it = dir.dir.entries.find(name);
  assert(it != dir.dir.entries.end());
  dir.dir.by_cookie.erase(it->second.cookie);
  dir.dir.entries.erase(it);
  touch_dir(dir);
}

bool Filesystem::drop_link(const std::shared_ptr<Inode>& i) {
  bool own_slot;
  {
    std::lock_guard lock(i->mu);
    assert(i->nlink > 0);
    if (--i->nlink == 0 && i->opens > 0 && i->is_reg()) {
      deleted_open_.fetch_add(1, std::memory_order_relaxed);
    }
    i->ctime = now();
    // Every link beyond the first took an inode slot (see link()).
    own_slot = i->nlink > 0 && !i->is_dir();
  }
  if (own_slot) acc_.add_inodes(-1);
  return maybe_destroy(i);
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
  try {
    return make_node_charged(*dir, parent, name, mode, rdev, c, target);
  } catch (...) {
    acc_.add_inodes(-1);  // bad_alloc before the commit: the slot goes back
    throw;
  }
}

Result<Entry> Filesystem::make_node_charged(Inode& parent_dir, uint64_t parent,
                                            std::string_view name, mode_t mode, dev_t rdev,
                                            const Caller& c, std::string_view target) {
  Inode* dir = &parent_dir;
  auto i = std::make_shared<Inode>(next_ino_, mode);
  i->mode = mode;
  i->uid = c.uid;
  i->gid = c.gid;
  {
    std::lock_guard dlock(dir->mu);
    inherit_iomode(*dir, *i);
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
    if (int r = i->store->open(backing_); r < 0) {
      acc_.add_inodes(-1);
      return Err{-r};
    }
    i->state = std::make_unique<FileState>(i->ino, acc_, queue_);
  }
  if (i->type == S_IFLNK) {
    i->symlink_target = std::string(target);
    i->size = target.size();
  }
  if (i->is_dir()) i->dir.parent = parent;
  i->nlookup = 1;
  // Everything that allocates comes before the last step that can fail; the
  // commit after it cannot throw.
  auto slot = inodes_.emplace(i->ino, i).first;
  try {
    add_entry(*dir, name, i->ino);
  } catch (...) {
    inodes_.erase(slot);
    throw;
  }
  ++next_ino_;
  if (i->is_reg()) acc_.add_files(1);
  if (i->is_dir()) {
    std::lock_guard dlock(dir->mu);
    ++dir->nlink;
  }
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
  }
  // Each link beyond the first takes an inode slot, as on tmpfs: a name costs
  // daemon memory like an inode does, and nr_inodes bounds both.
  if (!acc_.try_add_inode(options_.nr_inodes)) return Err{ENOSPC};
  try {
    add_entry(*dir, name, ino);
  } catch (...) {
    acc_.add_inodes(-1);
    throw;
  }
  {
    std::lock_guard ilock(i->mu);
    ++i->nlink;
    i->ctime = now();
  }
  std::atomic_ref<uint64_t>(i->nlookup).fetch_add(1, std::memory_order_relaxed);
  return Entry{ino, stat_of(*i)};
}

Status Filesystem::unlink(uint64_t parent, std::string_view name) {
  OrphanCheck orphan(*this);  // after the lock below is released
  std::unique_lock lock(ns_mu_);
  auto dir = find_locked(parent);
  if (!dir) return Err{ENOENT};
  if (!dir->is_dir()) return Err{ENOTDIR};
  auto it = dir->dir.entries.find(name);
  if (it == dir->dir.entries.end()) return Err{ENOENT};
  auto i = find_locked(it->second.ino);
  if (i->is_dir()) return Err{EISDIR};
  remove_entry(*dir, name);
  if (drop_link(i)) orphan.why = LastLink::kForgotten;  // the kernel never knew it
  orphan.inode = std::move(i);
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
  OrphanCheck orphan(*this);  // of a file renamed over, after the namespace lock
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
      if (drop_link(dst)) orphan.why = LastLink::kForgotten;
      orphan.inode = dst;
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
  AccountingSnapshot a = pressure_snapshot();
  s.f_bsize = s.f_frsize = page_size_;
  s.f_blocks = a.limit_pages;
  s.f_bfree = s.f_bavail = a.limit_pages - std::min(a.limit_pages, a.charged_pages);
  s.f_files = options_.nr_inodes;
  s.f_ffree = s.f_favail = options_.nr_inodes - std::min(options_.nr_inodes, a.inodes);
  s.f_namemax = kNameMax;
  return s;
}

}  // namespace volfs::core
