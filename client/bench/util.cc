// util.cc: volbench's small helpers: timing, fds, bulk I/O, page-cache
// inspection (cachestat/mincore), /proc readers. Every failure throws with
// the errno and what was being done, so a workload fails loudly, never
// reports a figure of an operation that did not happen.
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <system_error>

#include "bench.h"

namespace volbench {
namespace {
// cachestat(2): Linux 6.5, the same number on every architecture; older
// headers lack it, older kernels answer ENOSYS and we fall back to mincore.
constexpr long kSysCachestat = 451;
}  // namespace

double now_sec() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void check(bool ok, const std::string& what) {
  if (!ok) throw_errno(what);
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd open_file(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  check(fd >= 0, "open " + path);
  return Fd(fd);
}

Buffer pattern_buffer(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, page_size(), n) != 0) throw std::bad_alloc();
  std::mt19937_64 rng(42);
  auto* w = static_cast<uint64_t*>(p);
  for (size_t i = 0; i < n / 8; ++i) w[i] = rng() | 1;
  return Buffer(static_cast<char*>(p));
}

void write_all(int fd, const char* buf, uint64_t size, uint64_t chunk) {
  for (uint64_t off = 0; off < size;) {
    size_t n = static_cast<size_t>(std::min(chunk, size - off));
    ssize_t w = ::pwrite(fd, buf, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    check(w > 0, "pwrite at " + std::to_string(off));
    off += static_cast<uint64_t>(w);
  }
}

void read_all(int fd, char* buf, uint64_t size, uint64_t chunk) {
  for (uint64_t off = 0; off < size;) {
    size_t n = static_cast<size_t>(std::min(chunk, size - off));
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    check(r >= 0, "pread at " + std::to_string(off));
    if (r == 0) throw std::runtime_error("short file: EOF at " + std::to_string(off));
    off += static_cast<uint64_t>(r);
  }
}

Fd create_written(const std::string& path, uint64_t size) {
  static Buffer buf = pattern_buffer(kChunk);
  Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  write_all(fd.get(), buf.get(), size);
  return fd;
}

void unlink_if_exists(const std::string& path) {
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) throw_errno("unlink " + path);
}

namespace {

struct CachestatRange {
  uint64_t off;
  uint64_t len;
};
struct Cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

}  // namespace

CacheState cache_state(int fd, uint64_t size) {
  CachestatRange range{0, 0};  // 0: to the end of the file
  Cachestat cs{};
  if (syscall(kSysCachestat, fd, &range, &cs, 0) == 0) {
    return CacheState{cs.nr_cache, cs.nr_dirty};
  }
  // Older kernels: mincore on a fresh mapping (dirty count unknown).
  CacheState st;
  if (size == 0) return st;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  check(p != MAP_FAILED, "mmap for mincore");
  std::vector<unsigned char> vec((size + page_size() - 1) / page_size());
  int r = ::mincore(p, size, vec.data());
  int err = errno;
  ::munmap(p, size);
  errno = err;
  check(r == 0, "mincore");
  for (unsigned char c : vec) st.cached += c & 1;
  return st;
}

void drop_page_cache(int fd) {
  // posix_fadvise returns the error number rather than setting errno.
  int r = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  errno = r;
  check(r == 0, "posix_fadvise(DONTNEED)");
}

uint64_t page_size() {
  static const uint64_t ps = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  k = std::min(k, v.size() - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::string human_bytes(uint64_t n) {
  char buf[64];
  if (n >= kGiB && n % kGiB == 0) {
    std::snprintf(buf, sizeof buf, "%llu GiB", static_cast<unsigned long long>(n / kGiB));
  } else if (n >= kMiB) {
    std::snprintf(buf, sizeof buf, "%g MiB", static_cast<double>(n) / kMiB);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

std::string fmt(double v, int precision) {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  return buf;
}

uint64_t meminfo_kib(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size(), field) == 0 && line.size() > field.size() &&
        line[field.size()] == ':') {
      return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

uint64_t vm_rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * kKiB;
  }
  return 0;
}

uint64_t store_bytes(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  uint64_t total = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string p = dir + "/" + e->d_name;
    // The stores: regular files on tmpfs (memfds, or the O_TMPFILE files of
    // the daemon's private tmpfs), whatever their names.
    struct stat st {};
    struct statfs fs {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::statfs(p.c_str(), &fs) != 0 || fs.f_type != TMPFS_MAGIC) continue;
    total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  ::closedir(d);
  return total;
}

void alternate(int reps, const std::function<void(int side, int rep)>& fn) {
  for (int rep = 0; rep < reps; ++rep) {
    // Alternate which side goes first, so neither always runs on a cache or
    // allocator state the other left behind.
    int first = rep % 2;
    fn(first, rep);
    fn(1 - first, rep);
  }
}

}  // namespace volbench
