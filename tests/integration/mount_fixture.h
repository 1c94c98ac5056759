// mount_fixture.h: a private volfs mount per test, in its own temporary
// directory. Invariant: whatever the test does (failed assertion, daemon
// crash, lazy unmount), a VolfsMount leaves nothing mounted when it dies.
//
// How a test gets a mount:
//
//   class MyTest : public volfs::test::MountTest {};   // mounts "size=256m"
//   TEST_F(MyTest, Foo) {
//     int fd = open(mount_.path("f").c_str(), O_CREAT | O_RDWR, 0644);
//     ...
//   }
//
// For other options override mount_options(), or start your own:
//
//   volfs::test::VolfsMount m;
//   ASSERT_TRUE(m.start("size=8m,nr_inodes=16"));
//
// The system memory-pressure sources are off (nopressure is added) unless the
// options name one of them (mem_min, psi, cgroup, pressure): pressure from
// other work on the machine must not purge a test's volatile pages behind its
// back. Tests of those sources name theirs.
//
// stop() (also run by TearDown and the destructor) unmounts, reaps the daemon
// and fails the test if the daemon exited non-zero, had to be killed, or left
// a sanitizer/Valgrind report in its log. The daemon binary is VOLFS_BIN (a
// compile definition); $VOLFS_DAEMON_WRAPPER, if set, is split on spaces and
// put in front of it (e.g. "valgrind --error-exitcode=99 -q").
#ifndef VOLFS_TESTS_INTEGRATION_MOUNT_FIXTURE_H_
#define VOLFS_TESTS_INTEGRATION_MOUNT_FIXTURE_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "launcher.h"

namespace volfs::test {

inline constexpr char kDefaultMountOptions[] = "size=256m";
// Generous, for daemons running under Valgrind.
inline constexpr std::chrono::seconds kMountTimeout{20};

class VolfsMount {
 public:
  VolfsMount() = default;
  // Runs stop() and records its failure, if any, in the current test.
  ~VolfsMount();
  VolfsMount(const VolfsMount&) = delete;
  VolfsMount& operator=(const VolfsMount&) = delete;

  // Creates ${TMPDIR:-/tmp}/volfs-test.XXXXXX/mnt, runs
  // `volfs MNT -f -o OPTIONS` with its output in daemon.log there, and waits
  // up to kMountTimeout for the mount. On failure (daemon exit, timeout) it
  // cleans up and the result carries the daemon's log.
  [[nodiscard]] ::testing::AssertionResult start(const std::string& options = kDefaultMountOptions);

  // Unmounts (umount2; on EBUSY retries, then MNT_DETACH), waits for the
  // daemon (SIGTERM after 10 s, SIGKILL after 20 s), checks its exit status
  // and log, removes the temporary directory. Idempotent.
  [[nodiscard]] ::testing::AssertionResult stop();

  // For tests that end the daemon themselves (signals): waits up to timeout
  // for the daemon to exit and returns its wait status, -1 on timeout. The
  // test then owns that status; stop() no longer judges it (it still
  // unmounts, scans the log and cleans up).
  int wait_for_exit(std::chrono::milliseconds timeout);

  // True while /proc/self/mountinfo shows a fuse mount at mountpoint().
  bool mounted() const;
  bool started() const { return !dir_.empty(); }
  const std::string& mountpoint() const { return mountpoint_; }
  // mountpoint() + "/" + rel.
  std::string path(std::string_view rel) const;
  // The temporary directory holding mnt/ and daemon.log.
  const std::string& dir() const { return dir_; }
  // The daemon's output so far.
  std::string log() const;
  pid_t pid() const { return daemon_.pid(); }

 private:
  ::testing::AssertionResult unmount();
  ::testing::AssertionResult reap_daemon();
  void remove_dir();

  std::string dir_;
  std::string mountpoint_;
  std::string log_path_;
  launcher::Process daemon_;
  // Set once the test has taken the daemon's exit status (wait_for_exit).
  bool exit_taken_ = false;
  // The last unmount met EBUSY and fell back to MNT_DETACH.
  bool busy_at_unmount_ = false;
};

// A gtest fixture whose SetUp mounts a fresh volfs in mount_ and whose
// TearDown stops it, failing the test on an unclean daemon exit.
class MountTest : public ::testing::Test {
 protected:
  virtual std::string mount_options() const { return kDefaultMountOptions; }
  void SetUp() override;
  void TearDown() override;
  // Files made from now on in the mount's root take the cached io mode
  // (user.volfs.iomode=cached on the root): strict marks need it.
  void use_cached_io_mode();
  // Whether files of this mount are served by FUSE passthrough: the default,
  // unless the options (or the suite's cached run) say passthrough=off.
  bool passthrough() const;

  VolfsMount mount_;
};

// `options` with ",nopressure" added unless they name a pressure option.
std::string with_pressure_default(const std::string& options);

// The outcome of running the daemon to completion (for bad command lines).
struct DaemonRun {
  int status = -1;       // wait status; -1 if it had to be killed
  std::string output;    // stdout+stderr
  bool mounted = false;  // a fuse mount appeared at the mountpoint
};
// Runs VOLFS_BIN MNT args... in a fresh temp dir, with a deadline; anything it
// mounts is unmounted and the daemon killed at the deadline.
DaemonRun run_daemon_to_exit(const std::vector<std::string>& args,
                             std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// Mount lookups in /proc/self/mountinfo (fuse and fuse.* mounts only).
using launcher::find_fuse_mount;
using launcher::is_fuse_mount;
// The first line of log that reports a sanitizer or Valgrind error, if any.
std::optional<std::string> find_memory_error_report(const std::string& log);
// rm -rf, but never of a directory with a mount inside.
using launcher::remove_tree;

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_MOUNT_FIXTURE_H_
