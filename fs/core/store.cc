// Store and Backing: thin -errno wrappers around tmpfs files. See store.h.
#include "store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace volfs::core {

Backing Backing::make(uint64_t size_bytes, uint64_t nr_inodes) {
  Backing b;
  auto fail = [&](const char* step) {
    b.why_ = std::string(step) + ": " + std::strerror(errno);
    return std::move(b);
  };
  int fs = ::fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) return fail("fsopen(tmpfs)");
  // One inode more than the mount's: the private root directory.
  std::string size = std::to_string(size_bytes), inodes = std::to_string(nr_inodes + 1);
  if (::fsconfig(fs, FSCONFIG_SET_STRING, "size", size.c_str(), 0) < 0 ||
      ::fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", inodes.c_str(), 0) < 0 ||
      ::fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0700", 0) < 0 ||
      ::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0) {
    Backing r = fail("fsconfig(tmpfs)");
    ::close(fs);
    return r;
  }
  int mnt =
      ::fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (mnt < 0) {
    Backing r = fail("fsmount(tmpfs)");
    ::close(fs);
    return r;
  }
  b.dir_fd_ = mnt;  // a detached mount lives as long as this fd and its files
  b.fs_fd_ = fs;    // kept to reconfigure size= (about 4 us a change)
  b.size_ = size_bytes;
  return b;
}

Backing::~Backing() {
  if (dir_fd_ >= 0) ::close(dir_fd_);
  if (fs_fd_ >= 0) ::close(fs_fd_);
}

int Backing::set_size(uint64_t bytes) {
  if (fs_fd_ < 0) return 0;
  std::lock_guard lock(*mu_);
  if (bytes == size_) return 0;
  char size[24];  // no allocation: fit_backing runs after commits (design.md, "Out of memory")
  std::snprintf(size, sizeof size, "%llu", static_cast<unsigned long long>(bytes));
  if (::fsconfig(fs_fd_, FSCONFIG_SET_STRING, "size", size, 0) < 0 ||
      ::fsconfig(fs_fd_, FSCONFIG_CMD_RECONFIGURE, nullptr, nullptr, 0) < 0) {
    return -errno;  // ENOSPC: it holds more than that now
  }
  size_ = bytes;
  return 0;
}

int Backing::create_file() const {
  int fd = dir_fd_ >= 0 ? ::openat(dir_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)
                        : ::memfd_create("volfs", MFD_CLOEXEC);
  return fd < 0 ? -errno : fd;
}

std::optional<uint64_t> Backing::used_pages() const {
  if (dir_fd_ < 0) return std::nullopt;
  struct statfs s {};
  if (::fstatfs(dir_fd_, &s) < 0) return std::nullopt;
  return static_cast<uint64_t>(s.f_blocks - s.f_bfree);
}

Store::~Store() { close(); }

void Store::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool Store::opened_elsewhere() const {
  if (fd_ < 0) return false;
  if (::fcntl(fd_, F_SETLEASE, F_WRLCK) != 0) return true;
  (void)::fcntl(fd_, F_SETLEASE, F_UNLCK);
  return false;
}

int Store::open(const Backing& backing) {
  int fd = backing.create_file();
  if (fd < 0) return fd;
  fd_ = fd;
  return 0;
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

int Store::stat(struct stat& st) const { return ::fstat(fd_, &st) < 0 ? -errno : 0; }

int Store::set_times(const timespec& atime, const timespec& mtime) {
  const timespec t[2] = {atime, mtime};
  return ::futimens(fd_, t) < 0 ? -errno : 0;
}

std::vector<PageRange> Store::data_runs(PageRange r, uint64_t page_size, uint64_t size) const {
  std::vector<PageRange> out;
  const uint64_t size_pages = (size + page_size - 1) / page_size;
  const uint64_t end = std::min(r.end, size_pages);
  // SEEK_DATA skips holes cheaply (it walks the page cache's tree by nodes),
  // but SEEK_HOLE walks every page of a data extent, however far past r it
  // reaches: a one-page MARK in a 1 GiB file would cost the whole file. So
  // holes are skipped with SEEK_DATA, and inside r the pages are read off a
  // transient mapping with mincore(2), a chunk at a time, never past r.
  constexpr uint64_t kChunkPages = 16384;  // 64 MiB of address space, 16 KiB of vector
  std::vector<unsigned char> vec;
  uint64_t page = r.first;
  auto add = [&out](uint64_t p) {
    if (!out.empty() && out.back().end == p) {
      ++out.back().end;
    } else {
      out.push_back(PageRange{p, p + 1});
    }
  };
  // A few pages: SEEK_DATA on each is cheaper than a mapping (a page holding
  // data answers at once, a hole answers with the next data).
  constexpr uint64_t kProbePages = 16;
  if (end > page && end - page <= kProbePages) {
    while (page < end) {
      off_t data = ::lseek(fd_, static_cast<off_t>(page * page_size), SEEK_DATA);
      if (data < 0) break;
      const uint64_t d = static_cast<uint64_t>(data) / page_size;
      if (d == page)
        add(page++);
      else
        page = d;
    }
    return out;
  }
  while (page < end) {
    off_t data = ::lseek(fd_, static_cast<off_t>(page * page_size), SEEK_DATA);
    if (data < 0) break;  // ENXIO: no data from here on
    page = std::max(page, static_cast<uint64_t>(data) / page_size);
    if (page >= end) break;
    const uint64_t n = std::min(kChunkPages, end - page);
    void* m = ::mmap(nullptr, n * page_size, PROT_READ, MAP_SHARED, fd_,
                     static_cast<off_t>(page * page_size));
    if (m == MAP_FAILED) return {};
    vec.assign(n, 0);
    int rc = ::mincore(m, n * page_size, vec.data());
    ::munmap(m, n * page_size);
    if (rc < 0) return {};
    for (uint64_t k = 0; k < n; ++k) {
      if (vec[k] & 1) add(page + k);
    }
    page += n;
  }
  return out;
}

}  // namespace volfs::core
