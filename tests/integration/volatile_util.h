// volatile_util.h: helpers for the volatile-range tests: the volfs ioctls as
// calls returning 0 or -errno, shared memory that forked children inherit,
// self-describing page patterns, and hang diagnostics. Nothing here asserts,
// so every helper is safe inside a forked child.
#ifndef VOLFS_TESTS_INTEGRATION_VOLATILE_UTIL_H_
#define VOLFS_TESTS_INTEGRATION_VOLATILE_UTIL_H_

#include <sys/mman.h>
#include <sys/types.h>
#include <volfs/volfs.h>

#include <chrono>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace volfs::test {

class ChildProcess;

// sysconf(_SC_PAGESIZE), cached.
size_t page_size();

// The ioctls. Each returns 0 or -errno.
int vol_mark(int fd, uint64_t off, uint64_t len, uint32_t flags = 0);
// *result gets VOLFS_INTACT or VOLFS_PURGED.
int vol_unmark(int fd, uint64_t off, uint64_t len, uint32_t* result);
// The batch ioctls over byte ranges {offset, length}, one flags for all;
// (*results)[k] gets range k's VOLFS_INTACT or VOLFS_PURGED.
using ByteRanges = std::vector<std::pair<uint64_t, uint64_t>>;
int vol_mark_batch(int fd, const ByteRanges& ranges, uint32_t flags = 0);
int vol_unmark_batch(int fd, const ByteRanges& ranges, std::vector<uint32_t>* results);
int vol_status(int fd, uint64_t off, uint64_t len, volfs_status* out);
int vol_stats(int fd, volfs_stats* out);
int vol_purge(int fd, uint64_t bytes, uint64_t* purged);

// VOLFS_IOC_STATS on the mount's root directory; nullopt with errno set.
std::optional<volfs_stats> mount_stats(const std::string& mountpoint);
// VOLFS_IOC_PURGE through the root directory; -errno or bytes purged.
int64_t purge_via_root(const std::string& mountpoint, uint64_t bytes);
// VOLFS_IOC_GET_STATUS on path (opened O_RDONLY); nullopt with errno set.
std::optional<volfs_status> path_status(const std::string& path, uint64_t off = 0,
                                        uint64_t len = 0);

std::string to_string(const volfs_stats& s);
std::string to_string(const volfs_status& s);

// The predictable part of a volfs_stats: unset fields are not compared.
struct StatsExpect {
  std::optional<uint64_t> files{}, resident_pages{}, volatile_pages{}, volatile_resident_pages{},
      purged_pages{}, pages_purged_total{}, purge_events_total{}, false_purged_total{},
      unmark_purged_total{}, unmark_intact_total{};
};
::testing::AssertionResult stats_match(const volfs_stats& s, const StatsExpect& e);

// The expected page counts of a GET_STATUS answer.
struct StatusExpect {
  uint64_t nonvolatile = 0, volatile_ = 0, purged = 0, resident = 0, strict = 0;
};
::testing::AssertionResult status_match(const volfs_status& s, const StatusExpect& e);

// One T in an anonymous MAP_SHARED mapping: children forked after its
// construction share it with the parent. T must be usable across processes
// (plain data and lock-free atomics only).
template <class T>
class SharedBlock {
 public:
  SharedBlock() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) ptr_ = new (p) T();
  }
  ~SharedBlock() {
    if (ptr_) {
      ptr_->~T();
      munmap(ptr_, sizeof(T));
    }
  }
  SharedBlock(const SharedBlock&) = delete;
  SharedBlock& operator=(const SharedBlock&) = delete;
  bool ok() const { return ptr_ != nullptr; }
  T* operator->() const { return ptr_; }
  T& operator*() const { return *ptr_; }

 private:
  T* ptr_ = nullptr;
};

// Page contents that name themselves: a header (magic, tag, page index,
// generation) and then bytes derived from all of them, never all zero. A
// page that ends up in the wrong place or generation is recognised.
void fill_page(char* dst, uint32_t tag, uint64_t page, uint64_t gen);
std::string page_bytes(uint32_t tag, uint64_t page, uint64_t gen);
// Expected contents, page by page: n pages of zeros, and a concatenation.
std::vector<std::string> zero_pages(uint64_t n);
std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b);
// "" if `got` (one page) equals `want`, else a short description: all zero,
// which other page/generation it holds, or where the first difference is.
std::string describe_page_mismatch(const char* got, const char* want);
// True if every byte of got is either 0 or the same byte of want: what a page
// may hold after a purge raced with a write of `want` through a mapping.
bool bytes_zero_or_equal(const char* got, const char* want, size_t len);
bool is_all_zero(const char* p, size_t len);

// Counts the pages of fd that hold data, walking SEEK_DATA/SEEK_HOLE over
// [0, size); -errno on error.
int64_t count_data_pages(int fd, uint64_t size);

// pread of len bytes through an O_DIRECT descriptor into an aligned buffer,
// so the bytes come from the daemon's store, not the kernel's page cache.
// Returns bytes read or -errno.
ssize_t pread_direct(int direct_fd, char* aligned_buf, size_t len, off_t off);

// The kernel stacks of every thread of pid (needs root), for hang reports.
std::string kernel_stacks(pid_t pid);
// Waits for child until timeout; if it is still running, returns the kernel
// stacks of the child and of the daemon (for the failure message) and then
// kills it. *status gets the wait status.
std::string wait_or_diagnose(ChildProcess& child, pid_t daemon_pid,
                             std::chrono::milliseconds timeout, int* status);

// Seconds from the environment variable, or the default if it is unset or
// not a positive number.
double env_seconds(const char* name, double default_seconds);

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_VOLATILE_UTIL_H_
