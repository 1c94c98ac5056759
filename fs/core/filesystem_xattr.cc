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

namespace volfs {

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
  // Built before anything is charged or changed (bad_alloc changes nothing).
  std::string new_value(value);
  for (int attempt = 0;; ++attempt) {
    std::unique_lock lock(i->mu);
    auto it = i->xattrs.find(name);
    if ((flags & XATTR_CREATE) && it != i->xattrs.end()) return Err{EEXIST};
    if ((flags & XATTR_REPLACE) && it == i->xattrs.end()) return Err{ENODATA};
    // Charged against size= like data, as tmpfs does: df shows them, and a
    // full mount says ENOSPC (after purging volatile pages, as a write does).
    const uint64_t old_cost = it == i->xattrs.end() ? 0 : kXattrOverhead + name.size() + it->second.size();
    const uint64_t bytes = i->xattr_bytes - old_cost + kXattrOverhead + name.size() + value.size();
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
  const uint64_t bytes = i->xattr_bytes - (kXattrOverhead + name.size() + it->second.size());
  acc_.uncharge(xattr_pages(i->xattr_bytes) - xattr_pages(bytes));
  i->xattr_bytes = bytes;
  i->xattrs.erase(it);
  i->ctime = now();
  return {};
}

}  // namespace volfs
