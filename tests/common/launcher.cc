// launcher.cc: see launcher.h.
#include "launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace volfs::launcher {
namespace {

using Clock = std::chrono::steady_clock;

// Runs argv to completion with its output discarded; true if it exited 0.
bool run_quietly(const std::vector<std::string>& argv) {
  Process child;
  if (!child.spawn(argv, {"/dev/null", false}).empty()) return false;
  int status = child.reap();
  return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

Process::~Process() {
  if (running()) ::kill(pid_, SIGKILL);
  reap();
}

std::string Process::spawn(const std::vector<std::string>& args, const SpawnOptions& options) {
  if (running()) return "a daemon is already running (pid " + std::to_string(pid_) + ")";
  if (args.empty()) return "no command to run";
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // Made before the fork: a child of a threaded process should only make
  // async-signal-safe calls.
  std::string exec_failed = "exec " + args[0] + ": ";
  sigset_t empty;
  sigemptyset(&empty);

  int log_fd = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return "open " + options.log_path + ": " + std::strerror(errno);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    if (options.own_process_group) ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);  // the parent died before the prctl
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execvp(argv[0], argv.data());
    const char* why = std::strerror(errno);
    (void)!::write(2, exec_failed.data(), exec_failed.size());
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  if (pid < 0) return std::string("fork: ") + std::strerror(fork_errno);
  adopt(pid);
  return "";
}

void Process::adopt(pid_t pid) {
  pid_ = pid;
  pidfd_ = open_pidfd(pid);
}

bool Process::wait_exit(milliseconds timeout) {
  if (!running()) return true;
  if (pidfd_ >= 0) return wait_readable(pidfd_, timeout);
  auto deadline = Clock::now() + timeout;
  for (;;) {
    siginfo_t info{};
    int r = ::waitid(P_PID, pid_, &info, WEXITED | WNOHANG | WNOWAIT);
    if ((r == 0 && info.si_pid == pid_) || (r < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

int Process::reap() {
  int status = -1;
  if (running()) {
    while (::waitpid(pid_, &status, 0) < 0) {
      if (errno != EINTR) {
        status = -1;
        break;
      }
    }
  }
  pid_ = -1;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
  return status;
}

Process::Stopped Process::stop(milliseconds exit_grace, milliseconds term_grace) {
  Stopped s;
  if (!running()) return s;
  if (!wait_exit(exit_grace)) {
    s.terminated = true;
    ::kill(pid_, SIGTERM);
    if (!wait_exit(term_grace)) {
      s.killed = true;
      ::kill(pid_, SIGKILL);
    }
  }
  s.status = reap();
  return s;
}

MountWait wait_for_mount(Process& daemon, const std::string& mountpoint, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (is_fuse_mount(mountpoint)) return MountWait::kMounted;
    if (daemon.wait_exit(milliseconds(0))) return MountWait::kExited;
    if (Clock::now() > deadline) return MountWait::kTimedOut;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

bool wait_readable(int fd, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    struct pollfd p = {fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::max<milliseconds::rep>(left.count(), 0)));
    if (r >= 0 || errno != EINTR) return r > 0;
  }
}

int open_pidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

Unmounted unmount(const std::string& mountpoint, milliseconds busy_retry) {
  Unmounted r;
  if (!is_fuse_mount(mountpoint)) return r;
  const char* mnt = mountpoint.c_str();
  auto deadline = Clock::now() + busy_retry;
  int err = 0;
  for (;;) {
    if (::umount2(mnt, 0) == 0) return r;
    err = errno;
    if (err == EINVAL || err == ENOENT) return r;  // already gone (lazily detached)
    if (err != EBUSY || Clock::now() > deadline) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  r.busy = err == EBUSY;
  if (::umount2(mnt, MNT_DETACH) == 0 || errno == EINVAL) return r;
  err = errno;
  if (err == EPERM) {  // not root: the setuid helper may
    if (run_quietly({"fusermount3", "-u", "-q", mountpoint})) return r;
    r.busy = true;
    if (run_quietly({"fusermount3", "-u", "-q", "-z", mountpoint})) return r;
  }
  r.error = "cannot unmount " + mountpoint + ": " + std::strerror(err);
  return r;
}

std::optional<core::MountinfoEntry> find_fuse_mount(const std::string& path) {
  std::optional<core::MountinfoEntry> found;
  for (core::MountinfoEntry& m : core::read_mountinfo()) {
    if (m.mount_point == path && (m.fs_type == "fuse" || m.fs_type.starts_with("fuse."))) {
      found = std::move(m);
    }
  }
  return found;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string make_temp_dir(const std::string& parent, const std::string& prefix,
                          std::string* error) {
  std::string templ = parent + "/" + prefix + ".XXXXXX";
  if (!::mkdtemp(templ.data())) {
    *error = "mkdtemp " + templ + ": " + std::strerror(errno);
    return "";
  }
  std::error_code ec;
  std::string dir = std::filesystem::canonical(templ, ec).string();
  if (ec) {
    *error = "realpath " + templ + ": " + ec.message();
    ::rmdir(templ.c_str());
  }
  return dir;
}

std::string remove_tree(const std::string& dir) {
  for (const core::MountinfoEntry& m : core::read_mountinfo()) {
    if (m.mount_point.starts_with(dir + "/")) {
      return "not removing " + dir + ": " + m.mount_point + " is mounted inside";
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return ec ? "removing " + dir + ": " + ec.message() : "";
}

}  // namespace volfs::launcher
