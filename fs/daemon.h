// Daemon: what every FUSE handler reaches through fuse_req_userdata(): the
// core Filesystem, the session (for notifications) and the open-file table.
// Handlers are grouped by kind in fuse_*.cc and wired in assign_operations().
#pragma once

// The libfuse 3.17 API (CMake accepts >= 3.16): passthrough (fuse_passthrough_open,
// FUSE_CAP_PASSTHROUGH, fuse_file_info::backing_id) came in 3.16, the 64-bit feature flags
// (fuse_set_feature_flag) in 3.17.
#define FUSE_USE_VERSION 317
#include <fuse_lowlevel.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "core/filesystem.h"

namespace volfs {

// The adapter is the core's one client: it speaks the core's types unqualified.
using namespace core;  // NOLINT(google-build-using-namespace)

// Owns every OpenFile handed to the kernel as a file handle, so that none
// leaks when the daemon stops with files still open.
class OpenFiles {
 public:
  uint64_t add(std::unique_ptr<OpenFile> f) {
    auto fh = reinterpret_cast<uint64_t>(f.get());
    std::lock_guard lock(mu_);
    files_.emplace(fh, std::move(f));
    return fh;
  }
  void remove(uint64_t fh) {
    std::lock_guard lock(mu_);
    files_.erase(fh);
  }
  void clear() {
    std::lock_guard lock(mu_);
    files_.clear();
  }

 private:
  std::mutex mu_;  // guards files_; a leaf lock
  // By file handle: the OpenFile's address, as the kernel holds it.
  std::unordered_map<uint64_t, std::unique_ptr<OpenFile>> files_;
};

// Drops kernel page-cache ranges through the FUSE notification channel.
// The promise that every mapping sees a purge rests on these calls, so a
// failure is counted and logged (the first of each errno, then at every
// power of ten of the total), never dropped silently. Nothing else can be
// done: the kernel refused (ENODEV: the mount is going away, and with it the
// cache; ENOMEM, EIO: it could not take the notification), a retry from the
// purge worker would most likely meet the same, and the store is right
// either way. Not in volfs_stats: that ABI belongs to the pressure work.
class FuseInvalidator : public CacheInvalidator {
 public:
  explicit FuseInvalidator(fuse_session* se) : se_(se) {}
  void invalidate(uint64_t ino, uint64_t off, uint64_t len) override {
    int r = fuse_lowlevel_notify_inval_inode(se_, ino, static_cast<off_t>(off),
                                             static_cast<off_t>(len));
    // -ENOENT means the kernel holds no pages of the inode: nothing to do.
    if (r == 0 || r == -ENOENT) return;
    // Relaxed: a statistic, it orders nothing.
    uint64_t n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    int err = -r;
    bool first_of_kind =
        err > 0 && err < kKinds && !seen_[err].exchange(true, std::memory_order_relaxed);
    bool power_of_ten = false;
    for (uint64_t p = 1; p <= n && !power_of_ten; p *= 10) power_of_ten = p == n;
    if (first_of_kind || power_of_ten) {
      std::fprintf(stderr,
                   "volfs: cache invalidation of inode %llu [%llu, +%llu) failed: %s "
                   "(%llu failures so far); mappings may keep pages a purge freed\n",
                   static_cast<unsigned long long>(ino), static_cast<unsigned long long>(off),
                   static_cast<unsigned long long>(len), std::strerror(err),
                   static_cast<unsigned long long>(n));
    }
  }
  void invalidate_attributes(uint64_t ino) override {
    // Offset -1: the attributes only. -ENOENT: nothing cached to drop.
    (void)fuse_lowlevel_notify_inval_inode(se_, ino, -1, 0);
  }
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kKinds = 256;
  fuse_session* se_;
  std::atomic<uint64_t> failures_{0};
  std::array<std::atomic<bool>, kKinds> seen_{};
};

struct Daemon {
  Daemon(const MountOptions& o, uint64_t page_size, Backing backing)
      : fs(o, page_size, std::move(backing)) {}
  Filesystem fs;
  OpenFiles files;
  uid_t owner_uid = 0;           // who mounted: may purge, like root
  double timeout = 1.0;          // entry and attribute cache timeout, seconds
  std::string mountpoint;        // absolute, for init() to find the mount's bdi
  uint64_t readahead_bytes = 0;  // 0: the kernel's default
  // FUSE_CAP_HANDLE_KILLPRIV_V2 was agreed in init: clearing setuid/setgid
  // on write, truncate and chown is the daemon's (privileges.h).
  std::atomic<bool> killpriv_v2{false};
  // The real handlers, behind the counting table of counted_operations.h;
  // written once before the session starts, read-only after.
  fuse_lowlevel_ops handlers{};

  // FUSE requests that reached a handler since the start (volfs_stats.requests).
  // Relaxed: a statistic that orders nothing; a request is counted before
  // its reply, so whoever saw the reply and then asks for STATS sees it.
  void count_request() { requests_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t requests() const { return requests_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> requests_{0};
};

inline Daemon& daemon_of(fuse_req_t req) { return *static_cast<Daemon*>(fuse_req_userdata(req)); }
// FUSE keeps our handle in a uint64_t; the integer-to-pointer cast is the ABI's, not a choice.
inline OpenFile& file_of(fuse_file_info* fi) {
  return *reinterpret_cast<OpenFile*>(fi->fh);  // NOLINT(performance-no-int-to-ptr)
}

inline Caller caller_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid};
}

// The caller's credentials for clearing setuid/setgid, read from /proc only
// if a file with one of those bits needs them; none without KILLPRIV_V2,
// where the kernel clears them itself through SETATTR.
inline std::function<Credentials()> privilege_credentials_of(fuse_req_t req) {
  if (!daemon_of(req).killpriv_v2.load(std::memory_order_relaxed)) return {};
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return
      [pid = ctx->pid, uid = ctx->uid, gid = ctx->gid] { return read_credentials(pid, uid, gid); };
}

// Runs a handler body; nothing may throw across libfuse, so an exception
// becomes an error reply (the body replies only as its last step).
template <class Fn>
void guarded(fuse_req_t req, Fn&& body) {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

void reply_entry(fuse_req_t req, const Result<Entry>& e);

void assign_entry_operations(fuse_lowlevel_ops& ops);
void assign_dir_operations(fuse_lowlevel_ops& ops);
void assign_io_operations(fuse_lowlevel_ops& ops);
void assign_ioctl_operations(fuse_lowlevel_ops& ops);
void assign_xattr_operations(fuse_lowlevel_ops& ops);

}  // namespace volfs
