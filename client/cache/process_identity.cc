// process_identity.cc: /proc/PID/stat parsing for lease liveness checks.
#include "process_identity.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace volfs::cache_detail {
namespace {

struct StatLine {
  char state = '?';
  uint64_t start_time = 0;
};

// Reads state (field 3) and starttime (field 22) of /proc/PID/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
std::optional<StatLine> read_stat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n;
  do {
    n = ::read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  char* p = std::strrchr(buf, ')');
  if (!p || p[1] != ' ') return std::nullopt;
  StatLine out;
  out.state = p[2];
  // After ") S ", fields 4.. follow; starttime is field 22.
  p += 2;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (!p) return std::nullopt;
    ++p;
  }
  out.start_time = std::strtoull(p, nullptr, 10);
  return out;
}

// 0: not known (never asked, or forgotten by a fork).
std::atomic<pid_t> g_pid{0};

void forget_pid_in_child() { g_pid.store(0, std::memory_order_relaxed); }

}  // namespace

pid_t current_pid() {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid != 0) return pid;
  // Once per process image: the handler is inherited by forked children.
  static const bool registered = pthread_atfork(nullptr, nullptr, forget_pid_in_child) == 0;
  pid = ::getpid();
  // Without the handler a forked child could see its parent's pid: never cache then.
  if (registered) g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

ProcessIdentity self_identity() {
  // Cached per pid: a forked child computes its own.
  static std::atomic<pid_t> cached_pid{0};
  static std::atomic<uint64_t> cached_start{0};
  pid_t pid = current_pid();
  // Acquire pairs with the release below: a reader that sees our pid also
  // sees the start time stored before it. Two threads racing compute the
  // same value.
  if (cached_pid.load(std::memory_order_acquire) == pid) {
    return {pid, cached_start.load(std::memory_order_relaxed)};
  }
  std::optional<StatLine> s = read_stat(pid);
  uint64_t start = s ? s->start_time : 0;
  cached_start.store(start, std::memory_order_relaxed);
  cached_pid.store(pid, std::memory_order_release);
  return {pid, start};
}

bool process_alive(const ProcessIdentity& who) {
  if (who.pid <= 0) return false;
  if (::kill(who.pid, 0) < 0 && errno == ESRCH) return false;
  std::optional<StatLine> s = read_stat(who.pid);
  if (!s) {
    // Gone between kill and open, or /proc is not mounted: ask kill again.
    return !(::kill(who.pid, 0) < 0 && errno == ESRCH);
  }
  if (s->state == 'Z' || s->state == 'X') return false;
  if (who.start_time != 0 && s->start_time != who.start_time) return false;
  return true;
}

}  // namespace volfs::cache_detail
