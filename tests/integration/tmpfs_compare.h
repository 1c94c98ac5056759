// tmpfs_compare.h: runs one operation sequence on a volfs root and on a fresh
// tmpfs directory (/dev/shm) and compares every step's outcome (value or
// errno name), as mergerfs's test suite does. Where volfs should behave like
// tmpfs, a test states the sequence once:
//
//   TmpfsComparison cmp(mount_.mountpoint());
//   cmp.run([](Scenario& s) {
//     s.open("create", "f", O_CREAT | O_WRONLY, 0644);
//     s.open("excl", "f", O_CREAT | O_EXCL | O_WRONLY, 0644, "EEXIST");
//   });
//   EXPECT_TRUE(cmp.same());
//
// An optional expected outcome is checked on both roots, so a wrong
// expectation shows up as a tmpfs mismatch rather than a silent pass.
#ifndef VOLFS_TESTS_INTEGRATION_TMPFS_COMPARE_H_
#define VOLFS_TESTS_INTEGRATION_TMPFS_COMPARE_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"

namespace volfs::test {

// A fresh /dev/shm/volfs-ref.XXXXXX (tmpfs), removed with its contents.
class TmpfsDir {
 public:
  TmpfsDir();
  ~TmpfsDir();
  TmpfsDir(const TmpfsDir&) = delete;
  TmpfsDir& operator=(const TmpfsDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string path(std::string_view rel) const;

 private:
  std::string path_;
};

// "EEXIST" for EEXIST, and so on.
std::string errno_name(int err);
// Printable rendering of bytes: short data escaped, long data as a digest.
std::string render_bytes(std::string_view data);

struct Step {
  std::string label;
  std::string outcome;
  std::string expected;  // empty: no expectation beyond matching tmpfs
};

// Records the outcome of each operation on one root.
class Scenario {
 public:
  explicit Scenario(std::string root);
  // Closes the fds opened through open().
  ~Scenario();
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  const std::string& root() const { return root_; }
  std::string path(std::string_view rel) const;

  // Records "ok", or the errno name when ret == -1; returns ret.
  long check(std::string_view label, long ret, std::string_view expected = {});
  // Records ret itself, or the errno name when ret == -1; returns ret.
  long value(std::string_view label, long ret, std::string_view expected = {});
  // Records an observation.
  void note(std::string_view label, std::string observed, std::string_view expected = {});

  // open(path(rel)) recorded like check(); the fd is closed at the end.
  int open(std::string_view label, std::string_view rel, int flags, mode_t mode = 0644,
           std::string_view expected = {});
  // write/pwrite of data, recorded as the byte count or errno.
  long write(std::string_view label, int fd, std::string_view data, std::string_view expected = {});
  long pwrite(std::string_view label, int fd, std::string_view data, off_t offset,
              std::string_view expected = {});
  // pread of up to len bytes at offset, recorded as the bytes or errno.
  std::string pread(std::string_view label, int fd, size_t len, off_t offset,
                    std::string_view expected = {});
  // The whole content of path(rel), or the errno of opening/reading it.
  std::string content(std::string_view label, std::string_view rel, std::string_view expected = {});
  // lstat(path(rel)) fields, e.g. "type,mode,size,nlink,uid,gid,blocks" as
  // "type=reg mode=0644 size=5 ..." (mode is the permission bits with
  // setuid/setgid/sticky), or the errno.
  std::string stat(std::string_view label, std::string_view rel, std::string_view fields,
                   std::string_view expected = {});
  std::string fstat(std::string_view label, int fd, std::string_view fields,
                    std::string_view expected = {});
  // Sorted names in directory path(rel) without "." and "..", with a type
  // suffix ("/" dir, "@" symlink, "|" fifo), or the errno.
  std::string list(std::string_view label, std::string_view rel, std::string_view expected = {});

  const std::vector<Step>& steps() const { return steps_; }
  std::string serialize() const;
  static std::vector<Step> parse(const std::string& text);

 private:
  std::string root_;
  std::vector<Step> steps_;
  std::vector<int> fds_;
};

// Renders selected struct stat fields as Scenario::stat does.
std::string describe_stat(const struct stat& st, std::string_view fields);

// Runs scenarios on a volfs root and on a fresh TmpfsDir and compares them.
class TmpfsComparison {
 public:
  explicit TmpfsComparison(std::string volfs_root);

  // Runs body on tmpfs, then on volfs, in this process.
  void run(const std::function<void(Scenario&)>& body);
  // Same, each in a child process running as `who`.
  void run_as(Credentials who, const std::function<void(Scenario&)>& body);

  // Success if every step's outcome is equal on both roots and meets its
  // expectation; otherwise a table of all steps with the mismatches marked.
  [[nodiscard]] ::testing::AssertionResult same() const;

  const std::string& tmpfs_root() const { return tmpfs_.path(); }
  const std::string& volfs_root() const { return volfs_root_; }
  const std::vector<Step>& tmpfs_steps() const { return tmpfs_steps_; }
  const std::vector<Step>& volfs_steps() const { return volfs_steps_; }

 private:
  std::vector<Step> run_in_child_as(Credentials who, const std::string& root,
                                    const std::function<void(Scenario&)>& body);

  TmpfsDir tmpfs_;
  std::string volfs_root_;
  std::vector<Step> tmpfs_steps_;
  std::vector<Step> volfs_steps_;
  std::string trouble_;  // a child that failed to report
};

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_TMPFS_COMPARE_H_
