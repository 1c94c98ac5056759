// child_process.h: runs test code in forked child processes, optionally as
// another user. Invariant: a child never returns into gtest (it always ends in
// _exit) and every child a test starts is reaped, killed after a deadline.
#ifndef VOLFS_TESTS_INTEGRATION_CHILD_PROCESS_H_
#define VOLFS_TESTS_INTEGRATION_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "launcher.h"

namespace volfs::test {

// Who a child runs as; supplementary groups are dropped.
struct Credentials {
  uid_t uid;
  gid_t gid;
};
inline constexpr Credentials kNobody{65534, 65534};

inline constexpr std::chrono::milliseconds kChildTimeout{30000};

// Ends a child process with exit status 1 after printing where and why it
// failed (with errno). Usable at any depth inside a child's function.
[[noreturn]] void child_fail(const char* file, int line, const char* what);
#define CHILD_CHECK(cond)                                              \
  do {                                                                 \
    if (!(cond)) ::volfs::test::child_fail(__FILE__, __LINE__, #cond); \
  } while (0)

// A one-way, one-byte-per-event signal between two processes. Create it
// before fork(); both processes keep both ends open.
class SyncPipe {
 public:
  SyncPipe();
  ~SyncPipe();
  SyncPipe(const SyncPipe&) = delete;
  SyncPipe& operator=(const SyncPipe&) = delete;

  void post();
  // True if an event arrived within the timeout.
  [[nodiscard]] bool wait(std::chrono::milliseconds timeout = kChildTimeout);

 private:
  int fds_[2] = {-1, -1};
};

// A forked child running fn; its return value becomes the exit status.
// The child dies with SIGKILL if the test process dies, dumps no core, and
// has default SIGBUS/SIGSEGV actions (not a sanitizer's), so a fault shows
// in its wait status.
class ChildProcess {
 public:
  ChildProcess() = default;
  // Kills (SIGKILL) and reaps a child that is still running (launcher::Process).
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Forks; in the child, switches to creds if given, then runs fn. An
  // exception escaping fn ends the child with status 2.
  void start(const std::function<int()>& fn, std::optional<Credentials> creds = std::nullopt);
  // Waits for the child and returns its wait status. After the timeout it
  // records a test failure, kills the child and returns that status.
  int wait(std::chrono::milliseconds timeout = kChildTimeout);
  bool running() const { return process_.running(); }
  pid_t pid() const { return process_.pid(); }

 private:
  launcher::Process process_;
};

// Runs fn in a child process and returns the child's wait status.
int run_in_child(const std::function<int()>& fn, std::chrono::milliseconds timeout = kChildTimeout);
// Same, as another user (setgroups/setgid/setuid); kNobody by default.
int run_as_user(const std::function<int()>& fn, Credentials creds = kNobody,
                std::chrono::milliseconds timeout = kChildTimeout);

// "exited with 3", "killed by signal 7 (Bus error)".
std::string describe_wait_status(int status);
// Predicates for EXPECT_TRUE: the child exited with code / died by signal.
::testing::AssertionResult exited_with(int status, int code = 0);
::testing::AssertionResult killed_by(int status, int signal);

// Polls a pidfd (or any fd) for readability; pidfd_open(2).
using launcher::open_pidfd;
using launcher::wait_readable;

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_CHILD_PROCESS_H_
