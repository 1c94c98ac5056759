// Store: the bytes of one regular file, held in a memfd the daemon owns.
// A memfd gives real holes (fallocate PUNCH_HOLE frees memory), SEEK_DATA and
// SEEK_HOLE for free, and an fd that libfuse can splice replies from.
// Invariant: the memfd's size equals the file's size. Methods return -errno.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace volfs {

class Store {
 public:
  Store() = default;
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Creates the memfd; 0 or -errno.
  int open();
  int fd() const { return fd_; }

  ssize_t pwrite(const void* buf, size_t len, uint64_t off);
  ssize_t pread(void* buf, size_t len, uint64_t off) const;
  int truncate(uint64_t size);
  int punch(uint64_t off, uint64_t len);     // keeps the size
  int allocate(uint64_t off, uint64_t len);  // keeps the size
  // SEEK_DATA / SEEK_HOLE over the memfd: returns the offset or -errno.
  int64_t seek(uint64_t off, int whence) const;

 private:
  int fd_ = -1;
};

}  // namespace volfs
