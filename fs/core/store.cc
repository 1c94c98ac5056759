// Store: thin -errno wrappers around a memfd. See store.h.
#include "store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace volfs {

Store::~Store() {
  if (fd_ >= 0) ::close(fd_);
}

int Store::open() {
  fd_ = ::memfd_create("volfs", MFD_CLOEXEC);
  return fd_ < 0 ? -errno : 0;
}

ssize_t Store::pwrite(const void* buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd_, static_cast<const char*>(buf) + done, len - done,
                         static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

ssize_t Store::pread(void* buf, size_t len, uint64_t off) const {
  ssize_t n = ::pread(fd_, buf, len, static_cast<off_t>(off));
  return n < 0 ? -errno : n;
}

int Store::truncate(uint64_t size) {
  return ::ftruncate(fd_, static_cast<off_t>(size)) < 0 ? -errno : 0;
}

int Store::punch(uint64_t off, uint64_t len) {
  if (len == 0) return 0;
  return ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                     static_cast<off_t>(len)) < 0
             ? -errno
             : 0;
}

int Store::allocate(uint64_t off, uint64_t len) {
  if (len == 0) return 0;
  return ::fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) < 0
             ? -errno
             : 0;
}

int64_t Store::seek(uint64_t off, int whence) const {
  off_t r = ::lseek(fd_, static_cast<off_t>(off), whence);
  return r < 0 ? -errno : r;
}

}  // namespace volfs
