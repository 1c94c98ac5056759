// Store: the bytes of one regular file, held in a file the daemon owns.
// Backing: where those files live. Preferably a private tmpfs instance (a
// detached mount that no path reaches) whose size= and nr_inodes= are the
// mount's, so the kernel itself enforces the size limit for writes and stores
// through mappings that never reach the daemon (FUSE passthrough). Where the
// daemon may not mount one, anonymous memfds, as tmpfs files without a limit.
// A tmpfs file gives real holes (PUNCH_HOLE frees memory), SEEK_DATA/SEEK_HOLE,
// and an fd that libfuse can splice from and the kernel can pass through to.
// Invariant: the backing file's size is the file's size. Methods return -errno.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "page_map.h"

namespace volfs::core {

class Backing {
 public:
  // A private tmpfs of the given limits; on failure (no CAP_SYS_ADMIN, an old
  // kernel) memfds, with the reason in fallback_reason().
  static Backing make(uint64_t size_bytes, uint64_t nr_inodes);
  // memfds only (unit tests, and -o passthrough=off has no need of more).
  static Backing memfds() { return Backing(); }

  Backing(Backing&& o) noexcept
      : dir_fd_(std::exchange(o.dir_fd_, -1)),
        fs_fd_(std::exchange(o.fs_fd_, -1)),
        why_(std::move(o.why_)),
        mu_(std::move(o.mu_)),
        size_(o.size_) {}
  Backing& operator=(Backing&&) = delete;
  Backing(const Backing&) = delete;
  ~Backing();

  bool private_tmpfs() const { return dir_fd_ >= 0; }
  const std::string& fallback_reason() const { return why_; }
  // A new, empty, anonymous file: its fd or -errno.
  int create_file() const;
  // Pages the private tmpfs holds, each counted once; nullopt with memfds.
  std::optional<uint64_t> used_pages() const;
  // Sets the private tmpfs's size= (tmpfs rounds it up to pages, and refuses
  // less than it holds: -ENOSPC). 0 or -errno; 0 with memfds. Thread-safe.
  int set_size(uint64_t bytes);

 private:
  Backing() = default;
  int dir_fd_ = -1;  // root of the private tmpfs
  int fs_fd_ = -1;   // its filesystem context, for set_size
  std::string why_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();  // guards size_, fs_fd_ use
  uint64_t size_ = 0;
};

class Store {
 public:
  Store() = default;
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Creates the backing file; 0 or -errno.
  int open(const Backing& backing);
  // Closes the backing file: its pages are freed unless a mapping of it
  // (a passthrough mmap) still holds it. Later calls fail with EBADF.
  void close();
  // Whether another open file of the backing file exists: the kernel's, of
  // a passthrough open or of a mapping that outlived it. Asked by taking a
  // write lease, which the kernel grants only to the sole opener (on a
  // kernel without IMA it does not count read-only opens). True on doubt.
  bool opened_elsewhere() const;
  int fd() const { return fd_; }

  ssize_t pwrite(const void* buf, size_t len, uint64_t off);
  int truncate(uint64_t size);
  int punch(uint64_t off, uint64_t len);     // keeps the size
  int allocate(uint64_t off, uint64_t len);  // keeps the size
  // SEEK_DATA / SEEK_HOLE over the backing file: returns the offset or -errno.
  int64_t seek(uint64_t off, int whence) const;
  int stat(struct stat& st) const;
  int set_times(const timespec& atime, const timespec& mtime);
  // The page runs inside r that the store holds in memory (written, stored
  // through a mapping, or fallocated), in order; pages past `size` bytes hold
  // none. From SEEK_DATA (to skip holes) and mincore(2). Empty on error.
  std::vector<PageRange> data_runs(PageRange r, uint64_t page_size, uint64_t size) const;

 private:
  int fd_ = -1;
};

}  // namespace volfs::core
