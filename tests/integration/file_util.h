// file_util.h: small file helpers shared by the integration tests. They
// report failure through their return values and never assert, so that they
// are safe to call inside forked children.
#ifndef VOLFS_TESTS_INTEGRATION_FILE_UTIL_H_
#define VOLFS_TESTS_INTEGRATION_FILE_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace volfs::test {

inline constexpr size_t kKiB = 1024;
inline constexpr size_t kMiB = 1024 * kKiB;

// Owns a file descriptor: closed on destruction, so that a failed ASSERT
// does not leave the mount busy.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Writes data to path (created 0644, truncated); false with errno on error.
bool write_file(const std::string& path, std::string_view data);
// The whole file, or nullopt with errno set.
std::optional<std::string> read_file(const std::string& path);
// Deterministic, position-dependent bytes: pattern(n, seed)[i] differs for
// neighbouring i and for different seeds, and is never all zero.
std::string make_pattern(size_t size, uint32_t seed);
bool all_zero(std::string_view data);
// write/pwrite/pread the full length, retrying short transfers.
bool write_all(int fd, std::string_view data);
bool pwrite_all(int fd, std::string_view data, off_t offset);
// Up to len bytes at offset (fewer at EOF); nullopt with errno on error.
std::optional<std::string> pread_some(int fd, size_t len, off_t offset);
// Calls pred every few ms until it is true or the timeout passes.
bool poll_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_FILE_UTIL_H_
