// mount_fixture.cc: starts, watches and always tears down a private volfs
// daemon. Mount state is read from /proc/self/mountinfo, never by stat() on
// the mountpoint, so a hung daemon cannot hang the fixture.
#include "mount_fixture.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "child_process.h"

#ifndef VOLFS_BIN
#error "VOLFS_BIN must name the volfs daemon binary"
#endif

namespace volfs::test {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kExitGrace{10000};  // after unmount, before SIGTERM
constexpr milliseconds kTermGrace{10000};  // after SIGTERM, before SIGKILL
constexpr size_t kMaxLogInMessage = 16000;

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
  *dir = launcher::make_temp_dir((tmp && *tmp) ? tmp : "/tmp", "volfs-test", error);
  if (dir->empty()) return false;
  if (chmod(dir->c_str(), 0755) != 0 || mkdir((*dir + "/mnt").c_str(), 0755) != 0) {
    *error = "preparing " + *dir + ": " + std::strerror(errno);
    remove_tree(*dir);
    return false;
  }
  return true;
}

// Starts [wrapper...] VOLFS_BIN args..., output to log_path. The daemon gets
// SIGTERM if the test process dies, so it unmounts itself.
std::string spawn_daemon(launcher::Process& daemon, const std::vector<std::string>& args,
                         const std::string& log_path) {
  std::vector<std::string> argv;
  if (const char* wrapper = std::getenv("VOLFS_DAEMON_WRAPPER")) argv = split_spaces(wrapper);
  argv.push_back(VOLFS_BIN);
  argv.insert(argv.end(), args.begin(), args.end());
  return daemon.spawn(argv, {log_path});
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
  error = spawn_daemon(daemon_, args, log_path_);
  if (!error.empty()) {
    remove_dir();
    return ::testing::AssertionFailure() << error;
  }

  launcher::MountWait waited = launcher::wait_for_mount(daemon_, mountpoint_, kMountTimeout);
  if (waited == launcher::MountWait::kMounted) return ::testing::AssertionSuccess();
  if (waited == launcher::MountWait::kExited) {
    int status = daemon_.reap();
    std::string log = this->log();
    (void)launcher::unmount(mountpoint_);
    remove_dir();
    return ::testing::AssertionFailure()
           << "volfs daemon " << describe_wait_status(status) << " before mounting (options \""
           << options << "\")" << log_block(log);
  }
  std::string log = this->log(), mnt = mountpoint_;  // stop() clears mountpoint_
  kill(daemon_.pid(), SIGTERM);  // hung before mounting: do not wait for it to exit
  ::testing::AssertionResult stopped = stop();
  return ::testing::AssertionFailure()
         << "volfs not mounted at " << mnt << " after " << kMountTimeout.count() << " s (options \""
         << options << "\")" << log_block(log) << (stopped ? "" : "\nand then: ")
         << (stopped ? "" : stopped.message());
}

::testing::AssertionResult VolfsMount::unmount() {
  launcher::Unmounted u = launcher::unmount(mountpoint_);  // EBUSY retried for 1 s
  busy_at_unmount_ = u.busy;
  if (u.error.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << u.error;
}

::testing::AssertionResult VolfsMount::reap_daemon() {
  if (!daemon_.running()) return ::testing::AssertionSuccess();
  launcher::Process::Stopped stopped = daemon_.stop(kExitGrace, kTermGrace);
  int status = stopped.status;
  std::string trouble;
  if (stopped.terminated) {
    trouble = "daemon still running " + std::to_string(kExitGrace.count()) +
              " ms after unmount; sent SIGTERM";
    if (busy_at_unmount_) {
      trouble +=
          " [the mount was busy and only lazily detached: something "
          "(the test itself?) still had a file open or mapped there]";
    }
    if (stopped.killed) trouble += ", then SIGKILL";
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
  if (!daemon_.running() || !daemon_.wait_exit(timeout)) return -1;
  exit_taken_ = true;
  return daemon_.reap();
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
  return launcher::read_file(log_path_);
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
  launcher::Process daemon;
  error = spawn_daemon(daemon, full, log_path);
  if (!error.empty()) {
    run.output = "fixture: " + error;
    remove_tree(dir);
    return run;
  }
  // Once mounted, it has accepted the command line: no need to wait.
  bool exited = launcher::wait_for_mount(daemon, mnt, timeout) == launcher::MountWait::kExited;
  run.mounted = is_fuse_mount(mnt);
  (void)launcher::unmount(mnt);
  if (!exited) kill(daemon.pid(), SIGKILL);
  int status = daemon.reap();
  run.status = exited ? status : -1;
  run.output = launcher::read_file(log_path);
  if (!is_fuse_mount(mnt)) remove_tree(dir);
  return run;
}

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

}  // namespace volfs::test
