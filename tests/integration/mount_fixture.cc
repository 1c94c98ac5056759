// mount_fixture.cc: starts, watches and always tears down a private volfs
// daemon. Mount state is read from /proc/self/mountinfo, never by stat() on
// the mountpoint, so a hung daemon cannot hang the fixture.
#include "mount_fixture.h"

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "child_process.h"
#include "core/mountinfo.h"

#ifndef VOLFS_BIN
#error "VOLFS_BIN must name the volfs daemon binary"
#endif

namespace volfs::test {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kExitGrace{10000};  // after unmount, before SIGTERM
constexpr milliseconds kTermGrace{10000};  // after SIGTERM, before SIGKILL
constexpr milliseconds kBusyRetry{1000};   // EBUSY retries before MNT_DETACH
constexpr size_t kMaxLogInMessage = 16000;

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_for_message(const std::string& log) {
  if (log.size() <= kMaxLogInMessage) return log;
  return "[... " + std::to_string(log.size() - kMaxLogInMessage) + " bytes cut ...]\n" +
         log.substr(log.size() - kMaxLogInMessage);
}

std::string log_block(const std::string& log) {
  return "\n----- daemon.log -----\n" + tail_for_message(log) + "\n----- end of daemon.log -----";
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string word;
  while (in >> word) out.push_back(word);
  return out;
}

// A fresh ${TMPDIR:-/tmp}/volfs-test.XXXXXX with mnt/ inside, both 0755 so
// that tests running as another user can reach the mountpoint.
bool make_test_dir(std::string* dir, std::string* error) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp && *tmp) ? tmp : "/tmp";
  std::string templ = base + "/volfs-test.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    *error = "mkdtemp(" + templ + "): " + std::strerror(errno);
    return false;
  }
  char* real = realpath(buf.data(), nullptr);
  if (!real) {
    *error = std::string("realpath: ") + std::strerror(errno);
    rmdir(buf.data());
    return false;
  }
  *dir = real;
  free(real);
  if (chmod(dir->c_str(), 0755) != 0 || mkdir((*dir + "/mnt").c_str(), 0755) != 0) {
    *error = "preparing " + *dir + ": " + std::strerror(errno);
    remove_tree(*dir);
    return false;
  }
  return true;
}

// Forks and execs [wrapper...] VOLFS_BIN args..., output to log_path. The
// daemon gets SIGTERM if the test process dies, so it unmounts itself.
pid_t spawn_daemon(const std::vector<std::string>& args, const std::string& log_path,
                   std::string* error) {
  std::vector<std::string> argv_s;
  if (const char* wrapper = std::getenv("VOLFS_DAEMON_WRAPPER")) {
    argv_s = split_spaces(wrapper);
  }
  argv_s.push_back(VOLFS_BIN);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    *error = "open " + log_path + ": " + std::strerror(errno);
    return -1;
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(126);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvp(argv[0], argv.data());
    const char msg[] = "volfs test fixture: exec failed: ";
    (void)!write(2, msg, sizeof msg - 1);
    const char* e = strerror(errno);
    (void)!write(2, e, strlen(e));
    (void)!write(2, "\n", 1);
    _exit(127);
  }
  int fork_errno = errno;
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(fork_errno);
    return -1;
  }
  return pid;
}

// Waits for pid to exit (via pidfd when available), true if it did in time.
bool wait_exit(pid_t pid, int pidfd, milliseconds timeout) {
  if (pidfd >= 0) return wait_readable(pidfd, timeout);
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    siginfo_t info{};
    if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  return false;
}

int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// umount2, retrying EBUSY, then lazily; fusermount3 -u -z if not permitted.
::testing::AssertionResult unmount_path(const std::string& mnt, bool* was_busy = nullptr) {
  if (!is_fuse_mount(mnt)) return ::testing::AssertionSuccess();
  auto deadline = Clock::now() + kBusyRetry;
  for (;;) {
    if (umount2(mnt.c_str(), 0) == 0) return ::testing::AssertionSuccess();
    if (errno == EINVAL || errno == ENOENT) {
      return ::testing::AssertionSuccess();  // already gone (lazily detached)
    }
    if (errno != EBUSY) break;
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (was_busy) *was_busy = true;
  if (umount2(mnt.c_str(), MNT_DETACH) == 0 || errno == EINVAL) {
    return ::testing::AssertionSuccess();
  }
  int err = errno;
  if (err == EPERM) {
    std::string cmd = "fusermount3 -u -z '" + mnt + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "cannot unmount " << mnt << ": " << std::strerror(err);
}

}  // namespace

std::string with_pressure_default(const std::string& options) {
  for (const char* key : {"mem_min", "psi", "cgroup", "pressure"}) {
    if (options.find(key) != std::string::npos) return options;
  }
  return options.empty() ? "nopressure" : options + ",nopressure";
}

VolfsMount::~VolfsMount() {
  if (started()) {
    ::testing::AssertionResult r = stop();
    if (!r) ADD_FAILURE() << r.message();
  }
}

::testing::AssertionResult VolfsMount::start(const std::string& options) {
  if (started()) {
    return ::testing::AssertionFailure() << "VolfsMount already started";
  }
  std::string error;
  if (!make_test_dir(&dir_, &error)) {
    dir_.clear();
    return ::testing::AssertionFailure() << error;
  }
  mountpoint_ = dir_ + "/mnt";
  log_path_ = dir_ + "/daemon.log";
  exit_taken_ = false;

  std::vector<std::string> args = {mountpoint_, "-f", "-o", with_pressure_default(options)};
  // The suite runs once per io mode: ctest sets passthrough=off here for the
  // cached run (tests/CMakeLists.txt).
  if (const char* extra = std::getenv("VOLFS_TEST_DAEMON_OPTIONS"); extra && *extra) {
    args.push_back("-o");
    args.push_back(extra);
  }
  pid_ = spawn_daemon(args, log_path_, &error);
  if (pid_ < 0) {
    remove_dir();
    return ::testing::AssertionFailure() << error;
  }
  pidfd_ = open_pidfd(pid_);

  auto deadline = Clock::now() + kMountTimeout;
  for (;;) {
    if (is_fuse_mount(mountpoint_)) return ::testing::AssertionSuccess();
    if (wait_exit(pid_, pidfd_, milliseconds(0))) {
      int status = reap(pid_);
      pid_ = -1;
      if (pidfd_ >= 0) {
        close(pidfd_);
        pidfd_ = -1;
      }
      std::string log = this->log();
      (void)unmount_path(mountpoint_);
      remove_dir();
      return ::testing::AssertionFailure()
             << "volfs daemon " << describe_wait_status(status) << " before mounting (options \""
             << options << "\")" << log_block(log);
    }
    if (Clock::now() > deadline) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  std::string log = this->log();
  kill(pid_, SIGTERM);  // hung before mounting: do not wait for it to exit
  ::testing::AssertionResult stopped = stop();
  return ::testing::AssertionFailure()
         << "volfs not mounted at " << mountpoint_ << " after " << kMountTimeout.count()
         << " s (options \"" << options << "\")" << log_block(log)
         << (stopped ? "" : "\nand then: ") << (stopped ? "" : stopped.message());
}

::testing::AssertionResult VolfsMount::unmount() {
  busy_at_unmount_ = false;
  return unmount_path(mountpoint_, &busy_at_unmount_);
}

::testing::AssertionResult VolfsMount::reap_daemon() {
  if (pid_ <= 0) return ::testing::AssertionSuccess();
  std::string trouble;
  if (!wait_exit(pid_, pidfd_, kExitGrace)) {
    trouble = "daemon still running " + std::to_string(kExitGrace.count()) +
              " ms after unmount; sent SIGTERM";
    if (busy_at_unmount_) {
      trouble +=
          " [the mount was busy and only lazily detached: something "
          "(the test itself?) still had a file open or mapped there]";
    }
    kill(pid_, SIGTERM);
    if (!wait_exit(pid_, pidfd_, kTermGrace)) {
      trouble += ", then SIGKILL";
      kill(pid_, SIGKILL);
    }
  }
  int status = reap(pid_);
  pid_ = -1;
  if (pidfd_ >= 0) {
    close(pidfd_);
    pidfd_ = -1;
  }
  if (exit_taken_) return ::testing::AssertionSuccess();
  bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (trouble.empty() && clean) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "volfs daemon " << describe_wait_status(status)
         << (trouble.empty() ? "" : " (" + trouble + ")")
         << ", expected a clean exit 0 after unmount" << log_block(log());
}

::testing::AssertionResult VolfsMount::stop() {
  if (!started()) return ::testing::AssertionSuccess();
  ::testing::AssertionResult unmounted = unmount();
  ::testing::AssertionResult reaped = reap_daemon();
  std::string log = this->log();
  std::optional<std::string> report = find_memory_error_report(log);
  // A daemon killed above leaves at most a dead connection; detach it.
  if (is_fuse_mount(mountpoint_)) (void)umount2(mountpoint_.c_str(), MNT_DETACH);
  remove_dir();
  mountpoint_.clear();
  exit_taken_ = false;

  if (unmounted && reaped && !report) return ::testing::AssertionSuccess();
  ::testing::AssertionResult r = ::testing::AssertionFailure();
  if (!unmounted) r << unmounted.message() << "\n";
  if (!reaped) r << reaped.message() << "\n";
  if (report) {
    r << "daemon log reports a memory/UB error: " << *report << log_block(log);
  }
  return r;
}

int VolfsMount::wait_for_exit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  if (!wait_exit(pid_, pidfd_, timeout)) return -1;
  int status = reap(pid_);
  pid_ = -1;
  if (pidfd_ >= 0) {
    close(pidfd_);
    pidfd_ = -1;
  }
  exit_taken_ = true;
  return status;
}

bool VolfsMount::mounted() const { return started() && is_fuse_mount(mountpoint_); }

std::string VolfsMount::path(std::string_view rel) const {
  std::string p = mountpoint_;
  if (!rel.empty()) {
    p += "/";
    p += rel;
  }
  return p;
}

std::string VolfsMount::log() const {
  if (log_path_.empty()) return "";
  return read_whole_file(log_path_);
}

void VolfsMount::remove_dir() {
  if (dir_.empty()) return;
  // Never recurse into a mount that is still there.
  if (!is_fuse_mount(mountpoint_)) remove_tree(dir_);
  dir_.clear();
}

void MountTest::SetUp() { ASSERT_TRUE(mount_.start(mount_options())); }

bool MountTest::passthrough() const {
  const char* extra = std::getenv("VOLFS_TEST_DAEMON_OPTIONS");
  std::string all = mount_options() + "," + (extra ? extra : "");
  return all.find("passthrough=off") == std::string::npos;
}

void MountTest::use_cached_io_mode() {
  ASSERT_EQ(::setxattr(mount_.mountpoint().c_str(), "user.volfs.iomode", "cached", 6, 0), 0)
      << std::strerror(errno);
}

void MountTest::TearDown() { EXPECT_TRUE(mount_.stop()); }

DaemonRun run_daemon_to_exit(const std::vector<std::string>& args,
                             std::chrono::milliseconds timeout) {
  DaemonRun run;
  std::string dir, error;
  if (!make_test_dir(&dir, &error)) {
    run.output = "fixture: " + error;
    return run;
  }
  std::string mnt = dir + "/mnt";
  std::string log_path = dir + "/daemon.log";
  std::vector<std::string> full = {mnt};
  full.insert(full.end(), args.begin(), args.end());
  pid_t pid = spawn_daemon(full, log_path, &error);
  if (pid < 0) {
    run.output = "fixture: " + error;
    remove_tree(dir);
    return run;
  }
  int pidfd = open_pidfd(pid);
  auto deadline = Clock::now() + timeout;
  bool exited = false;
  while (Clock::now() < deadline) {
    if (is_fuse_mount(mnt)) {
      run.mounted = true;  // accepted the command line: no need to wait
      break;
    }
    if (wait_exit(pid, pidfd, milliseconds(0))) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  if (is_fuse_mount(mnt)) run.mounted = true;
  (void)unmount_path(mnt);
  if (!exited) kill(pid, SIGKILL);
  int status = reap(pid);
  if (pidfd >= 0) close(pidfd);
  run.status = exited ? status : -1;
  run.output = read_whole_file(log_path);
  if (!is_fuse_mount(mnt)) remove_tree(dir);
  return run;
}

std::optional<std::string> mountinfo_line(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    if (!(fields >> id >> parent >> devno >> root >> mount_point)) continue;
    if (core::unescape_mountinfo(mount_point) != path) continue;
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream rest(line.substr(sep + 3));
    std::string fstype;
    rest >> fstype;
    if (fstype == "fuse" || fstype.rfind("fuse.", 0) == 0) found = line;
  }
  return found;
}

bool is_fuse_mount(const std::string& path) { return mountinfo_line(path).has_value(); }

std::optional<std::string> find_memory_error_report(const std::string& log) {
  static const char* const kAlways[] = {
      "ERROR: AddressSanitizer",
      "runtime error:",
      "WARNING: ThreadSanitizer",
      "ERROR: LeakSanitizer",
      "Invalid read",
      "Invalid write",
      "Invalid free",
      "Mismatched free",
  };
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    for (const char* pattern : kAlways) {
      if (line.find(pattern) != std::string::npos) return line;
    }
    // Valgrind: "==12== ERROR SUMMARY: 0 errors from 0 contexts" is clean.
    size_t at = line.find("ERROR SUMMARY: ");
    if (at != std::string::npos && line.compare(at + 15, 2, "0 ") != 0) {
      return line;
    }
    at = line.find("definitely lost: ");
    if (at != std::string::npos && line.compare(at + 17, 2, "0 ") != 0) {
      return line;
    }
  }
  return std::nullopt;
}

void remove_tree(const std::string& path) {
  nftw(
      path.c_str(),
      [](const char* p, const struct stat* st, int type, struct FTW*) {
        (void)st;
        if (type == FTW_DP) {
          rmdir(p);
        } else {
          unlink(p);
        }
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

}  // namespace volfs::test
