// child_process.cc: fork-based helpers for running test code in other
// processes. Children end in _exit so that gtest state copied by fork() is
// never torn down or reported twice.
#include "child_process.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

namespace volfs::test {

void child_fail(const char* file, int line, const char* what) {
  int err = errno;
  std::fprintf(stderr, "%s:%d: child (pid %d) check failed: %s (errno %d: %s)\n", file, line,
               static_cast<int>(getpid()), what, err, std::strerror(err));
  _exit(1);
}

SyncPipe::SyncPipe() {
  if (pipe2(fds_, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
  }
}

SyncPipe::~SyncPipe() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

void SyncPipe::post() {
  char c = 1;
  while (write(fds_[1], &c, 1) < 0 && errno == EINTR) {
  }
}

bool SyncPipe::wait(std::chrono::milliseconds timeout) {
  if (!wait_readable(fds_[0], timeout)) return false;
  char c;
  ssize_t n;
  do {
    n = read(fds_[0], &c, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

void ChildProcess::start(const std::function<int()>& fn, std::optional<Credentials> creds) {
  if (running()) {
    ADD_FAILURE() << "ChildProcess::start while a child is running";
    return;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    // A fatal signal must reach the parent as that signal (tests expect
    // SIGBUS), not as a sanitizer's report and exit(1).
    signal(SIGBUS, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    if (creds) {
      if (setgroups(0, nullptr) != 0 || setgid(creds->gid) != 0 || setuid(creds->uid) != 0) {
        std::fprintf(stderr, "child: cannot switch to uid %u gid %u: %s\n", creds->uid, creds->gid,
                     std::strerror(errno));
        _exit(120);
      }
      // setuid() clears the dumpable flag, and with it PDEATHSIG.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
    }
    int code = 2;
    try {
      code = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: exception: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "child: unknown exception\n");
    }
    _exit(code);
  }
  process_.adopt(pid);
}

int ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (!running()) {
    ADD_FAILURE() << "ChildProcess::wait without a child";
    return -1;
  }
  if (!process_.wait_exit(timeout)) {
    ADD_FAILURE() << "child " << pid() << " still running after " << timeout.count()
                  << " ms; killing it";
    kill(pid(), SIGKILL);
  }
  return process_.reap();
}

int run_in_child(const std::function<int()>& fn, std::chrono::milliseconds timeout) {
  ChildProcess child;
  child.start(fn);
  if (!child.running()) return -1;
  return child.wait(timeout);
}

int run_as_user(const std::function<int()>& fn, Credentials creds,
                std::chrono::milliseconds timeout) {
  ChildProcess child;
  child.start(fn, creds);
  if (!child.running()) return -1;
  return child.wait(timeout);
}

std::string describe_wait_status(int status) {
  if (status == -1) return "no child";
  if (WIFEXITED(status)) {
    return "exited with " + std::to_string(WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "wait status " + std::to_string(status);
}

::testing::AssertionResult exited_with(int status, int code) {
  if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == code) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "process " << describe_wait_status(status)
                                       << ", expected exit " << code << " (see its stderr above)";
}

::testing::AssertionResult killed_by(int status, int signal) {
  if (status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == signal) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "process " << describe_wait_status(status) << ", expected death by signal " << signal
         << " (" << strsignal(signal) << ")";
}

}  // namespace volfs::test
