// Filesystem, extended attributes: the user.* namespace, as tmpfs offers it.
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

namespace {
Status check_xattr_name(std::string_view name) {
  if (name.size() > XATTR_NAME_MAX) return Err{ERANGE};
  if (name.substr(0, 5) != "user." || name.size() == 5) return Err{EOPNOTSUPP};
  return {};
}

// The io mode preference of a file, or of the files made in a directory
// (docs/volatile-ranges.md, "Strict pages and io modes").
constexpr std::string_view kIoModeXattr = "user.volfs.iomode";

// The bytes an xattr costs against size=. The io mode is a setting of the
// daemon's, at most one short value per inode, so bounded by nr_inodes; it
// costs nothing, and setting it never takes room from data.
uint64_t xattr_cost(std::string_view name, std::string_view value) {
  return name == kIoModeXattr ? 0 : kXattrOverhead + name.size() + value.size();
}
}  // namespace

void Filesystem::inherit_iomode(const Inode& dir, Inode& child) {
  auto it = dir.xattrs.find(kIoModeXattr);
  if (it == dir.xattrs.end()) return;
  child.xattrs.emplace(it->first, it->second);
  child.prefer_cached = it->second == "cached";
}

Status Filesystem::setxattr(uint64_t ino, std::string_view name, std::string_view value,
                            int flags) {
  if (Status s = check_xattr_name(name); !s.ok()) return s;
  if (value.size() > kXattrValueMax) return Err{E2BIG};
  auto i = find(ino);
  if (!i) return Err{ENOENT};
  // Built before anything is charged or changed (bad_alloc changes nothing).
  std::string new_value(value);
  for (int attempt = 0;; ++attempt) {
    std::unique_lock lock(i->mu);
    auto it = i->xattrs.find(name);
    if ((flags & XATTR_CREATE) && it != i->xattrs.end()) return Err{EEXIST};
    if ((flags & XATTR_REPLACE) && it == i->xattrs.end()) return Err{ENODATA};
    const bool iomode = name == kIoModeXattr;
    if (iomode && value != "cached" && value != "passthrough") return Err{EINVAL};
    // Charged against size= like data, as tmpfs does: df shows them, and a
    // full mount says ENOSPC (after purging volatile pages, as a write does).
    const uint64_t old_cost = it == i->xattrs.end() ? 0 : xattr_cost(name, it->second);
    const uint64_t bytes = i->xattr_bytes - old_cost + xattr_cost(name, value);
    const uint64_t had = xattr_pages(i->xattr_bytes), need = xattr_pages(bytes);
    if (need > had && !acc_.try_charge(need - had)) {
      lock.unlock();
      if (attempt + 1 == kWriteAttempts || !purge_for_space(need - had)) return Err{ENOSPC};
      continue;
    }
    if (it == i->xattrs.end()) {
      try {
        i->xattrs.emplace(std::string(name), std::move(new_value));
      } catch (...) {
        if (need > had) acc_.uncharge(need - had);
        throw;
      }
    } else {
      it->second = std::move(new_value);
    }
    if (need < had) acc_.uncharge(had - need);
    i->xattr_bytes = bytes;
    if (iomode) i->prefer_cached = value == "cached";  // for the first open, if still to come
    i->ctime = now();
    return {};
  }
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
  if (name == kIoModeXattr) i->prefer_cached = false;
  const uint64_t bytes = i->xattr_bytes - xattr_cost(name, it->second);
  acc_.uncharge(xattr_pages(i->xattr_bytes) - xattr_pages(bytes));
  i->xattr_bytes = bytes;
  i->xattrs.erase(it);
  i->ctime = now();
  return {};
}

}  // namespace volfs::core
