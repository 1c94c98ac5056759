// mount.cc: starting, watching and always stopping private volfs daemons, and
// the cleanup registry behind volbench's "never leave a mount behind".
// Mount state comes from /proc/self/mountinfo, never from stat() on the
// mountpoint, so a hung daemon cannot hang the cleanup.
#include "mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench.h"
#include "core/mountinfo.h"

namespace volbench {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;
constexpr auto kMountTimeout = std::chrono::seconds(15);
constexpr auto kExitGrace = std::chrono::seconds(10);  // after unmount, before SIGTERM
constexpr auto kTermGrace = std::chrono::seconds(5);   // after SIGTERM, before SIGKILL
constexpr auto kBusyRetry = std::chrono::seconds(1);   // EBUSY retries before MNT_DETACH

// Guards the registry. Held while an action runs, so the signal thread and
// the main thread never run the same action twice or concurrently; the
// signal thread never releases it (it exits the process).
std::recursive_mutex g_cleanup_mu;
std::map<Cleanup::Id, std::function<void()>> g_actions;  // GUARDED_BY(g_cleanup_mu)
Cleanup::Id g_next_id = 1;                               // GUARDED_BY(g_cleanup_mu)
sigset_t g_old_mask;
std::atomic<bool> g_interrupted{false};  // relaxed: only silences messages

bool daemon_exited(pid_t pid, int* status) {
  pid_t r = ::waitpid(pid, status, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

bool wait_exit(pid_t pid, std::chrono::steady_clock::duration timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (daemon_exited(pid, &status)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

int run_command(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    Cleanup::unblock_signals_in_child();
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// umount2 (root) or fusermount3 -u; EBUSY is retried, then the mount is
// detached lazily: the daemon ends once the last user lets go.
void unmount(const std::string& mnt) {
  if (!is_mounted(mnt)) return;
  if (::geteuid() == 0) {
    auto deadline = std::chrono::steady_clock::now() + kBusyRetry;
    while (::umount2(mnt.c_str(), 0) != 0) {
      if (errno == EINVAL || errno == ENOENT) return;
      if (errno != EBUSY || std::chrono::steady_clock::now() > deadline) {
        ::umount2(mnt.c_str(), MNT_DETACH);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return;
  }
  if (run_command({"fusermount3", "-u", "-q", mnt}) != 0) {
    run_command({"fusermount3", "-u", "-q", "-z", mnt});
  }
}

}  // namespace

// ----------------------------------------------------------------------------
// Cleanup.

Cleanup::Id Cleanup::add(std::function<void()> fn) {
  std::lock_guard lock(g_cleanup_mu);
  Id id = g_next_id++;
  g_actions.emplace(id, std::move(fn));
  return id;
}

void Cleanup::run(Id id) {
  std::lock_guard lock(g_cleanup_mu);
  auto it = g_actions.find(id);
  if (it == g_actions.end()) return;
  std::function<void()> fn = std::move(it->second);
  g_actions.erase(it);
  fn();
}

void Cleanup::run_all() {
  std::lock_guard lock(g_cleanup_mu);
  while (!g_actions.empty()) run(std::prev(g_actions.end())->first);
}

void Cleanup::install_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, &g_old_mask);
  std::thread([set] {
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    g_interrupted.store(true, std::memory_order_relaxed);
    std::fprintf(stderr, "\nvolbench: %s, cleaning up (unmounting, removing scratch files)\n",
                 strsignal(sig));
    // Holding the lock for good: the main thread may be inside a workload
    // that now fails; it must not start cleaning up behind our back.
    g_cleanup_mu.lock();
    run_all();
    std::fflush(stdout);
    ::_exit(128 + sig);
  }).detach();
}

bool Cleanup::interrupted() { return g_interrupted.load(std::memory_order_relaxed); }

void Cleanup::unblock_signals_in_child() { sigprocmask(SIG_SETMASK, &g_old_mask, nullptr); }

// ----------------------------------------------------------------------------
// PrivateMount.

PrivateMount::PrivateMount(const std::string& daemon_bin, const std::string& dir,
                           const std::string& options)
    : dir_(dir), mnt_(dir + "/mnt"), log_(dir + "/daemon.log") {
  check(::mkdir(mnt_.c_str(), 0755) == 0 || errno == EEXIST, "mkdir " + mnt_);
  int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(log_fd >= 0, "open " + log_);
  std::vector<std::string> args = {daemon_bin, mnt_, "-f"};
  if (!options.empty()) {
    args.push_back("-o");
    args.push_back(options);
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  // Registered before the fork: from now on a signal unmounts and reaps.
  cleanup_ = Cleanup::add([this] { stop(); });
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Own process group: a terminal's ^C reaches volbench, which unmounts
    // in order. If volbench dies, the daemon gets SIGTERM and unmounts itself.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    Cleanup::unblock_signals_in_child();
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "volbench: exec %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  int fork_errno = errno;
  ::close(log_fd);
  if (pid_ < 0) {
    Cleanup::run(cleanup_);
    errno = fork_errno;
    throw_errno("fork");
  }
  auto deadline = std::chrono::steady_clock::now() + kMountTimeout;
  for (;;) {
    if (is_mounted(mnt_)) return;
    int status = 0;
    if (daemon_exited(pid_, &status)) {
      pid_ = -1;
      std::string log = log_tail();
      Cleanup::run(cleanup_);
      throw std::runtime_error("volfs daemon exited before mounting " + mnt_ + " (status " +
                               std::to_string(status) + "); its log:\n" + log);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::string log = log_tail();
      Cleanup::run(cleanup_);
      throw std::runtime_error("volfs did not mount " + mnt_ + " in time; its log:\n" + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

PrivateMount::~PrivateMount() { Cleanup::run(cleanup_); }

void PrivateMount::stop() {
  unmount(mnt_);
  if (pid_ > 0) {
    if (!wait_exit(pid_, kExitGrace)) {
      ::kill(pid_, SIGTERM);
      if (!wait_exit(pid_, kTermGrace)) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
      }
    }
    pid_ = -1;
  }
  if (!is_mounted(mnt_)) {
    ::rmdir(mnt_.c_str());
    ::unlink(log_.c_str());
    ::rmdir(dir_.c_str());
  } else {
    std::fprintf(stderr, "volbench: WARNING: %s is still mounted\n", mnt_.c_str());
  }
}

std::string PrivateMount::log_tail() const {
  std::ifstream in(log_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
}

// ----------------------------------------------------------------------------
// Helpers.

bool is_mounted(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    if (ls >> id >> parent >> dev >> root >> mnt &&
        volfs::core::unescape_mountinfo(mnt) == mountpoint) {
      return true;
    }
  }
  return false;
}

pid_t find_daemon_pid(const std::string& mountpoint) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return -1;
  pid_t found = -1;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    std::ifstream cmd("/proc/" + std::string(e->d_name) + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    bool names_mount = false;
    for (size_t p = 0; p < cmdline.size();) {
      std::string arg = cmdline.c_str() + p;
      std::error_code ec;
      if (arg == mountpoint || std::filesystem::weakly_canonical(arg, ec) == mountpoint) {
        names_mount = true;
      }
      p += arg.size() + 1;
    }
    if (!names_mount) continue;
    std::string fds = "/proc/" + std::string(e->d_name) + "/fd";
    DIR* d = ::opendir(fds.c_str());
    if (!d) continue;
    while (dirent* f = ::readdir(d)) {
      char target[64];
      ssize_t n = ::readlink((fds + "/" + f->d_name).c_str(), target, sizeof target - 1);
      if (n > 0 && std::string(target, static_cast<size_t>(n)) == "/dev/fuse") {
        found = static_cast<pid_t>(pid);
      }
    }
    ::closedir(d);
    if (found > 0) break;
  }
  ::closedir(proc);
  return found;
}

bool is_volfs(const std::string& dir) {
  struct statfs sfs {};
  if (::statfs(dir.c_str(), &sfs) != 0 || sfs.f_type != kFuseSuperMagic) return false;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  volfs_stats s{};
  bool ok = ::ioctl(fd, VOLFS_IOC_STATS, &s) == 0 && s.version >= 1;
  ::close(fd);
  return ok;
}

std::string make_temp_dir(const std::string& parent, const std::string& prefix) {
  std::string templ = parent + "/" + prefix + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  check(::mkdtemp(buf.data()) != nullptr, "mkdtemp " + templ);
  std::error_code ec;
  return std::filesystem::canonical(buf.data(), ec).string();
}

void remove_tree(const std::string& dir) {
  // Refuse to descend into a mount: that would delete someone's files.
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, mnt;
    if (ls >> id >> parent >> dev >> root >> mnt) {
      std::string m = volfs::core::unescape_mountinfo(mnt);
      if (m.size() > dir.size() && m.compare(0, dir.size() + 1, dir + "/") == 0) {
        std::fprintf(stderr, "volbench: not removing %s: %s is mounted inside\n", dir.c_str(),
                     m.c_str());
        return;
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) std::fprintf(stderr, "volbench: removing %s: %s\n", dir.c_str(), ec.message().c_str());
}

}  // namespace volbench
