// volatile_util.cc: see volatile_util.h. Helpers report through return
// values only; the tests decide what is a failure.
#include "volatile_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "child_process.h"

namespace volfs::test {
namespace {

constexpr uint32_t kPageMagic = 0x464c4f56;  // "VOLF"

struct PageHeader {
  uint32_t magic;
  uint32_t tag;
  uint64_t page;
  uint64_t gen;
};

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int ioctl_errno(int fd, unsigned long cmd, void* arg) {
  return ioctl(fd, cmd, arg) == 0 ? 0 : -errno;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

int vol_mark(int fd, uint64_t off, uint64_t len, uint32_t flags) {
  volfs_range r{};
  r.offset = off;
  r.length = len;
  r.flags = flags;
  return ioctl_errno(fd, VOLFS_IOC_MARK_VOLATILE, &r);
}

int vol_unmark(int fd, uint64_t off, uint64_t len, uint32_t* result) {
  volfs_range r{};
  r.offset = off;
  r.length = len;
  r.result = 0xdeadbeef;  // must be overwritten
  int e = ioctl_errno(fd, VOLFS_IOC_UNMARK_VOLATILE, &r);
  if (result) *result = r.result;
  return e;
}

namespace {

volfs_range_batch batch_of(const ByteRanges& ranges, uint32_t flags, uint32_t result) {
  volfs_range_batch b{};
  for (const auto& [off, len] : ranges) {
    if (b.count == VOLFS_BATCH_MAX) break;  // the caller's bug: EINVAL below
    b.ranges[b.count++] = volfs_range{off, len, flags, result};
  }
  if (ranges.size() > VOLFS_BATCH_MAX) b.count = VOLFS_BATCH_MAX + 1;
  return b;
}

}  // namespace

int vol_mark_batch(int fd, const ByteRanges& ranges, uint32_t flags) {
  volfs_range_batch b = batch_of(ranges, flags, 0);
  return ioctl_errno(fd, VOLFS_IOC_MARK_BATCH, &b);
}

int vol_unmark_batch(int fd, const ByteRanges& ranges, std::vector<uint32_t>* results) {
  volfs_range_batch b = batch_of(ranges, 0, 0xdeadbeef);  // results must be overwritten
  int e = ioctl_errno(fd, VOLFS_IOC_UNMARK_BATCH, &b);
  if (results) {
    results->clear();
    for (uint32_t k = 0; k < b.count && k < VOLFS_BATCH_MAX; ++k) {
      results->push_back(b.ranges[k].result);
    }
  }
  return e;
}

int vol_status(int fd, uint64_t off, uint64_t len, volfs_status* out) {
  *out = volfs_status{};
  out->offset = off;
  out->length = len;
  return ioctl_errno(fd, VOLFS_IOC_GET_STATUS, out);
}

int vol_stats(int fd, volfs_stats* out) {
  *out = volfs_stats{};
  return ioctl_errno(fd, VOLFS_IOC_STATS, out);
}

int vol_purge(int fd, uint64_t bytes, uint64_t* purged) {
  volfs_purge p{};
  p.bytes = bytes;
  p.purged = UINT64_MAX;
  int e = ioctl_errno(fd, VOLFS_IOC_PURGE, &p);
  if (purged) *purged = p.purged;
  return e;
}

std::optional<volfs_stats> mount_stats(const std::string& mountpoint) {
  int fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  volfs_stats s;
  int e = vol_stats(fd, &s);
  close(fd);
  if (e != 0) {
    errno = -e;
    return std::nullopt;
  }
  return s;
}

int64_t purge_via_root(const std::string& mountpoint, uint64_t bytes) {
  int fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  uint64_t purged = 0;
  int e = vol_purge(fd, bytes, &purged);
  close(fd);
  return e != 0 ? e : static_cast<int64_t>(purged);
}

std::optional<volfs_status> path_status(const std::string& path, uint64_t off, uint64_t len) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  volfs_status s;
  int e = vol_status(fd, off, len, &s);
  close(fd);
  if (e != 0) {
    errno = -e;
    return std::nullopt;
  }
  return s;
}

std::string to_string(const volfs_stats& s) {
  std::ostringstream o;
  o << "{size=" << s.size << " version=" << s.version << " page_size=" << s.page_size
    << " size_limit_bytes=" << s.size_limit_bytes << " files=" << s.files
    << " resident=" << s.resident_pages << " volatile=" << s.volatile_pages
    << " volatile_resident=" << s.volatile_resident_pages << " purged=" << s.purged_pages
    << " pages_purged_total=" << s.pages_purged_total
    << " purge_events_total=" << s.purge_events_total
    << " false_purged_total=" << s.false_purged_total
    << " unmark_purged_total=" << s.unmark_purged_total
    << " unmark_intact_total=" << s.unmark_intact_total << "}";
  return o.str();
}

std::string to_string(const volfs_status& s) {
  std::ostringstream o;
  o << "{offset=" << s.offset << " length=" << s.length << " nonvolatile=" << s.nonvolatile_pages
    << " volatile=" << s.volatile_pages << " purged=" << s.purged_pages
    << " resident=" << s.resident_pages << " strict=" << s.strict_pages << "}";
  return o.str();
}

::testing::AssertionResult stats_match(const volfs_stats& s, const StatsExpect& e) {
  std::ostringstream bad;
  auto check = [&](const char* name, uint64_t got, const std::optional<uint64_t>& want) {
    if (want && got != *want) bad << " " << name << "=" << got << " (want " << *want << ")";
  };
  check("files", s.files, e.files);
  check("resident_pages", s.resident_pages, e.resident_pages);
  check("volatile_pages", s.volatile_pages, e.volatile_pages);
  check("volatile_resident_pages", s.volatile_resident_pages, e.volatile_resident_pages);
  check("purged_pages", s.purged_pages, e.purged_pages);
  check("pages_purged_total", s.pages_purged_total, e.pages_purged_total);
  check("purge_events_total", s.purge_events_total, e.purge_events_total);
  check("false_purged_total", s.false_purged_total, e.false_purged_total);
  check("unmark_purged_total", s.unmark_purged_total, e.unmark_purged_total);
  check("unmark_intact_total", s.unmark_intact_total, e.unmark_intact_total);
  if (bad.str().empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "stats differ:" << bad.str() << "\n  all: " << to_string(s);
}

::testing::AssertionResult status_match(const volfs_status& s, const StatusExpect& e) {
  if (s.nonvolatile_pages == e.nonvolatile && s.volatile_pages == e.volatile_ &&
      s.purged_pages == e.purged && s.resident_pages == e.resident && s.strict_pages == e.strict) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "status " << to_string(s) << ", want nonvolatile=" << e.nonvolatile
         << " volatile=" << e.volatile_ << " purged=" << e.purged << " resident=" << e.resident
         << " strict=" << e.strict;
}

void fill_page(char* dst, uint32_t tag, uint64_t page, uint64_t gen) {
  const size_t size = page_size();
  PageHeader h{kPageMagic, tag, page, gen};
  std::memcpy(dst, &h, sizeof h);
  uint64_t x = (uint64_t{tag} << 40) ^ (page << 20) ^ gen ^ 0x5bd1e995u;
  for (size_t i = sizeof h; i + 8 <= size; i += 8) {
    uint64_t v = splitmix(x);
    std::memcpy(dst + i, &v, 8);
  }
}

std::string page_bytes(uint32_t tag, uint64_t page, uint64_t gen) {
  std::string s(page_size(), '\0');
  fill_page(s.data(), tag, page, gen);
  return s;
}

std::vector<std::string> zero_pages(uint64_t n) {
  return std::vector<std::string>(n, std::string(page_size(), '\0'));
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool is_all_zero(const char* p, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

bool bytes_zero_or_equal(const char* got, const char* want, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (got[i] != 0 && got[i] != want[i]) return false;
  }
  return true;
}

std::string describe_page_mismatch(const char* got, const char* want) {
  const size_t size = page_size();
  if (std::memcmp(got, want, size) == 0) return "";
  std::ostringstream o;
  PageHeader wh, gh;
  std::memcpy(&wh, want, sizeof wh);
  std::memcpy(&gh, got, sizeof gh);
  if (wh.magic == kPageMagic) {
    o << "want tag " << wh.tag << " page " << wh.page << " gen " << wh.gen << "; ";
  } else if (is_all_zero(want, size)) {
    o << "want zeros; ";
  }
  if (is_all_zero(got, size)) {
    o << "got all zeros";
    return o.str();
  }
  if (gh.magic == kPageMagic) {
    o << "got tag " << gh.tag << " page " << gh.page << " gen " << gh.gen << ", ";
  }
  size_t first = 0;
  while (first < size && got[first] == want[first]) ++first;
  size_t zeros = 0;
  for (size_t i = 0; i < size; ++i) zeros += got[i] == 0;
  o << "first difference at byte " << first << ", " << zeros << " of " << size << " bytes zero";
  return o.str();
}

int64_t count_data_pages(int fd, uint64_t size) {
  const uint64_t ps = page_size();
  uint64_t pages = 0;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return -errno;
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return -errno;
    uint64_t first = static_cast<uint64_t>(data) / ps;
    uint64_t end = (static_cast<uint64_t>(hole) + ps - 1) / ps;
    pages += end - first;
    pos = hole;
  }
  return static_cast<int64_t>(pages);
}

ssize_t pread_direct(int direct_fd, char* aligned_buf, size_t len, off_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(direct_fd, aligned_buf + done, len - done, off + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

std::string kernel_stacks(pid_t pid) {
  std::ostringstream o;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(task_dir.c_str());
  if (!d) return "(no " + task_dir + ": " + std::strerror(errno) + ")\n";
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string t = task_dir + "/" + e->d_name;
    std::string comm = read_text(t + "/comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    o << "--- task " << e->d_name << " (" << comm << ") wchan " << read_text(t + "/wchan") << "\n"
      << read_text(t + "/stack");
  }
  closedir(d);
  return o.str();
}

std::string wait_or_diagnose(ChildProcess& child, pid_t daemon_pid,
                             std::chrono::milliseconds timeout, int* status) {
  std::string report;
  int pidfd = open_pidfd(child.pid());
  if (pidfd >= 0) {
    if (!wait_readable(pidfd, timeout)) {
      report = "child " + std::to_string(child.pid()) + " hung; its kernel stacks:\n" +
               kernel_stacks(child.pid()) + "daemon " + std::to_string(daemon_pid) +
               " kernel stacks:\n" + kernel_stacks(daemon_pid);
      kill(child.pid(), SIGKILL);
    }
    close(pidfd);
  }
  *status = child.wait(std::chrono::milliseconds(10000));
  return report;
}

double env_seconds(const char* name, double default_seconds) {
  const char* v = std::getenv(name);
  if (!v || !*v) return default_seconds;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (end == v || d <= 0) return default_seconds;
  return d;
}

}  // namespace volfs::test
