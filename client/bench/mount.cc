// mount.cc: private volfs daemons, always stopped, and the cleanup registry
// behind volbench's "never leave a mount behind". Starting, waiting for the
// mount, unmounting and reaping are the launcher's (tests/common/launcher.h),
// which reads mount state from /proc/self/mountinfo, never by stat() on the
// mountpoint, so a hung daemon cannot hang the cleanup.
#include "mount.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
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
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench.h"

namespace volbench {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;
constexpr std::chrono::seconds kMountTimeout{15};
constexpr std::chrono::seconds kExitGrace{10};  // after unmount, before SIGTERM
constexpr std::chrono::seconds kTermGrace{5};   // after SIGTERM, before SIGKILL

// Guards the registry. Held while an action runs, so the signal thread and
// the main thread never run the same action twice or concurrently; the
// signal thread never releases it (it exits the process).
std::recursive_mutex g_cleanup_mu;
std::map<Cleanup::Id, std::function<void()>> g_actions;  // GUARDED_BY(g_cleanup_mu)
Cleanup::Id g_next_id = 1;                               // GUARDED_BY(g_cleanup_mu)
std::atomic<bool> g_interrupted{false};                  // relaxed: only silences messages

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
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
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

// ----------------------------------------------------------------------------
// PrivateMount.

PrivateMount::PrivateMount(const std::string& daemon_bin, const std::string& dir,
                           const std::string& options)
    : dir_(dir), mnt_(dir + "/mnt"), log_(dir + "/daemon.log") {
  check(::mkdir(mnt_.c_str(), 0755) == 0 || errno == EEXIST, "mkdir " + mnt_);
  std::vector<std::string> args = {daemon_bin, mnt_, "-f"};
  if (!options.empty()) {
    args.push_back("-o");
    args.push_back(options);
  }
  // Registered before the fork: from now on a signal unmounts and reaps.
  cleanup_ = Cleanup::add([this] { stop(); });
  // Own process group: a terminal's ^C reaches volbench, which unmounts in
  // order. If volbench dies, the daemon gets SIGTERM and unmounts itself.
  std::string error = daemon_.spawn(args, {log_, /*own_process_group=*/true});
  if (!error.empty()) {
    Cleanup::run(cleanup_);
    throw std::runtime_error(error);
  }
  using volfs::launcher::MountWait;
  MountWait waited = volfs::launcher::wait_for_mount(daemon_, mnt_, kMountTimeout);
  if (waited == MountWait::kMounted) return;
  std::string what = waited == MountWait::kTimedOut
                         ? "volfs did not mount " + mnt_ + " in time"
                         : "volfs daemon exited before mounting " + mnt_ + " (status " +
                               std::to_string(daemon_.reap()) + ")";
  std::string log = log_tail();
  Cleanup::run(cleanup_);
  throw std::runtime_error(what + "; its log:\n" + log);
}

PrivateMount::~PrivateMount() { Cleanup::run(cleanup_); }

void PrivateMount::stop() {
  volfs::launcher::unmount(mnt_);
  daemon_.stop(kExitGrace, kTermGrace);
  if (!is_fuse_mount(mnt_)) {
    ::rmdir(mnt_.c_str());
    ::unlink(log_.c_str());
    ::rmdir(dir_.c_str());
  } else {
    std::fprintf(stderr, "volbench: WARNING: %s is still mounted\n", mnt_.c_str());
  }
}

std::string PrivateMount::log_tail() const {
  std::string s = volfs::launcher::read_file(log_);
  return s.size() > 4000 ? s.substr(s.size() - 4000) : s;
}

// ----------------------------------------------------------------------------
// Helpers.

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
  std::string error, dir = volfs::launcher::make_temp_dir(parent, prefix, &error);
  if (dir.empty()) throw std::runtime_error(error);
  return dir;
}

void remove_tree(const std::string& dir) {
  std::string error = volfs::launcher::remove_tree(dir);
  if (!error.empty()) std::fprintf(stderr, "volbench: %s\n", error.c_str());
}

}  // namespace volbench
