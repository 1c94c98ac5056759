// fixture_test.cc: tests of the test harness itself: the fixture must notice
// a crashed daemon and sanitizer reports, and must leave nothing mounted in
// any of these cases.
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "tmpfs_compare.h"

namespace volfs::test {
namespace {

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST(FixtureTest, FindsSanitizerAndValgrindReports) {
  EXPECT_FALSE(find_memory_error_report("volfs: mounted\n"));
  EXPECT_FALSE(find_memory_error_report(
      "==12== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)\n"
      "==12==    definitely lost: 0 bytes in 0 blocks\n"));
  for (const char* bad : {"==1==ERROR: AddressSanitizer: heap-use-after-free on address",
                          "fs/x.cc:10:5: runtime error: signed integer overflow",
                          "WARNING: ThreadSanitizer: data race (pid=5)",
                          "==1==ERROR: LeakSanitizer: detected memory leaks",
                          "==12== ERROR SUMMARY: 3 errors from 2 contexts",
                          "==12==    definitely lost: 1,024 bytes in 2 blocks",
                          "==12== Invalid read of size 8", "==12== Invalid write of size 4"}) {
    auto found = find_memory_error_report(std::string("ok\n") + bad + "\nok\n");
    EXPECT_TRUE(found.has_value()) << bad;
    if (found) {
      EXPECT_EQ(*found, bad);
    }
  }
}

TEST(FixtureTest, StartAndStopLeaveNothingBehind) {
  VolfsMount m;
  ASSERT_TRUE(m.start());
  std::string dir = m.dir(), mnt = m.mountpoint();
  EXPECT_TRUE(m.mounted());
  EXPECT_TRUE(is_fuse_mount(mnt));
  EXPECT_GT(m.pid(), 0);
  EXPECT_EQ(m.path("a/b"), mnt + "/a/b");
  ASSERT_TRUE(write_file(m.path("f"), "x"));
  EXPECT_TRUE(m.stop());
  EXPECT_FALSE(is_fuse_mount(mnt));
  EXPECT_FALSE(exists(dir)) << "temp dir not removed";
  EXPECT_TRUE(m.stop()) << "stop() is idempotent";
}

TEST(FixtureTest, CrashedDaemonIsReportedAndCleanedUp) {
  VolfsMount m;
  ASSERT_TRUE(m.start());
  std::string dir = m.dir(), mnt = m.mountpoint();
  ASSERT_EQ(kill(m.pid(), SIGKILL), 0);
  ::testing::AssertionResult r = m.stop();
  EXPECT_FALSE(r) << "a daemon killed by SIGKILL must fail the test";
  EXPECT_NE(std::string(r.message()).find("signal 9"), std::string::npos) << r.message();
  EXPECT_FALSE(is_fuse_mount(mnt));
  EXPECT_FALSE(exists(dir));
}

TEST(FixtureTest, StopWithBusyMountDetachesIt) {
  VolfsMount m;
  ASSERT_TRUE(m.start());
  std::string mnt = m.mountpoint();
  ASSERT_TRUE(write_file(m.path("f"), "x"));
  SyncPipe opened, release;
  ChildProcess holder;
  std::string f = m.path("f");
  holder.start([&]() {
    int fd = open(f.c_str(), O_RDONLY);
    CHILD_CHECK(fd >= 0);
    opened.post();
    CHILD_CHECK(release.wait());
    close(fd);
    return 0;
  });
  ASSERT_TRUE(opened.wait());
  // stop() blocks until the daemon exits, which needs the holder to let go:
  // release it shortly after stop() has detached the busy mount.
  ChildProcess releaser;
  releaser.start([&]() {
    usleep(1500 * 1000);
    release.post();
    return 0;
  });
  EXPECT_TRUE(m.stop());
  EXPECT_FALSE(is_fuse_mount(mnt));
  EXPECT_TRUE(exited_with(holder.wait(), 0));
  EXPECT_TRUE(exited_with(releaser.wait(), 0));
}

TEST(FixtureTest, FailedStartCarriesTheLog) {
  VolfsMount m;
  ::testing::AssertionResult r = m.start("bogus_option_for_fixture_test=1");
  ASSERT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("daemon.log"), std::string::npos) << r.message();
  EXPECT_FALSE(m.started());
}

TEST(FixtureTest, ChildHelpersReportExitAndSignals) {
  EXPECT_TRUE(exited_with(run_in_child([] { return 0; }), 0));
  EXPECT_TRUE(exited_with(run_in_child([] { return 7; }), 7));
  EXPECT_TRUE(killed_by(run_in_child([]() -> int {
                          raise(SIGBUS);
                          return 0;
                        }),
                        SIGBUS));
  int status = run_as_user([] {
    CHILD_CHECK(getuid() == 65534 && geteuid() == 65534);
    CHILD_CHECK(getgid() == 65534 && getegid() == 65534);
    CHILD_CHECK(getgroups(0, nullptr) == 0);
    return 0;
  });
  EXPECT_TRUE(exited_with(status, 0));
  EXPECT_FALSE(exited_with(run_in_child([] {
                             CHILD_CHECK(1 == 2);
                             return 0;
                           }),
                           0));
}

TEST(FixtureTest, ComparisonFlagsDifferencesAndWrongExpectations) {
  TmpfsDir other;
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(write_file(other.path("only_here"), "x"));
  // Compare /dev/shm against another tmpfs dir that has an extra file.
  TmpfsComparison cmp(other.path());
  cmp.run([](Scenario& s) { s.content("read", "only_here"); });
  EXPECT_FALSE(cmp.same());
  TmpfsComparison wrong(other.path());
  wrong.run([](Scenario& s) { s.check("mkdir", mkdir(s.path("d").c_str(), 0755), "EEXIST"); });
  EXPECT_FALSE(wrong.same()) << "an expectation tmpfs does not meet must fail";
  TmpfsComparison right(other.path());
  right.run([](Scenario& s) { s.check("mkdir", mkdir(s.path("d2").c_str(), 0755), "ok"); });
  EXPECT_TRUE(right.same());
}

}  // namespace
}  // namespace volfs::test
