// Daemon: what every FUSE handler reaches through fuse_req_userdata(): the
// core Filesystem, the session (for notifications) and the open-file table.
// Handlers are grouped by kind in fuse_*.cc and wired in assign_operations().
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "core/filesystem.h"

namespace volfs {

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
class FuseInvalidator : public CacheInvalidator {
 public:
  explicit FuseInvalidator(fuse_session* se) : se_(se) {}
  void invalidate(uint64_t ino, uint64_t off, uint64_t len) override {
    // -ENOENT means the kernel holds no pages of the inode: nothing to do.
    (void)fuse_lowlevel_notify_inval_inode(se_, ino, static_cast<off_t>(off),
                                           static_cast<off_t>(len));
  }

 private:
  fuse_session* se_;
};

struct Daemon {
  Daemon(const MountOptions& o, uint64_t page_size) : fs(o, page_size) {}
  Filesystem fs;
  OpenFiles files;
  uid_t owner_uid = 0;           // who mounted: may purge, like root
  double timeout = 1.0;          // entry and attribute cache timeout, seconds
  std::string mountpoint;        // absolute, for init() to find the mount's bdi
  uint64_t readahead_bytes = 0;  // 0: the kernel's default
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
