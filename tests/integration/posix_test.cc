// posix_test.cc: POSIX file and directory semantics of volfs on a private
// mount per test. Where volfs should behave like tmpfs, each case runs the
// same calls on /dev/shm and compares every result and errno.
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "tmpfs_compare.h"

namespace volfs::test {
namespace {

class PosixTest : public MountTest {
 protected:
  void SetUp() override {
    umask(022);
    MountTest::SetUp();
  }
};

std::string yes_no(bool b) { return b ? "yes" : "no"; }

// Runs fn once per root (tmpfs first), labelled for failure messages.
void for_both_roots(const VolfsMount& mount, const std::function<void(const std::string&)>& fn) {
  TmpfsDir tmpfs;
  ASSERT_TRUE(tmpfs.ok());
  for (const std::string& root : {tmpfs.path(), mount.mountpoint()}) {
    SCOPED_TRACE(root == tmpfs.path() ? "on tmpfs " + root : "on volfs " + root);
    fn(root);
  }
}

// ---------------------------------------------------------------- open/read/write

TEST_F(PosixTest, OpenCreateExclTruncAppend) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_WRONLY, 0644, "ok");
    s.write("write", fd, "hello", "5");
    s.fstat("fstat", fd, "type,mode,size,nlink", "type=reg mode=0644 size=5 nlink=1");
    s.open("O_CREAT|O_EXCL on existing", "f", O_CREAT | O_EXCL | O_WRONLY, 0644, "EEXIST");
    s.open("O_CREAT on existing", "f", O_CREAT | O_RDONLY, 0600, "ok");
    s.stat("mode kept", "f", "mode", "mode=0644");
    s.content("content", "f", "\"hello\"");
    int afd = s.open("O_APPEND", "f", O_RDWR | O_APPEND, 0, "ok");
    s.write("append", afd, "XY", "2");
    s.value("lseek to 0", lseek(afd, 0, SEEK_SET), "0");
    s.write("append after lseek", afd, "Z", "1");
    s.value("offset after append", lseek(afd, 0, SEEK_CUR), "8");
    s.pread("pread", afd, 100, 0, "\"helloXYZ\"");
    s.open("O_TRUNC", "f", O_WRONLY | O_TRUNC, 0, "ok");
    s.stat("size after O_TRUNC", "f", "size,blocks", "size=0 blocks=0");
    s.open("missing", "missing", O_RDONLY, 0, "ENOENT");
    s.open("missing parent", "nodir/f", O_CREAT | O_WRONLY, 0644, "ENOENT");
    s.open("O_DIRECTORY on a file", "f", O_RDONLY | O_DIRECTORY, 0, "ENOTDIR");
    s.open("create 0666 under umask 022", "g", O_CREAT | O_EXCL | O_WRONLY, 0666, "ok");
    s.stat("umask applied", "g", "mode", "mode=0644");
    s.open("create 0600", "h", O_CREAT | O_EXCL | O_WRONLY, 0600, "ok");
    s.stat("mode 0600", "h", "mode", "mode=0600");
    int rfd = s.open("read only", "f", O_RDONLY, 0, "ok");
    s.write("write on O_RDONLY fd", rfd, "x", "EBADF");
    int wfd = s.open("write only", "h", O_WRONLY, 0, "ok");
    s.pread("read on O_WRONLY fd", wfd, 1, 0, "EBADF");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, ReadWriteRoundTripOddChunks) {
  const std::string data = make_pattern(3 * kMiB + 12345, 7);
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([&](Scenario& s) {
    int fd = s.open("create", "big", O_CREAT | O_RDWR, 0644, "ok");
    size_t off = 0, chunk = 1;
    bool ok = true;
    while (off < data.size()) {
      size_t n = std::min(chunk, data.size() - off);
      ok = ok && pwrite_all(fd, std::string_view(data).substr(off, n), off);
      off += n;
      chunk = chunk * 3 + 1;  // 1, 4, 13, ... crosses page boundaries
    }
    s.note("written in growing chunks", yes_no(ok), "yes");
    s.fstat("size", fd, "size", "size=" + std::to_string(data.size()));
    std::string back;
    for (off = 0; off < data.size(); off += 65537) {
      auto part = pread_some(fd, 65537, off);
      if (!part) break;
      back += *part;
    }
    s.note("read back in 65537-byte chunks", yes_no(back == data), "yes");
    s.content("content via read()", "big", render_bytes(data));
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, WritePastEofLeavesZeroHole) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    s.write("write A", fd, "A", "1");
    s.pwrite("pwrite B past EOF", fd, "B", kMiB + 10, "1");
    s.fstat("size", fd, "size", "size=1048587");
    auto hole = pread_some(fd, kMiB + 9, 1);
    s.note("hole reads as zeros", yes_no(hole && hole->size() == kMiB + 9 && all_zero(*hole)),
           "yes");
    s.pread("data after hole", fd, 10, kMiB + 10, "\"B\"");
    s.pread("read at EOF", fd, 10, kMiB + 11, "\"\"");
    s.pread("read past EOF", fd, 10, 5 * kMiB, "\"\"");
    // A hole in the middle of a page, then data in the same page.
    s.pwrite("pwrite C at 5000", fd, "C", 5000, "1");
    s.pread("page with hole", fd, 8, 4998, "\"\\x00\\x00C\\x00\\x00\\x00\\x00\\x00\"");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, SparseFileStBlocks) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string f = root + "/sparse";
    UniqueFd fd(open(f.c_str(), O_CREAT | O_RDWR, 0644));
    ASSERT_TRUE(fd.ok()) << strerror(errno);
    ASSERT_EQ(pwrite(fd.get(), "x", 1, 0), 1);
    ASSERT_EQ(pwrite(fd.get(), "y", 1, 10 * kMiB), 1);
    ASSERT_EQ(fsync(fd.get()), 0);
    struct stat st;
    ASSERT_EQ(fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_size, static_cast<off_t>(10 * kMiB + 1));
    EXPECT_GE(st.st_blocks * 512, 2 * 512) << "data pages must count";
    EXPECT_LE(st.st_blocks * 512, 64 * 1024) << "holes must not count";
    ASSERT_TRUE(pwrite_all(fd.get(), make_pattern(kMiB, 1), 2 * kMiB));
    ASSERT_EQ(fsync(fd.get()), 0);
    ASSERT_EQ(fstat(fd.get(), &st), 0);
    EXPECT_GE(st.st_blocks * 512, static_cast<blkcnt_t>(kMiB));
    EXPECT_LE(st.st_blocks * 512, static_cast<blkcnt_t>(kMiB + 64 * kKiB));
    ASSERT_EQ(ftruncate(fd.get(), 0), 0);
    ASSERT_EQ(fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_blocks, 0);
    fd.reset();
  });
}

// ---------------------------------------------------------------- truncate

TEST_F(PosixTest, TruncateGrowAndShrink) {
  const std::string data = make_pattern(10000, 3);
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([&](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    s.write("write 10000", fd, data, "10000");
    s.check("ftruncate shrink to 5000", ftruncate(fd, 5000), "ok");
    s.fstat("size", fd, "size", "size=5000");
    s.check("ftruncate grow to 20000", ftruncate(fd, 20000), "ok");
    s.fstat("size", fd, "size", "size=20000");
    auto head = pread_some(fd, 5000, 0);
    s.note("first 5000 bytes intact", yes_no(head && *head == data.substr(0, 5000)), "yes");
    auto tail = pread_some(fd, 15000, 5000);
    s.note("old data beyond 5000 gone (zeros)",
           yes_no(tail && tail->size() == 15000 && all_zero(*tail)), "yes");
    s.check("truncate(path) to 100", truncate(s.path("f").c_str(), 100), "ok");
    s.stat("size", "f", "size", "size=100");
    s.check("truncate missing", truncate(s.path("missing").c_str(), 0), "ENOENT");
    s.check("ftruncate negative", ftruncate(fd, -1), "EINVAL");
    int rfd = s.open("open read-only", "f", O_RDONLY, 0, "ok");
    s.check("ftruncate on O_RDONLY fd", ftruncate(rfd, 0), "EINVAL");
    s.check("mkdir d", mkdir(s.path("d").c_str(), 0755), "ok");
    s.check("truncate a directory", truncate(s.path("d").c_str(), 0), "EISDIR");
    s.check("ftruncate to 0", ftruncate(fd, 0), "ok");
    s.fstat("empty", fd, "size,blocks", "size=0 blocks=0");
    s.pread("read empty", fd, 10, 0, "\"\"");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- unlink

TEST_F(PosixTest, UnlinkErrors) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    s.check("unlink missing", unlink(s.path("missing").c_str()), "ENOENT");
    s.check("mkdir d", mkdir(s.path("d").c_str(), 0755), "ok");
    s.check("unlink a directory", unlink(s.path("d").c_str()), "EISDIR");
    s.open("create f", "f", O_CREAT | O_WRONLY, 0644, "ok");
    s.check("unlink f/x", unlink(s.path("f/x").c_str()), "ENOTDIR");
    s.check("unlink f", unlink(s.path("f").c_str()), "ok");
    s.check("unlink f again", unlink(s.path("f").c_str()), "ENOENT");
    s.list("listing", ".", "d/");
  });
  EXPECT_TRUE(cmp.same());
}

// A file unlinked while another process has it open lives on for that
// process, and a new file of the same name is a different file.
TEST_F(PosixTest, UnlinkedFileLivesOnWhileOpenInAnotherProcess) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string f = root + "/f";
    ASSERT_TRUE(write_file(f, "data"));
    SyncPipe opened, unlinked;
    ChildProcess child;
    child.start([&]() {
      int fd = open(f.c_str(), O_RDWR);
      CHILD_CHECK(fd >= 0);
      opened.post();
      CHILD_CHECK(unlinked.wait());
      char buf[16] = {};
      CHILD_CHECK(pread(fd, buf, sizeof buf, 0) == 4);
      CHILD_CHECK(memcmp(buf, "data", 4) == 0);
      CHILD_CHECK(pwrite(fd, "more", 4, 4) == 4);
      CHILD_CHECK(pread(fd, buf, sizeof buf, 0) == 8);
      CHILD_CHECK(memcmp(buf, "datamore", 8) == 0);
      struct stat st;
      CHILD_CHECK(fstat(fd, &st) == 0);
      CHILD_CHECK(st.st_nlink == 0);
      CHILD_CHECK(st.st_size == 8);
      CHILD_CHECK(close(fd) == 0);
      return 0;
    });
    ASSERT_TRUE(opened.wait());
    ASSERT_EQ(unlink(f.c_str()), 0) << strerror(errno);
    struct stat st;
    EXPECT_EQ(stat(f.c_str(), &st), -1);
    EXPECT_EQ(errno, ENOENT);
    ASSERT_TRUE(write_file(f, "new!"));
    unlinked.post();
    EXPECT_TRUE(exited_with(child.wait(), 0));
    EXPECT_EQ(read_file(f).value_or("?"), "new!");
  });
}

// ---------------------------------------------------------------- rename

TEST_F(PosixTest, RenameSemantics) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    auto ino = [&](const char* rel) {
      struct stat st;
      return lstat(s.path(rel).c_str(), &st) == 0 ? st.st_ino : 0;
    };
    auto ren = [&](const char* label, const char* from, const char* to, unsigned flags,
                   const char* expected) {
      s.check(label, renameat2(AT_FDCWD, s.path(from).c_str(), AT_FDCWD, s.path(to).c_str(), flags),
              expected);
    };
    write_file(s.path("a"), "A");
    write_file(s.path("b"), "B");
    write_file(s.path("c"), "C");
    mkdir(s.path("d1").c_str(), 0755);
    write_file(s.path("d1/in"), "in");
    mkdir(s.path("d2").c_str(), 0755);
    mkdir(s.path("d3").c_str(), 0755);
    write_file(s.path("d3/x"), "x");

    ren("plain rename a -> a2", "a", "a2", 0, "ok");
    s.content("old name gone", "a", "ENOENT");
    s.content("new name", "a2", "\"A\"");
    ino_t b_ino = ino("b");
    ren("rename b over existing c", "b", "c", 0, "ok");
    s.note("c is b's inode", yes_no(ino("c") == b_ino), "yes");
    s.content("c content", "c", "\"B\"");
    s.content("b gone", "b", "ENOENT");
    ren("RENAME_NOREPLACE onto existing", "a2", "c", RENAME_NOREPLACE, "EEXIST");
    s.content("a2 kept", "a2", "\"A\"");
    s.content("c kept", "c", "\"B\"");
    ren("RENAME_NOREPLACE onto free name", "a2", "n", RENAME_NOREPLACE, "ok");
    ren("RENAME_EXCHANGE file <-> dir", "n", "d2", RENAME_EXCHANGE, "ok");
    s.stat("n is now the dir", "n", "type", "type=dir");
    s.content("d2 is now the file", "d2", "\"A\"");
    ren("RENAME_EXCHANGE with missing target", "c", "missing", RENAME_EXCHANGE, "ENOENT");
    ren("RENAME_EXCHANGE|RENAME_NOREPLACE", "c", "d2", RENAME_EXCHANGE | RENAME_NOREPLACE,
        "EINVAL");
    ren("dir over non-empty dir", "d1", "d3", 0, "ENOTEMPTY");
    ren("file over dir", "c", "d3", 0, "EISDIR");
    ren("dir over file", "d1", "c", 0, "ENOTDIR");
    ren("dir into its own subdir", "d1", "d1/sub", 0, "EINVAL");
    ren("dir onto itself", "d1", "d1", 0, "ok");
    ren("file onto itself", "c", "c", 0, "ok");
    ren("missing source", "missing", "x", 0, "ENOENT");
    ren("into missing dir", "c", "nodir/c", 0, "ENOENT");
    ren("through a file", "c", "c/x", 0, "ENOTDIR");
    ren("dir over empty dir", "d1", "n", 0, "ok");
    s.list("moved dir keeps entries", "n", "in");
    s.check("link c c2", link(s.path("c").c_str(), s.path("c2").c_str()), "ok");
    ren("rename onto a hard link of itself", "c", "c2", 0, "ok");
    s.stat("both links remain", "c", "nlink", "nlink=2");
    // Moving a directory between parents moves its ".." link.
    mkdir(s.path("p1").c_str(), 0755);
    mkdir(s.path("p2").c_str(), 0755);
    mkdir(s.path("p1/sub").c_str(), 0755);
    s.stat("p1 nlink before", "p1", "nlink", "nlink=3");
    ren("move dir between parents", "p1/sub", "p2/sub", 0, "ok");
    s.stat("p1 nlink after", "p1", "nlink", "nlink=2");
    s.stat("p2 nlink after", "p2", "nlink", "nlink=3");
    s.list("root", ".", "c c2 d2 d3/ n/ p1/ p2/");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- directories

TEST_F(PosixTest, MkdirRmdir) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    auto mk = [&](const char* label, const char* rel, const char* expected) {
      s.check(label, mkdir(s.path(rel).c_str(), 0755), expected);
    };
    auto rm = [&](const char* label, const char* rel, const char* expected) {
      s.check(label, rmdir(s.path(rel).c_str()), expected);
    };
    mk("mkdir d", "d", "ok");
    s.stat("new dir", "d", "type,mode,nlink", "type=dir mode=0755 nlink=2");
    mk("mkdir d again", "d", "EEXIST");
    write_file(s.path("f"), "f");
    mk("mkdir over a file", "f", "EEXIST");
    mk("mkdir in missing parent", "missing/x", "ENOENT");
    mk("mkdir through a file", "f/x", "ENOTDIR");
    mk("mkdir d/a", "d/a", "ok");
    mk("mkdir d/b", "d/b", "ok");
    s.stat("nlink counts subdirs", "d", "nlink", "nlink=4");
    write_file(s.path("d/file"), "x");
    s.stat("files do not count", "d", "nlink", "nlink=4");
    rm("rmdir non-empty", "d", "ENOTEMPTY");
    rm("rmdir missing", "missing", "ENOENT");
    rm("rmdir a file", "f", "ENOTDIR");
    rm("rmdir through a file", "f/x", "ENOTDIR");
    rm("rmdir d/a/.", "d/a/.", "EINVAL");
    rm("rmdir d/a", "d/a", "ok");
    s.stat("nlink after rmdir", "d", "nlink", "nlink=3");
    s.check("unlink d/file", unlink(s.path("d/file").c_str()), "ok");
    rm("rmdir d/b", "d/b", "ok");
    rm("rmdir d", "d", "ok");
    s.stat("d gone", "d", "type", "ENOENT");
  });
  EXPECT_TRUE(cmp.same());
}

// d_type of every entry as "name:type", sorted.
std::vector<std::string> list_with_dtypes(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return {"opendir: " + errno_name(errno)};
  while (struct dirent* e = readdir(d)) {
    out.push_back(std::string(e->d_name) + ":" + std::to_string(e->d_type));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(PosixTest, ReaddirReturnsEveryEntryWithType) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    mkdir(s.path("d").c_str(), 0755);
    // Long names: the listing needs several getdents calls.
    for (int i = 0; i < 400; ++i) {
      std::string name = "d/file_" + std::to_string(i) + "_" + std::string(100, 'n');
      close(open(s.path(name).c_str(), O_CREAT | O_WRONLY, 0644));
    }
    for (int i = 0; i < 10; ++i) {
      mkdir(s.path("d/dir" + std::to_string(i)).c_str(), 0755);
    }
    symlink("target", s.path("d/link").c_str());
    mkfifo(s.path("d/fifo").c_str(), 0644);
    std::vector<std::string> entries = list_with_dtypes(s.path("d"));
    s.value("entry count", entries.size(), "414");
    std::string joined;
    for (auto& e : entries) joined += e + "\n";
    s.note("entries with d_type", render_bytes(joined));
    std::set<std::string> unique(entries.begin(), entries.end());
    s.note("no duplicates", yes_no(unique.size() == entries.size()), "yes");
    s.note("d_type of link/fifo/dir/file",
           std::to_string(std::count(entries.begin(), entries.end(), "link:10")) +
               std::to_string(std::count(entries.begin(), entries.end(), "fifo:1")) +
               std::to_string(std::count(entries.begin(), entries.end(), "dir0:4")) +
               std::to_string(std::count(entries.begin(), entries.end(),
                                         "file_0_" + std::string(100, 'n') + ":8")),
           "1111");
  });
  EXPECT_TRUE(cmp.same());
}

// Entries created and removed (by another process) in the middle of a
// readdir loop: no duplicates, every untouched entry returned once, and a
// fresh listing afterwards shows exactly the new state.
TEST_F(PosixTest, ReaddirWhileEntriesChange) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string dir = root + "/d";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(write_file(dir + "/keep_" + std::to_string(i), ""));
    }
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(write_file(dir + "/del_" + std::to_string(i), ""));
    }
    DIR* d = opendir(dir.c_str());
    ASSERT_NE(d, nullptr);
    std::multiset<std::string> seen;
    int read_before = 0;
    while (read_before < 60) {
      struct dirent* e = readdir(d);
      ASSERT_NE(e, nullptr);
      seen.insert(e->d_name);
      ++read_before;
    }
    int status = run_in_child([&]() {
      for (int i = 0; i < 200; ++i) {
        CHILD_CHECK(unlink((dir + "/del_" + std::to_string(i)).c_str()) == 0);
      }
      for (int i = 0; i < 150; ++i) {
        CHILD_CHECK(write_file(dir + "/new_" + std::to_string(i), ""));
      }
      return 0;
    });
    EXPECT_TRUE(exited_with(status, 0));
    errno = 0;
    while (struct dirent* e = readdir(d)) seen.insert(e->d_name);
    EXPECT_EQ(errno, 0) << strerror(errno);
    for (const std::string& name : seen) {
      EXPECT_EQ(seen.count(name), 1u) << "duplicate entry " << name;
    }
    for (int i = 0; i < 300; ++i) {
      EXPECT_EQ(seen.count("keep_" + std::to_string(i)), 1u)
          << "untouched entry keep_" << i << " missing";
    }
    EXPECT_EQ(seen.count("."), 1u);
    EXPECT_EQ(seen.count(".."), 1u);
    rewinddir(d);
    std::set<std::string> now;
    while (struct dirent* e = readdir(d)) now.insert(e->d_name);
    closedir(d);
    std::set<std::string> want = {".", ".."};
    for (int i = 0; i < 300; ++i) want.insert("keep_" + std::to_string(i));
    for (int i = 0; i < 150; ++i) want.insert("new_" + std::to_string(i));
    EXPECT_EQ(now, want) << "listing after rewinddir";
  });
}

// ---------------------------------------------------------------- links

TEST_F(PosixTest, HardLinks) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    write_file(s.path("f"), "one");
    s.check("link f g", link(s.path("f").c_str(), s.path("g").c_str()), "ok");
    s.stat("nlink 2", "f", "nlink", "nlink=2");
    int fd = s.open("open g", "g", O_WRONLY | O_APPEND, 0, "ok");
    s.write("append via g", fd, "two", "3");
    s.content("seen via f", "f", "\"onetwo\"");
    s.check("link onto existing", link(s.path("f").c_str(), s.path("g").c_str()), "EEXIST");
    s.check("link missing", link(s.path("missing").c_str(), s.path("h").c_str()), "ENOENT");
    mkdir(s.path("d").c_str(), 0755);
    s.check("link a directory", link(s.path("d").c_str(), s.path("dl").c_str()), "EPERM");
    s.check("link into a file", link(s.path("f").c_str(), s.path("g/x").c_str()), "ENOTDIR");
    s.check("link into d", link(s.path("f").c_str(), s.path("d/f").c_str()), "ok");
    s.stat("nlink 3", "g", "nlink", "nlink=3");
    s.check("unlink f", unlink(s.path("f").c_str()), "ok");
    s.stat("nlink 2 after unlink", "g", "nlink", "nlink=2");
    s.content("g keeps data", "g", "\"onetwo\"");
    s.content("d/f keeps data", "d/f", "\"onetwo\"");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, LinkAndRenameAcrossFilesystemsGiveExdev) {
  TmpfsDir shm;
  ASSERT_TRUE(shm.ok());
  std::string v = mount_.path("f"), t = shm.path("t");
  ASSERT_TRUE(write_file(v, "v"));
  ASSERT_TRUE(write_file(t, "t"));
  EXPECT_EQ(link(v.c_str(), shm.path("x").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_EQ(rename(v.c_str(), shm.path("x").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_EQ(link(t.c_str(), mount_.path("x").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_EQ(rename(t.c_str(), mount_.path("x").c_str()), -1);
  EXPECT_EQ(errno, EXDEV);
  EXPECT_EQ(read_file(v).value_or("?"), "v");
  EXPECT_EQ(read_file(t).value_or("?"), "t");
}

TEST_F(PosixTest, SymlinkReadlink) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    auto rl = [&](const char* label, const char* rel, const char* expected) {
      char buf[8192];
      ssize_t n = readlink(s.path(rel).c_str(), buf, sizeof buf);
      s.note(label, n < 0 ? errno_name(errno) : render_bytes({buf, size_t(n)}), expected);
    };
    s.check("symlink dangling", symlink("target/path", s.path("l").c_str()), "ok");
    rl("readlink", "l", "\"target/path\"");
    s.stat("lstat", "l", "type,size", "type=lnk size=11");
    s.open("follow dangling", "l", O_RDONLY, 0, "ENOENT");
    write_file(s.path("t"), "content");
    s.check("symlink to file", symlink("t", s.path("lt").c_str()), "ok");
    s.content("read through link", "lt", "\"content\"");
    s.check("symlink onto existing", symlink("x", s.path("lt").c_str()), "EEXIST");
    rl("readlink on a file", "t", "EINVAL");
    rl("readlink missing", "missing", "ENOENT");
    s.open("O_NOFOLLOW on link", "lt", O_RDONLY | O_NOFOLLOW, 0, "ELOOP");
    std::string long_target(1000, 'x');
    s.check("long target", symlink(long_target.c_str(), s.path("long").c_str()), "ok");
    s.stat("long target size", "long", "size", "size=1000");
    s.check("self loop", symlink("loop", s.path("loop").c_str()), "ok");
    s.open("open loop", "loop", O_RDONLY, 0, "ELOOP");
    mkdir(s.path("d").c_str(), 0755);
    s.check("relative link in subdir", symlink("../t", s.path("d/up").c_str()), "ok");
    s.content("read through ../", "d/up", "\"content\"");
    s.check("unlink link", unlink(s.path("lt").c_str()), "ok");
    s.content("target survives", "t", "\"content\"");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- attributes

std::string times_of(const std::string& path, int flags = AT_SYMLINK_NOFOLLOW) {
  struct stat st;
  if (fstatat(AT_FDCWD, path.c_str(), &st, flags) != 0) return errno_name(errno);
  char buf[96];
  snprintf(buf, sizeof buf, "atime=%ld.%09ld mtime=%ld.%09ld", static_cast<long>(st.st_atim.tv_sec),
           st.st_atim.tv_nsec, static_cast<long>(st.st_mtim.tv_sec), st.st_mtim.tv_nsec);
  return buf;
}

TEST_F(PosixTest, ChmodChownUtimensat) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    std::string f = s.path("f");
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    s.check("chmod 0600", chmod(f.c_str(), 0600), "ok");
    s.stat("mode", "f", "mode", "mode=0600");
    s.check("fchmod 07777", fchmod(fd, 07777), "ok");
    s.stat("mode", "f", "mode", "mode=7777");
    s.check("chmod 0644", chmod(f.c_str(), 0644), "ok");
    s.check("chown 1000:2000", chown(f.c_str(), 1000, 2000), "ok");
    s.stat("owner", "f", "uid,gid", "uid=1000 gid=2000");
    s.check("chown -1:3000", chown(f.c_str(), -1, 3000), "ok");
    s.stat("owner", "f", "uid,gid", "uid=1000 gid=3000");
    s.check("fchown 7:8", fchown(fd, 7, 8), "ok");
    s.stat("owner", "f", "uid,gid", "uid=7 gid=8");
    s.check("symlink", symlink("f", s.path("l").c_str()), "ok");
    s.check("lchown link 5:6", lchown(s.path("l").c_str(), 5, 6), "ok");
    s.stat("link owner", "l", "uid,gid", "uid=5 gid=6");
    s.stat("target owner unchanged", "f", "uid,gid", "uid=7 gid=8");
    s.check("chmod missing", chmod(s.path("missing").c_str(), 0644), "ENOENT");
    s.check("chown missing", chown(s.path("missing").c_str(), 1, 1), "ENOENT");

    struct timespec ts[2] = {{1000, 123456789}, {2000, 987654321}};
    s.check("utimensat explicit", utimensat(AT_FDCWD, f.c_str(), ts, 0), "ok");
    s.note("times exact to the ns", times_of(f), "atime=1000.123456789 mtime=2000.987654321");
    struct timespec omit_atime[2] = {{0, UTIME_OMIT}, {3000, 5}};
    s.check("utimensat UTIME_OMIT atime", utimensat(AT_FDCWD, f.c_str(), omit_atime, 0), "ok");
    s.note("atime kept", times_of(f), "atime=1000.123456789 mtime=3000.000000005");
    struct timespec link_ts[2] = {{4000, 0}, {4000, 0}};
    s.check("utimensat AT_SYMLINK_NOFOLLOW",
            utimensat(AT_FDCWD, s.path("l").c_str(), link_ts, AT_SYMLINK_NOFOLLOW), "ok");
    s.note("link times", times_of(s.path("l")), "atime=4000.000000000 mtime=4000.000000000");
    s.note("target times unchanged", times_of(f), "atime=1000.123456789 mtime=3000.000000005");
    struct timespec before;
    clock_gettime(CLOCK_REALTIME_COARSE, &before);
    struct timespec now_mtime[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    s.check("utimensat UTIME_NOW mtime", futimens(fd, now_mtime), "ok");
    struct timespec after;
    clock_gettime(CLOCK_REALTIME, &after);
    struct stat st;
    fstat(fd, &st);
    double m = st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    double lo = before.tv_sec + before.tv_nsec * 1e-9 - 0.05;
    double hi = after.tv_sec + after.tv_nsec * 1e-9 + 0.05;
    s.note("UTIME_NOW is now", yes_no(m >= lo && m <= hi), "yes");
    s.note("atime still omitted",
           yes_no(st.st_atim.tv_sec == 1000 && st.st_atim.tv_nsec == 123456789), "yes");
    s.check("utimensat missing", utimensat(AT_FDCWD, s.path("missing").c_str(), ts, 0), "ENOENT");
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    s.check("utimensat bad nsec", utimensat(AT_FDCWD, f.c_str(), bad, 0), "EINVAL");
  });
  EXPECT_TRUE(cmp.same());
}

// Which of mtime/ctime an operation moved forward: "m+ c+", "m= c+", ...
std::string time_change(const struct stat& a, const struct stat& b) {
  auto cmp = [](const struct timespec& x, const struct timespec& y) {
    if (y.tv_sec != x.tv_sec) return y.tv_sec > x.tv_sec ? "+" : "-";
    if (y.tv_nsec != x.tv_nsec) return y.tv_nsec > x.tv_nsec ? "+" : "-";
    return "=";
  };
  return std::string("m") + cmp(a.st_mtim, b.st_mtim) + " c" + cmp(a.st_ctim, b.st_ctim);
}

TEST_F(PosixTest, TimestampsFollowChanges) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    std::string f = s.path("f"), d = s.path("d");
    mkdir(d.c_str(), 0755);
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    struct stat a, b;
    // Timestamps come from a coarse clock: let it tick between operations.
    auto step = [&](const char* label, const std::string& path, const std::function<int()>& op,
                    const char* expected) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      stat(path.c_str(), &a);
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      int r = op();
      if (r != 0) {
        s.note(label, "failed: " + errno_name(errno), expected);
        return;
      }
      stat(path.c_str(), &b);
      s.note(label, time_change(a, b), expected);
    };
    step(
        "write", f, [&] { return write(fd, "x", 1) == 1 ? 0 : -1; }, "m+ c+");
    step(
        "pwrite", f, [&] { return pwrite(fd, "y", 1, 100) == 1 ? 0 : -1; }, "m+ c+");
    step(
        "ftruncate grow", f, [&] { return ftruncate(fd, 5000); }, "m+ c+");
    step(
        "ftruncate shrink", f, [&] { return ftruncate(fd, 10); }, "m+ c+");
    step(
        "O_TRUNC", f,
        [&] {
          int t = open(f.c_str(), O_WRONLY | O_TRUNC);
          return t < 0 ? -1 : close(t);
        },
        "m+ c+");
    step(
        "chmod", f, [&] { return chmod(f.c_str(), 0600); }, "m= c+");
    step(
        "chown", f, [&] { return chown(f.c_str(), 1, 1); }, "m= c+");
    step(
        "link", f, [&] { return link(f.c_str(), s.path("g").c_str()); }, "m= c+");
    step(
        "read", f,
        [&] {
          char c;
          return pread(fd, &c, 1, 0) >= 0 ? 0 : -1;
        },
        "m= c=");
    step(
        "create in dir", d,
        [&] {
          int t = open((d + "/x").c_str(), O_CREAT | O_WRONLY, 0644);
          return t < 0 ? -1 : close(t);
        },
        "m+ c+");
    step(
        "unlink in dir", d, [&] { return unlink((d + "/x").c_str()); }, "m+ c+");
    step(
        "mkdir in dir", d, [&] { return mkdir((d + "/sub").c_str(), 0755); }, "m+ c+");
    step(
        "rename within dir", d, [&] { return rename((d + "/sub").c_str(), (d + "/sub2").c_str()); },
        "m+ c+");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- statfs

TEST(PosixStatfsTest, StatfsReportsSizeAndInodesAndTracksUsage) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=64m,nr_inodes=1000"));
  struct statvfs s0;
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &s0), 0) << strerror(errno);
  EXPECT_EQ(s0.f_bsize, 4096u) << "like tmpfs: the page size";
  ASSERT_GT(s0.f_frsize, 0u);
  EXPECT_EQ(s0.f_blocks * s0.f_frsize, 64 * kMiB);
  EXPECT_EQ(s0.f_bfree, s0.f_blocks) << "a new file system is empty";
  EXPECT_EQ(s0.f_bavail, s0.f_bfree);
  EXPECT_EQ(s0.f_files, 1000u);
  EXPECT_GE(s0.f_ffree, 998u);  // the root directory may count
  EXPECT_EQ(s0.f_namemax, 255u);

  std::string f = m.path("f");
  UniqueFd fd(open(f.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(write_all(fd.get(), make_pattern(8 * kMiB, 1)));
  ASSERT_EQ(fsync(fd.get()), 0);
  struct statvfs s1;
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &s1), 0);
  uint64_t used = (s0.f_bfree - s1.f_bfree) * s1.f_frsize;
  EXPECT_GE(used, 8 * kMiB);
  EXPECT_LE(used, 8 * kMiB + 256 * kKiB);
  EXPECT_EQ(s0.f_ffree - s1.f_ffree, 1u) << "one inode for the new file";

  ASSERT_EQ(unlink(f.c_str()), 0);
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &s1), 0);
  EXPECT_LT(s1.f_bfree, s0.f_bfree) << "an open unlinked file keeps its pages";
  fd.reset();
  // The kernel releases the inode asynchronously (FUSE_RELEASE, FORGET).
  bool recovered = poll_until(
      [&] {
        struct statvfs s2;
        return statvfs(m.mountpoint().c_str(), &s2) == 0 && s2.f_bfree == s0.f_bfree &&
               s2.f_ffree == s0.f_ffree;
      },
      std::chrono::seconds(5));
  struct statvfs s2;
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &s2), 0);
  EXPECT_TRUE(recovered) << "after unlink+close: f_bfree " << s2.f_bfree << " (was " << s0.f_bfree
                         << "), f_ffree " << s2.f_ffree << " (was " << s0.f_ffree << ")";
}

TEST_F(PosixTest, NameLengthLimit) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    s.open("255-byte name", std::string(255, 'a'), O_CREAT | O_WRONLY, 0644, "ok");
    s.open("256-byte name", std::string(256, 'b'), O_CREAT | O_WRONLY, 0644, "ENAMETOOLONG");
    s.check("mkdir 256-byte name", mkdir(s.path(std::string(256, 'c')).c_str(), 0755),
            "ENAMETOOLONG");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- sync, fallocate, seek

TEST_F(PosixTest, FsyncAndFdatasync) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    s.write("write", fd, "data", "4");
    s.check("fsync", fsync(fd), "ok");
    s.check("fdatasync", fdatasync(fd), "ok");
    int rfd = s.open("read-only", "f", O_RDONLY, 0, "ok");
    s.check("fsync read-only fd", fsync(rfd), "ok");
    mkdir(s.path("d").c_str(), 0755);
    int dfd = s.open("dir", "d", O_RDONLY | O_DIRECTORY, 0, "ok");
    s.check("fsync dir", fsync(dfd), "ok");
    s.check("syncfs", syncfs(fd), "ok");
    s.content("data", "f", "\"data\"");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, FallocateModes) {
  const std::string data = make_pattern(kMiB, 11);
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([&](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    struct stat st;
    s.check("fallocate 0..1MiB", fallocate(fd, 0, 0, kMiB), "ok");
    fstat(fd, &st);
    s.value("size", st.st_size, "1048576");
    s.note("blocks cover 1MiB", yes_no(st.st_blocks * 512 >= off_t(kMiB)), "yes");
    auto z = pread_some(fd, kMiB, 0);
    s.note("reads as zeros", yes_no(z && z->size() == kMiB && all_zero(*z)), "yes");
    s.check("KEEP_SIZE beyond EOF", fallocate(fd, FALLOC_FL_KEEP_SIZE, kMiB, kMiB), "ok");
    fstat(fd, &st);
    s.value("size kept", st.st_size, "1048576");
    s.note("blocks cover 2MiB", yes_no(st.st_blocks * 512 >= off_t(2 * kMiB)), "yes");
    pwrite_all(fd, data, 0);
    fstat(fd, &st);
    blkcnt_t blocks_before = st.st_blocks;
    s.check("PUNCH_HOLE|KEEP_SIZE 4096+8192",
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192), "ok");
    fstat(fd, &st);
    s.value("size kept after punch", st.st_size, "1048576");
    s.value("blocks freed by punch", blocks_before - st.st_blocks, "16");
    std::string want = data;
    std::fill(want.begin() + 4096, want.begin() + 12288, '\0');
    auto got = pread_some(fd, kMiB, 0);
    s.note("punched range zero, rest intact", yes_no(got && *got == want), "yes");
    s.check("unaligned PUNCH_HOLE 100+4900",
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 4900), "ok");
    std::fill(want.begin() + 100, want.begin() + 5000, '\0');
    got = pread_some(fd, kMiB, 0);
    s.note("unaligned punch exact", yes_no(got && *got == want), "yes");
    s.check("PUNCH_HOLE without KEEP_SIZE", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096),
            "EOPNOTSUPP");
    s.check("punch beyond EOF",
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * kMiB, 4096), "ok");
    s.check("fallocate len 0", fallocate(fd, 0, 0, 0), "EINVAL");
    s.check("fallocate negative offset", fallocate(fd, 0, -1, 10), "EINVAL");
    s.check("fallocate grows the file", fallocate(fd, 0, 2 * kMiB, 4096), "ok");
    s.fstat("size", fd, "size", "size=2101248");
    int rfd = s.open("read-only", "f", O_RDONLY, 0, "ok");
    s.check("fallocate on O_RDONLY fd", fallocate(rfd, 0, 0, 4096), "EBADF");
    s.content("final content", "f");
  });
  EXPECT_TRUE(cmp.same());
}

// tmpfs has no FALLOC_FL_ZERO_RANGE (EOPNOTSUPP); volfs supports it.
TEST_F(PosixTest, FallocateZeroRange) {
  const std::string data = make_pattern(64 * kKiB, 5);
  UniqueFd fd(open(mount_.path("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(write_all(fd.get(), data));
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 1000, 9000), 0) << strerror(errno);
  std::string want = data;
  std::fill(want.begin() + 1000, want.begin() + 10000, '\0');
  EXPECT_EQ(pread_some(fd.get(), 128 * kKiB, 0).value_or("?"), want);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, off_t(64 * kKiB));

  // Past EOF without KEEP_SIZE: the size grows, the new range is zero.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 60000, 10000), 0) << strerror(errno);
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 70000);
  want.resize(70000);
  std::fill(want.begin() + 60000, want.end(), '\0');
  EXPECT_EQ(pread_some(fd.get(), 128 * kKiB, 0).value_or("?"), want);

  // With KEEP_SIZE: the size stays.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 70000, 10000), 0)
      << strerror(errno);
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 70000);
  fd.reset();
}

TEST_F(PosixTest, SeekDataAndHole) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    std::string page = make_pattern(4096, 1);
    s.pwrite("data at 0", fd, page, 0, "4096");
    s.pwrite("data at 1MiB", fd, page, kMiB, "4096");
    s.check("size 2MiB", ftruncate(fd, 2 * kMiB), "ok");
    s.check("fsync", fsync(fd), "ok");
    s.value("SEEK_DATA 0", lseek(fd, 0, SEEK_DATA), "0");
    s.value("SEEK_HOLE 0", lseek(fd, 0, SEEK_HOLE), "4096");
    s.value("SEEK_DATA 4096", lseek(fd, 4096, SEEK_DATA), "1048576");
    s.value("SEEK_DATA 100 into data", lseek(fd, 100, SEEK_DATA), "100");
    s.value("SEEK_HOLE 1MiB", lseek(fd, kMiB, SEEK_HOLE), "1052672");
    s.value("SEEK_DATA after last data", lseek(fd, kMiB + 4096, SEEK_DATA), "ENXIO");
    s.value("SEEK_HOLE in trailing hole", lseek(fd, 1536 * kKiB, SEEK_HOLE), "1572864");
    s.value("SEEK_DATA at EOF", lseek(fd, 2 * kMiB, SEEK_DATA), "ENXIO");
    s.value("SEEK_HOLE at EOF", lseek(fd, 2 * kMiB, SEEK_HOLE), "ENXIO");
    s.value("SEEK_HOLE past EOF", lseek(fd, 3 * kMiB, SEEK_HOLE), "ENXIO");
    s.value("SEEK_DATA negative", lseek(fd, -1, SEEK_DATA), "ENXIO");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- xattrs

TEST_F(PosixTest, UserXattrs) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    std::string f = s.path("f");
    write_file(f, "x");
    auto get = [&](const char* label, const char* name, size_t size, const char* expected) {
      char buf[8192];
      ssize_t n = getxattr(f.c_str(), name, size ? buf : nullptr, size);
      s.note(
          label,
          n < 0 ? errno_name(errno) : (size ? render_bytes({buf, size_t(n)}) : std::to_string(n)),
          expected);
    };
    auto list = [&](const char* label, const std::string& path, const char* expected) {
      char buf[8192];
      ssize_t n = listxattr(path.c_str(), buf, sizeof buf);
      if (n < 0) {
        s.note(label, errno_name(errno), expected);
        return;
      }
      std::vector<std::string> names;
      for (ssize_t i = 0; i < n; i += strlen(buf + i) + 1) {
        // LSMs may add security.* names of their own on either file system.
        if (strncmp(buf + i, "security.", 9) != 0) names.push_back(buf + i);
      }
      std::sort(names.begin(), names.end());
      std::string out;
      for (auto& name : names) out += (out.empty() ? "" : ",") + name;
      s.note(label, out, expected);
    };
    s.check("set user.a", setxattr(f.c_str(), "user.a", "1", 1, 0), "ok");
    get("get user.a", "user.a", 100, "\"1\"");
    get("size query", "user.a", 0, "1");
    s.check("set user.b (empty)", setxattr(f.c_str(), "user.b", "", 0, 0), "ok");
    get("get empty", "user.b", 100, "\"\"");
    std::string big = make_pattern(4000, 2);
    s.check("set user.big (4000 B)", setxattr(f.c_str(), "user.big", big.data(), big.size(), 0),
            "ok");
    get("get user.big", "user.big", 8192, render_bytes(big).c_str());
    get("buffer too small", "user.big", 10, "ERANGE");
    list("list", f, "user.a,user.b,user.big");
    s.check("XATTR_CREATE existing", setxattr(f.c_str(), "user.a", "2", 1, XATTR_CREATE), "EEXIST");
    s.check("XATTR_REPLACE missing", setxattr(f.c_str(), "user.zz", "2", 1, XATTR_REPLACE),
            "ENODATA");
    s.check("XATTR_REPLACE existing", setxattr(f.c_str(), "user.a", "22", 2, XATTR_REPLACE), "ok");
    get("replaced", "user.a", 100, "\"22\"");
    s.check("XATTR_CREATE new", setxattr(f.c_str(), "user.c", "3", 1, XATTR_CREATE), "ok");
    get("get missing", "user.missing", 100, "ENODATA");
    s.check("remove user.a", removexattr(f.c_str(), "user.a"), "ok");
    get("removed", "user.a", 100, "ENODATA");
    s.check("remove missing", removexattr(f.c_str(), "user.a"), "ENODATA");
    list("list after remove", f, "user.b,user.big,user.c");
    mkdir(s.path("d").c_str(), 0755);
    s.check("set on a dir", setxattr(s.path("d").c_str(), "user.d", "dd", 2, 0), "ok");
    list("list dir", s.path("d"), "user.d");
    s.check("set on missing", setxattr(s.path("missing").c_str(), "user.a", "1", 1, 0), "ENOENT");
  });
  EXPECT_TRUE(cmp.same());
}

// volfs keeps only user.*; other namespaces must fail, whatever the errno.
TEST_F(PosixTest, NonUserXattrNamespacesAreRejected) {
  std::string f = mount_.path("f");
  ASSERT_TRUE(write_file(f, "x"));
  for (const char* name : {"trusted.x", "security.x", "nonamespace", "os2.x"}) {
    errno = 0;
    EXPECT_EQ(setxattr(f.c_str(), name, "1", 1, 0), -1) << name << " was accepted";
    EXPECT_NE(errno, 0) << name;
    char buf[16];
    EXPECT_EQ(getxattr(f.c_str(), name, buf, sizeof buf), -1) << name;
  }
}

// ---------------------------------------------------------------- special files

TEST_F(PosixTest, FifoPassesDataBetweenProcesses) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    s.check("mkfifo", mkfifo(s.path("p").c_str(), 0644), "ok");
    s.stat("type", "p", "type,mode,size", "type=fifo mode=0644 size=0");
    s.check("mkfifo again", mkfifo(s.path("p").c_str(), 0644), "EEXIST");
    s.check("mknod S_IFIFO", mknod(s.path("q").c_str(), S_IFIFO | 0600, 0), "ok");
    s.stat("type", "q", "type,mode", "type=fifo mode=0600");
  });
  EXPECT_TRUE(cmp.same());

  std::string fifo = mount_.path("p");
  const std::string msg = make_pattern(200 * kKiB, 9);  // > pipe buffer
  ChildProcess writer;
  writer.start([&]() {
    int fd = open(fifo.c_str(), O_WRONLY);
    CHILD_CHECK(fd >= 0);
    CHILD_CHECK(write_all(fd, msg));
    CHILD_CHECK(close(fd) == 0);
    return 0;
  });
  UniqueFd fd(open(fifo.c_str(), O_RDONLY));
  ASSERT_TRUE(fd.ok()) << strerror(errno);
  std::string got;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof buf)) > 0) got.append(buf, n);
  EXPECT_EQ(n, 0) << strerror(errno);
  fd.reset();
  EXPECT_TRUE(exited_with(writer.wait(), 0));
  EXPECT_EQ(got.size(), msg.size());
  EXPECT_TRUE(got == msg) << "data through the fifo differs";
}

// ---------------------------------------------------------------- limits

TEST(PosixLimitsTest, WritePastSizeLimitGivesEnospcAndKeepsData) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=8m"));
  std::string f = m.path("f");
  UniqueFd fd(open(f.c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  const std::string chunk = make_pattern(kMiB, 4);
  size_t total = 0;
  int err = 0;
  for (int i = 0; i < 16 && err == 0; ++i) {
    size_t off = 0;
    while (off < chunk.size()) {
      ssize_t n = write(fd.get(), chunk.data() + off, chunk.size() - off);
      if (n < 0) {
        err = errno;
        break;
      }
      off += n;
      total += n;
    }
  }
  EXPECT_EQ(err, ENOSPC) << "after " << total << " bytes: " << strerror(err);
  EXPECT_GE(total, 7 * kMiB) << "most of the 8 MiB should be usable";
  EXPECT_LE(total, 8 * kMiB);
  EXPECT_EQ(fsync(fd.get()), 0) << "accepted data must not fail later: " << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, off_t(total)) << "the file keeps what was written";
  std::string want;
  while (want.size() < total) want += chunk;
  want.resize(total);
  EXPECT_TRUE(pread_some(fd.get(), total + 4096, 0).value_or("") == want)
      << "content written before ENOSPC must read back";
  fd.reset();

  ASSERT_EQ(unlink(f.c_str()), 0);
  // Space comes back once the kernel has released the inode.
  bool space_back = poll_until(
      [&] {
        struct statvfs sv;
        return statvfs(m.mountpoint().c_str(), &sv) == 0 && sv.f_bfree * sv.f_frsize >= 7 * kMiB;
      },
      std::chrono::seconds(5));
  EXPECT_TRUE(space_back);
  std::string big = make_pattern(6 * kMiB, 8);
  EXPECT_TRUE(write_file(m.path("g"), big)) << strerror(errno);
  EXPECT_TRUE(read_file(m.path("g")).value_or("") == big);
}

TEST(PosixLimitsTest, NrInodesLimitGivesEnospc) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=64m,nr_inodes=16"));
  struct statvfs sv;
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_files, 16u);
  uint64_t free_inodes = sv.f_ffree;
  EXPECT_GE(free_inodes, 14u);
  EXPECT_LE(free_inodes, 16u);
  int created = 0, err = 0;
  for (int i = 0; i < 40; ++i) {
    int fd = open(m.path("f" + std::to_string(i)).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) {
      err = errno;
      break;
    }
    close(fd);
    ++created;
  }
  EXPECT_EQ(err, ENOSPC);
  EXPECT_EQ(uint64_t(created), free_inodes) << "f_ffree promised " << free_inodes;
  EXPECT_EQ(mkdir(m.path("d").c_str(), 0755), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(symlink("t", m.path("l").c_str()), -1);
  EXPECT_EQ(errno, ENOSPC);
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &sv), 0);
  EXPECT_EQ(sv.f_ffree, 0u);
  ASSERT_EQ(unlink(m.path("f1").c_str()), 0);
  bool reusable = poll_until(
      [&] {
        int fd = open(m.path("again").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0) return false;
        close(fd);
        return true;
      },
      std::chrono::seconds(5));
  EXPECT_TRUE(reusable) << "an unlinked file's inode must be reusable";
}

// ---------------------------------------------------------------- error paths

TEST_F(PosixTest, EisdirEnotdirEnoent) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    mkdir(s.path("d").c_str(), 0755);
    write_file(s.path("f"), "f");
    s.open("dir O_WRONLY", "d", O_WRONLY, 0, "EISDIR");
    s.open("dir O_RDWR", "d", O_RDWR, 0, "EISDIR");
    s.open("dir O_CREAT", "d", O_CREAT | O_WRONLY, 0644, "EISDIR");
    int dfd = s.open("dir O_RDONLY", "d", O_RDONLY, 0, "ok");
    char c;
    s.value("read() on a dir fd", read(dfd, &c, 1), "EISDIR");
    s.value("pread() on a dir fd", pread(dfd, &c, 1, 0), "EISDIR");
    s.open("open through a file", "f/x", O_RDONLY, 0, "ENOTDIR");
    s.open("create through a file", "f/x", O_CREAT | O_WRONLY, 0644, "ENOTDIR");
    s.stat("stat through a file", "f/x", "type", "ENOTDIR");
    s.open("file with trailing slash", "f/", O_RDONLY, 0, "ENOTDIR");
    s.open("missing", "nope", O_RDONLY, 0, "ENOENT");
    s.open("missing dir", "nope/x", O_RDONLY, 0, "ENOENT");
    s.stat("stat missing", "nope", "type", "ENOENT");
    s.open("create with trailing slash", "new/", O_CREAT | O_WRONLY, 0644, "EISDIR");
  });
  EXPECT_TRUE(cmp.same());
}

// ---------------------------------------------------------------- large and sparse

TEST_F(PosixTest, LargeSparseOffsets) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    const off_t k5GiB = 5ll << 30, k1TiB = 1ll << 40;
    int fd = s.open("create", "f", O_CREAT | O_RDWR, 0644, "ok");
    s.pwrite("pwrite at 5 GiB + 3", fd, "five", k5GiB + 3, "4");
    s.pwrite("pwrite at 1 TiB", fd, "tera", k1TiB, "4");
    s.fstat("size", fd, "size", "size=1099511627780");
    s.pread("read at 5 GiB", fd, 8, k5GiB, "\"\\x00\\x00\\x00five\\x00\"");
    s.pread("read at 1 TiB", fd, 8, k1TiB, "\"tera\"");
    s.pread("hole at 4 GiB", fd, 4, 4ll << 30, "\"\\x00\\x00\\x00\\x00\"");
    s.value("SEEK_DATA from 0", lseek(fd, 0, SEEK_DATA), "5368709120");
    s.value("SEEK_DATA past 5 GiB", lseek(fd, k5GiB + 4096, SEEK_DATA), "1099511627776");
    s.check("ftruncate to 2 TiB", ftruncate(fd, 2 * k1TiB), "ok");
    s.fstat("size and blocks", fd, "size,blocks", "size=2199023255552 blocks=16");
    s.check("ftruncate to 5 GiB + 2 (cuts the page)", ftruncate(fd, k5GiB + 2), "ok");
    s.pread("tail", fd, 8, k5GiB, "\"\\x00\\x00\"");
    s.check("grow again", ftruncate(fd, k5GiB + 8), "ok");
    s.pread("cut bytes read as zeros", fd, 8, k5GiB,
            "\"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\"");
  });
  EXPECT_TRUE(cmp.same());
}

// A huge sparse file costs no space: statfs does not move.
TEST_F(PosixTest, TruncateFarBeyondSizeLimitIsSparse) {
  struct statvfs before, after;
  ASSERT_EQ(statvfs(mount_.mountpoint().c_str(), &before), 0);
  UniqueFd fd(open(mount_.path("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(ftruncate(fd.get(), 64ll << 30), 0) << strerror(errno);
  ASSERT_EQ(fsync(fd.get()), 0);
  ASSERT_EQ(statvfs(mount_.mountpoint().c_str(), &after), 0);
  EXPECT_EQ(after.f_bfree, before.f_bfree);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_blocks, 0);
  EXPECT_EQ(st.st_size, 64ll << 30);
}

TEST(PosixLimitsTest, FallocatePastSizeLimitFailsWithoutAllocating) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=8m"));
  struct statvfs before, after;
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &before), 0);
  UniqueFd fd(open(m.path("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  // tmpfs: ENOSPC, and the partial allocation is undone.
  EXPECT_EQ(fallocate(fd.get(), 0, 0, 16 * kMiB), -1);
  EXPECT_EQ(errno, ENOSPC);
  struct stat st;
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  ASSERT_EQ(statvfs(m.mountpoint().c_str(), &after), 0);
  EXPECT_EQ(after.f_bfree, before.f_bfree) << "a failed fallocate must not leak space";
  EXPECT_EQ(fallocate(fd.get(), 0, 0, 4 * kMiB), 0) << strerror(errno);
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, off_t(4 * kMiB));
}

// Space freed by shrinking or punching a file is usable again at once.
TEST(PosixLimitsTest, ShrinkAndPunchGiveSpaceBack) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=8m"));
  UniqueFd fd(open(m.path("f").c_str(), O_CREAT | O_RDWR, 0644));
  ASSERT_TRUE(fd.ok());
  const std::string chunk = make_pattern(kMiB, 12);
  size_t total = 0;
  while (pwrite_all(fd.get(), chunk, total)) total += chunk.size();
  ASSERT_EQ(errno, ENOSPC);
  ASSERT_EQ(ftruncate(fd.get(), 4 * kMiB), 0);
  EXPECT_TRUE(pwrite_all(fd.get(), chunk, 4 * kMiB)) << "after shrink: " << strerror(errno);
  EXPECT_TRUE(pwrite_all(fd.get(), chunk, 5 * kMiB)) << "after shrink: " << strerror(errno);
  // Fill up again, then punch a 2 MiB hole and use it elsewhere.
  total = 6 * kMiB;
  while (pwrite_all(fd.get(), chunk, total)) total += chunk.size();
  ASSERT_EQ(errno, ENOSPC);
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kMiB), 0)
      << strerror(errno);
  EXPECT_TRUE(write_file(m.path("g"), make_pattern(2 * kMiB - 64 * kKiB, 13)))
      << "after punch: " << strerror(errno);
}

// ---------------------------------------------------------------- more calls

TEST_F(PosixTest, OTmpfile) {
  {
    UniqueFd probe(open(mount_.mountpoint().c_str(), O_TMPFILE | O_RDWR, 0600));
    if (!probe.ok() && errno == EOPNOTSUPP) {
      GTEST_SKIP() << "volfs gives EOPNOTSUPP for O_TMPFILE: it has no FUSE_TMPFILE "
                      "handler yet (libfuse's low-level tmpfile, which 3.14 lacked)";
    }
  }
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("O_TMPFILE", ".", O_TMPFILE | O_RDWR, 0600, "ok");
    s.write("write", fd, "anon", "4");
    s.fstat("unnamed", fd, "type,nlink,size", "type=reg nlink=0 size=4");
    s.list("not listed", ".", "");
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    s.check("linkat into the namespace",
            linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, s.path("named").c_str(), AT_SYMLINK_FOLLOW),
            "ok");
    s.content("named", "named", "\"anon\"");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, CopyFileRange) {
  const std::string data = make_pattern(300 * kKiB + 7, 14);
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([&](Scenario& s) {
    write_file(s.path("src"), data);
    int in = s.open("open src", "src", O_RDONLY, 0, "ok");
    int out = s.open("open dst", "dst", O_CREAT | O_WRONLY, 0644, "ok");
    loff_t off_in = 1000, off_out = 5;
    s.value("copy_file_range", copy_file_range(in, &off_in, out, &off_out, 200 * kKiB, 0),
            "204800");
    s.content("copied", "dst");
    auto got = read_file(s.path("dst"));
    s.note("bytes match",
           yes_no(got && got->size() == 5 + 200 * kKiB &&
                  got->substr(5) == data.substr(1000, 200 * kKiB) && all_zero(got->substr(0, 5))),
           "yes");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, FcntlLocksConflictAcrossProcesses) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string f = root + "/lock";
    ASSERT_TRUE(write_file(f, std::string(100, 'l')));
    SyncPipe locked, done;
    ChildProcess holder;
    holder.start([&]() {
      int fd = open(f.c_str(), O_RDWR);
      CHILD_CHECK(fd >= 0);
      struct flock fl = {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      fl.l_start = 0;
      fl.l_len = 50;
      CHILD_CHECK(fcntl(fd, F_SETLK, &fl) == 0);
      CHILD_CHECK(flock(fd, LOCK_EX | LOCK_NB) == 0);
      locked.post();
      CHILD_CHECK(done.wait());
      return 0;
    });
    ASSERT_TRUE(locked.wait());
    UniqueFd fd(open(f.c_str(), O_RDWR));
    ASSERT_TRUE(fd.ok());
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 10;
    fl.l_len = 10;
    EXPECT_EQ(fcntl(fd.get(), F_SETLK, &fl), -1);
    EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << strerror(errno);
    struct flock probe = fl;
    ASSERT_EQ(fcntl(fd.get(), F_GETLK, &probe), 0);
    EXPECT_EQ(probe.l_type, F_WRLCK);
    EXPECT_EQ(probe.l_pid, holder.pid());
    fl.l_start = 60;  // outside the held range
    EXPECT_EQ(fcntl(fd.get(), F_SETLK, &fl), 0) << strerror(errno);
    EXPECT_EQ(flock(fd.get(), LOCK_EX | LOCK_NB), -1);
    EXPECT_EQ(errno, EWOULDBLOCK);
    done.post();
    EXPECT_TRUE(exited_with(holder.wait(), 0));
    // The holder's locks went away with it.
    fl.l_start = 0;
    EXPECT_EQ(fcntl(fd.get(), F_SETLK, &fl), 0) << strerror(errno);
    EXPECT_EQ(flock(fd.get(), LOCK_EX | LOCK_NB), 0) << strerror(errno);
  });
}

TEST_F(PosixTest, ExecutableFileRunsAndIsWriteProtected) {
  auto bin = read_file("/bin/sleep");
  ASSERT_TRUE(bin.has_value());
  std::string exe = mount_.path("sleep");
  ASSERT_TRUE(write_file(exe, *bin));
  ASSERT_EQ(chmod(exe.c_str(), 0755), 0);
  int status = run_in_child([&]() -> int {
    execl(exe.c_str(), "sleep", "0", static_cast<char*>(nullptr));
    child_fail(__FILE__, __LINE__, "execl");
  });
  EXPECT_TRUE(exited_with(status, 0));
  // While it runs, the binary cannot be opened for writing.
  ChildProcess running;
  running.start([&]() -> int {
    execl(exe.c_str(), "sleep", "20", static_cast<char*>(nullptr));
    child_fail(__FILE__, __LINE__, "execl");
  });
  std::string proc_exe = "/proc/" + std::to_string(running.pid()) + "/exe";
  ASSERT_TRUE(poll_until(
      [&] {
        char buf[4096];
        ssize_t n = readlink(proc_exe.c_str(), buf, sizeof buf);
        return n > 0 && std::string(buf, n) == exe;
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(open(exe.c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, ETXTBSY);
  kill(running.pid(), SIGKILL);
  EXPECT_TRUE(killed_by(running.wait(), SIGKILL));
}

TEST_F(PosixTest, TelldirSeekdirResumes) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string dir = root + "/d";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    for (int i = 0; i < 200; ++i) {
      ASSERT_TRUE(write_file(dir + "/e" + std::to_string(i), ""));
    }
    DIR* d = opendir(dir.c_str());
    ASSERT_NE(d, nullptr);
    std::vector<std::string> first;
    long mark = -1;
    std::vector<std::string> after_mark;
    int i = 0;
    while (struct dirent* e = readdir(d)) {
      if (i == 120) mark = telldir(d);
      if (i >= 121) after_mark.push_back(e->d_name);
      first.push_back(e->d_name);
      ++i;
    }
    ASSERT_EQ(first.size(), 202u);
    ASSERT_GE(mark, 0);
    seekdir(d, mark);
    std::vector<std::string> again;
    while (struct dirent* e = readdir(d)) again.push_back(e->d_name);
    closedir(d);
    EXPECT_EQ(again, after_mark) << "seekdir(telldir()) must resume at the same entry";
  });
}

// ---------------------------------------------------------------- inode lifetime

TEST_F(PosixTest, RenameOverOpenFileKeepsTheOldOneAlive) {
  for_both_roots(mount_, [](const std::string& root) {
    std::string victim = root + "/victim", winner = root + "/winner";
    ASSERT_TRUE(write_file(victim, "old contents"));
    ASSERT_TRUE(write_file(winner, "new"));
    SyncPipe opened, renamed;
    ChildProcess child;
    child.start([&]() {
      int fd = open(victim.c_str(), O_RDWR);
      CHILD_CHECK(fd >= 0);
      opened.post();
      CHILD_CHECK(renamed.wait());
      auto data = pread_some(fd, 100, 0);
      CHILD_CHECK(data && *data == "old contents");
      CHILD_CHECK(pwrite(fd, "OLD", 3, 0) == 3);
      struct stat st;
      CHILD_CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0);
      return 0;
    });
    ASSERT_TRUE(opened.wait());
    ASSERT_EQ(rename(winner.c_str(), victim.c_str()), 0);
    renamed.post();
    EXPECT_TRUE(exited_with(child.wait(), 0));
    EXPECT_EQ(read_file(victim).value_or("?"), "new");
  });
}

TEST_F(PosixTest, OperationsInARemovedDirectory) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    s.check("mkdir", mkdir(s.path("d").c_str(), 0755), "ok");
    int dfd = s.open("open dir", "d", O_RDONLY | O_DIRECTORY, 0, "ok");
    s.check("rmdir while open", rmdir(s.path("d").c_str()), "ok");
    s.check("create via removed dir fd", openat(dfd, "x", O_CREAT | O_WRONLY | O_CLOEXEC, 0644),
            "ENOENT");
    s.check("mkdir via removed dir fd", mkdirat(dfd, "sub", 0755), "ENOENT");
    struct stat st;
    s.check("fstat removed dir", fstat(dfd, &st), "ok");
    s.value("nlink of removed dir", st.st_nlink, "0");
    s.check("fchmod removed dir", fchmod(dfd, 0700), "ok");
    char buf[4096];
    s.value("getdents of removed dir", syscall(SYS_getdents64, dfd, buf, sizeof buf), "ENOENT");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PosixTest, ODirectReadWrite) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) {
    int fd = s.open("O_DIRECT", "f", O_CREAT | O_RDWR | O_DIRECT, 0644, "ok");
    if (fd < 0) return;
    void* mem = nullptr;
    constexpr size_t kLen = size_t{3} * 4096;
    if (posix_memalign(&mem, 4096, kLen) != 0) return;
    std::string data = make_pattern(kLen, 40);
    memcpy(mem, data.data(), data.size());
    s.value("aligned pwrite", pwrite(fd, mem, kLen, 4096), "12288");
    memset(mem, 0, kLen);
    s.value("aligned pread", pread(fd, mem, kLen, 4096), "12288");
    s.note("data", yes_no(memcmp(mem, data.data(), data.size()) == 0), "yes");
    free(mem);
    s.content("buffered view", "f");
  });
  EXPECT_TRUE(cmp.same());
}

// Data, metadata and inode numbers must live in the daemon, not only in the
// kernel's caches: drop the page cache of the file (fadvise) and, where the
// system allows it, all unused dentries and inodes (FUSE FORGET), then look
// again.
TEST_F(PosixTest, EverythingSurvivesDroppedKernelCaches) {
  const std::string data = make_pattern(2 * kMiB + 123, 41);
  const std::string mapped = make_pattern(64 * kKiB, 42);
  std::string f = mount_.path("f"), g = mount_.path("g"), d = mount_.path("d");
  ASSERT_TRUE(write_file(f, data));
  ASSERT_EQ(mkdir(d.c_str(), 0750), 0);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(write_file(d + "/e" + std::to_string(i), "e"));
  ASSERT_EQ(symlink("f", mount_.path("l").c_str()), 0);
  ASSERT_EQ(setxattr(f.c_str(), "user.k", "v", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(chown(f.c_str(), 123, 456), 0);
  struct timespec ts[2] = {{111, 1}, {222, 2}};
  ASSERT_EQ(utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  {
    UniqueFd fd(open(g.c_str(), O_CREAT | O_RDWR, 0644));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(ftruncate(fd.get(), mapped.size()), 0);
    void* p = mmap(nullptr, mapped.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    memcpy(p, mapped.data(), mapped.size());
    EXPECT_EQ(msync(p, mapped.size(), MS_SYNC), 0);
    munmap(p, mapped.size());
  }
  struct stat before;
  ASSERT_EQ(stat(f.c_str(), &before), 0);

  for (const std::string& path : {f, g}) {
    UniqueFd fd(open(path.c_str(), O_RDONLY));
    ASSERT_TRUE(fd.ok());
    EXPECT_EQ(fsync(fd.get()), 0);
    EXPECT_EQ(posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  }
  bool dropped = false;
  {
    // Dentries and inodes (2), system-wide: FUSE sends FORGET for ours.
    UniqueFd drop(open("/proc/sys/vm/drop_caches", O_WRONLY));
    if (drop.ok()) dropped = write(drop.get(), "2", 1) == 1;
  }
  if (!dropped) std::printf("note: cannot write drop_caches; page cache dropped only\n");

  EXPECT_TRUE(read_file(f).value_or("") == data) << "written data lost";
  EXPECT_TRUE(read_file(g).value_or("") == mapped) << "mmap-stored data lost";
  struct stat after;
  ASSERT_EQ(stat(f.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "inode number changed after FORGET";
  EXPECT_EQ(after.st_uid, 123u);
  EXPECT_EQ(after.st_gid, 456u);
  EXPECT_EQ(after.st_mtim.tv_sec, 222);
  EXPECT_EQ(after.st_mtim.tv_nsec, 2);
  EXPECT_EQ(after.st_size, before.st_size);
  char v[8];
  EXPECT_EQ(getxattr(f.c_str(), "user.k", v, sizeof v), 1);
  char target[16];
  EXPECT_EQ(readlink(mount_.path("l").c_str(), target, sizeof target), 1);
  int entries = 0;
  if (DIR* dir = opendir(d.c_str())) {
    while (readdir(dir)) ++entries;
    closedir(dir);
  }
  EXPECT_EQ(entries, 52);
  struct stat dst;
  ASSERT_EQ(stat(d.c_str(), &dst), 0);
  EXPECT_EQ(dst.st_mode & 07777, 0750u);
}

// Inode numbers are unique among live files, and hard links share one.
TEST_F(PosixTest, InodeNumbersAreUnique) {
  std::set<ino_t> seen;
  struct stat st;
  ASSERT_EQ(stat(mount_.mountpoint().c_str(), &st), 0);
  seen.insert(st.st_ino);
  for (int i = 0; i < 100; ++i) {
    std::string p = mount_.path("f" + std::to_string(i));
    if (i % 10 == 0) {
      ASSERT_EQ(mkdir(p.c_str(), 0755), 0);
    } else {
      ASSERT_TRUE(write_file(p, ""));
    }
    ASSERT_EQ(lstat(p.c_str(), &st), 0);
    EXPECT_TRUE(seen.insert(st.st_ino).second) << p << " reuses inode " << st.st_ino;
  }
  ASSERT_EQ(link(mount_.path("f1").c_str(), mount_.path("h").c_str()), 0);
  struct stat a, b;
  ASSERT_EQ(stat(mount_.path("f1").c_str(), &a), 0);
  ASSERT_EQ(stat(mount_.path("h").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_dev, b.st_dev);
}

}  // namespace
}  // namespace volfs::test
