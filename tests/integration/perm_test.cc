// perm_test.cc: ownership and permission semantics of volfs for root and for
// an unprivileged client (uid/gid 65534) under allow_other and
// default_permissions, compared call by call with tmpfs.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include <volfs/volfs.h>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "tmpfs_compare.h"

namespace volfs::test {
namespace {

constexpr gid_t kOtherGroup = 1234;  // neither root's nor nobody's

class PermTest : public MountTest {
 protected:
  std::string mount_options() const override { return "size=64m,allow_other,default_permissions"; }
  void SetUp() override {
    umask(022);
    MountTest::SetUp();
  }
};

// The tree every permission scenario starts from, made by root.
void make_tree(Scenario& s) {
  auto ok = [&](const char* label, long ret) { s.check(label, ret, "ok"); };
  auto file = [&](const char* rel, const char* data, mode_t mode) {
    ok(rel, write_file(s.path(rel), data) ? 0 : -1);
    ok(rel, chmod(s.path(rel).c_str(), mode));
  };
  auto dir = [&](const char* rel, mode_t mode) {
    ok(rel, mkdir(s.path(rel).c_str(), 0700));
    ok(rel, chmod(s.path(rel).c_str(), mode));
  };
  ok("chmod root 0755", chmod(s.root().c_str(), 0755));
  dir("private", 0700);
  file("private/f", "p", 0644);
  file("secret", "secret", 0600);
  file("open", "open", 0644);
  file("shared", "shared", 0666);
  dir("pub", 0777);
  dir("sticky", 01777);
  file("sticky/rootfile", "r", 0666);
  file("suid", "s", 04777);
  file("sgid", "g", 02777);
  dir("sg", 0777);
  ok("chown sg", chown(s.path("sg").c_str(), 0, kOtherGroup));
  ok("chmod sg 02777", chmod(s.path("sg").c_str(), 02777));
}

TEST_F(PermTest, RootCreatesFilesOwnedByRootAndInheritsSetgidGroup) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run(make_tree);
  cmp.run([](Scenario& s) {
    s.stat("root's file", "open", "uid,gid,mode", "uid=0 gid=0 mode=0644");
    s.open("create in setgid dir", "sg/f", O_CREAT | O_WRONLY, 0644, "ok");
    s.stat("file gets the dir's group", "sg/f", "uid,gid,mode", "uid=0 gid=1234 mode=0644");
    s.check("mkdir in setgid dir", mkdir(s.path("sg/sub").c_str(), 0755), "ok");
    s.stat("subdir inherits group and setgid", "sg/sub", "uid,gid,mode",
           "uid=0 gid=1234 mode=2755");
    s.check("mkdir in sub", mkdir(s.path("sg/sub/deeper").c_str(), 0700), "ok");
    s.stat("and so on down", "sg/sub/deeper", "gid,mode", "gid=1234 mode=2700");
    s.check("mkfifo in setgid dir", mkfifo(s.path("sg/p").c_str(), 0644), "ok");
    s.stat("fifo gets the group", "sg/p", "gid", "gid=1234");
    s.check("symlink in setgid dir", symlink("x", s.path("sg/l").c_str()), "ok");
    s.stat("symlink gets the group", "sg/l", "gid", "gid=1234");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PermTest, NonRootClientGetsEaccesWithoutPermission) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run(make_tree);
  cmp.run_as(kNobody, [](Scenario& s) {
    s.open("read 0600 root file", "secret", O_RDONLY, 0, "EACCES");
    s.open("write 0644 root file", "open", O_WRONLY, 0, "EACCES");
    s.open("O_TRUNC 0644 root file", "open", O_RDONLY | O_TRUNC, 0, "EACCES");
    s.content("read 0644 root file", "open", "\"open\"");
    s.stat("stat inside 0700 dir", "private/f", "type", "EACCES");
    s.list("list 0700 dir", "private", "EACCES");
    s.open("open inside 0700 dir", "private/f", O_RDONLY, 0, "EACCES");
    s.stat("stat the 0700 dir itself", "private", "type,mode", "type=dir mode=0700");
    s.open("create in 0755 root dir", "x", O_CREAT | O_WRONLY, 0644, "EACCES");
    s.check("mkdir in 0755 root dir", mkdir(s.path("d").c_str(), 0755), "EACCES");
    s.check("unlink in 0755 root dir", unlink(s.path("open").c_str()), "EACCES");
    s.check("rename in 0755 root dir", rename(s.path("open").c_str(), s.path("open2").c_str()),
            "EACCES");
    s.check("symlink in 0755 root dir", symlink("x", s.path("l").c_str()), "EACCES");
    s.check("truncate 0600 root file", truncate(s.path("secret").c_str(), 0), "EACCES");
    s.check("access(W_OK) on 0644", access(s.path("open").c_str(), W_OK), "EACCES");
    s.check("access(R_OK) on 0644", access(s.path("open").c_str(), R_OK), "ok");
    char buf[16];
    s.value("getxattr on unreadable file",
            getxattr(s.path("secret").c_str(), "user.x", buf, sizeof buf), "EACCES");
    s.check("setxattr on unwritable file", setxattr(s.path("open").c_str(), "user.x", "1", 1, 0),
            "EACCES");
  });
  // Nothing changed.
  cmp.run([](Scenario& s) {
    s.content("secret intact", "secret", "\"secret\"");
    s.content("open intact", "open", "\"open\"");
    s.list("root listing", ".", "open private/ pub/ secret sg/ sgid shared sticky/ suid");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PermTest, NewFilesBelongToTheCallingUser) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run(make_tree);
  cmp.run_as(kNobody, [](Scenario& s) {
    s.open("create in 0777 dir", "pub/mine", O_CREAT | O_WRONLY, 0644, "ok");
    s.stat("owned by caller", "pub/mine", "uid,gid,mode", "uid=65534 gid=65534 mode=0644");
    s.check("mkdir", mkdir(s.path("pub/mydir").c_str(), 0777), "ok");
    s.stat("dir owned by caller", "pub/mydir", "uid,gid,mode", "uid=65534 gid=65534 mode=0755");
    s.check("symlink", symlink("mine", s.path("pub/mylink").c_str()), "ok");
    s.stat("link owned by caller", "pub/mylink", "uid,gid", "uid=65534 gid=65534");
    s.check("mkfifo", mkfifo(s.path("pub/myfifo").c_str(), 0600), "ok");
    s.stat("fifo owned by caller", "pub/myfifo", "uid,gid", "uid=65534 gid=65534");
    s.open("create in setgid dir", "sg/mine", O_CREAT | O_WRONLY, 0640, "ok");
    s.stat("group from setgid dir", "sg/mine", "uid,gid,mode", "uid=65534 gid=1234 mode=0640");
    s.check("mkdir in setgid dir", mkdir(s.path("sg/mysub").c_str(), 0750), "ok");
    s.stat("subdir inherits setgid", "sg/mysub", "uid,gid,mode", "uid=65534 gid=1234 mode=2750");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PermTest, OwnershipChangesNeedPrivilege) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run(make_tree);
  cmp.run_as(kNobody, [](Scenario& s) {
    s.open("create own file", "pub/mine", O_CREAT | O_WRONLY, 0644, "ok");
    s.check("chown own file to root", chown(s.path("pub/mine").c_str(), 0, 0), "EPERM");
    s.check("chgrp own file to a foreign group", chown(s.path("pub/mine").c_str(), -1, kOtherGroup),
            "EPERM");
    s.check("chown own file to self (no-op)", chown(s.path("pub/mine").c_str(), 65534, 65534),
            "ok");
    s.check("chown root's file", chown(s.path("open").c_str(), 65534, 65534), "EPERM");
    s.check("chmod root's file", chmod(s.path("open").c_str(), 0777), "EPERM");
    s.check("chmod own file", chmod(s.path("pub/mine").c_str(), 0600), "ok");
    s.stat("mode", "pub/mine", "mode", "mode=0600");
    s.check("chmod own file setgid (own group)", chmod(s.path("pub/mine").c_str(), 02755), "ok");
    s.stat("setgid kept", "pub/mine", "mode", "mode=2755");
    s.open("create in setgid dir", "sg/mine", O_CREAT | O_WRONLY, 0644, "ok");
    s.check("chmod setgid, not in the file's group", chmod(s.path("sg/mine").c_str(), 02755), "ok");
    s.stat("setgid silently dropped", "sg/mine", "mode,gid", "mode=0755 gid=1234");
    struct timespec ts[2] = {{1000, 0}, {2000, 0}};
    s.check("utimensat explicit on root's file",
            utimensat(AT_FDCWD, s.path("shared").c_str(), ts, 0), "EPERM");
    s.check("utimensat UTIME_NOW on root's writable file",
            utimensat(AT_FDCWD, s.path("shared").c_str(), nullptr, 0), "ok");
    s.check("utimensat UTIME_NOW on root's read-only file",
            utimensat(AT_FDCWD, s.path("open").c_str(), nullptr, 0), "EACCES");
    s.check("utimensat explicit on own file",
            utimensat(AT_FDCWD, s.path("pub/mine").c_str(), ts, 0), "ok");
    s.check("unlink root's file in sticky dir", unlink(s.path("sticky/rootfile").c_str()), "EPERM");
    s.check("rename root's file in sticky dir",
            rename(s.path("sticky/rootfile").c_str(), s.path("sticky/x").c_str()), "EPERM");
    s.open("create in sticky dir", "sticky/mine", O_CREAT | O_WRONLY, 0644, "ok");
    s.check("unlink own file in sticky dir", unlink(s.path("sticky/mine").c_str()), "ok");
  });
  cmp.run([](Scenario& s) {
    s.stat("root's file untouched", "open", "uid,gid,mode", "uid=0 gid=0 mode=0644");
    s.content("sticky file kept", "sticky/rootfile", "\"r\"");
  });
  EXPECT_TRUE(cmp.same());
}

TEST_F(PermTest, WriteByNonOwnerClearsSetuidAndSetgid) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run(make_tree);
  cmp.run([](Scenario& s) {
    s.stat("setuid before", "suid", "mode", "mode=4777");
    s.stat("setgid before", "sgid", "mode", "mode=2777");
  });
  cmp.run_as(kNobody, [](Scenario& s) {
    int fd = s.open("open setuid file for writing", "suid", O_WRONLY, 0, "ok");
    s.write("write", fd, "x", "1");
    s.stat("setuid cleared", "suid", "mode", "mode=0777");
    fd = s.open("open setgid file for writing", "sgid", O_WRONLY, 0, "ok");
    s.write("write", fd, "y", "1");
    s.stat("setgid cleared", "sgid", "mode", "mode=0777");
  });
  cmp.run([](Scenario& s) {
    s.check("chmod 04755 again", chmod(s.path("suid").c_str(), 04777), "ok");
    s.check("truncate by root (owner)", truncate(s.path("suid").c_str(), 0), "ok");
    s.stat("root truncating keeps setuid? (as tmpfs)", "suid", "mode");
  });
  cmp.run_as(kNobody, [](Scenario& s) {
    s.check("truncate by non-owner", truncate(s.path("suid").c_str(), 10), "ok");
    s.stat("setuid cleared by truncate", "suid", "mode", "mode=0777");
  });
  EXPECT_TRUE(cmp.same());
}

// Every kind of change that clears setuid/setgid, on each combination of
// the bits, by root and by nobody: the daemon clears them itself under
// FUSE_CAP_HANDLE_KILLPRIV_V2 (fs/core/privileges.h), in both io modes.
TEST_F(PermTest, PrivilegesGoAsOnTmpfsForEveryKindOfChange) {
  static constexpr mode_t kModes[] = {06777, 04777, 02777, 02767};
  static constexpr const char* kChanges[] = {"write",     "trunc", "ftrunc", "falloc", "rootw",
                                             "roottrunc", "chown", "chgrp",  "chown-1"};
  auto name = [](const char* change, mode_t m) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%04o", change, static_cast<unsigned>(m));
    return std::string(buf);
  };
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([&](Scenario& s) {
    s.check("chmod root 0777", chmod(s.root().c_str(), 0777), "ok");
    for (mode_t m : kModes) {
      for (const char* c : kChanges) {
        std::string f = name(c, m);
        s.check(f, write_file(s.path(f), "data") ? 0 : -1, "ok");
        s.check(f + " chmod", chmod(s.path(f).c_str(), m), "ok");
      }
    }
  });
  cmp.run_as(kNobody, [&](Scenario& s) {
    for (mode_t m : kModes) {
      int fd = s.open("open for write", name("write", m), O_WRONLY, 0, "ok");
      s.pwrite("write", fd, "x", 0, "1");
      s.open("open O_TRUNC, no write", name("trunc", m), O_WRONLY | O_TRUNC, 0, "ok");
      s.check("truncate", truncate(s.path(name("ftrunc", m)).c_str(), 2), "ok");
      fd = s.open("open for fallocate", name("falloc", m), O_WRONLY, 0, "ok");
      s.check("fallocate", fallocate(fd, 0, 0, 8192), "ok");
    }
  });
  cmp.run([&](Scenario& s) {
    for (mode_t m : kModes) {
      int fd = s.open("root opens for write", name("rootw", m), O_WRONLY, 0, "ok");
      s.pwrite("root writes", fd, "x", 0, "1");
      s.open("root O_TRUNC", name("roottrunc", m), O_WRONLY | O_TRUNC, 0, "ok");
      s.check("chown", chown(s.path(name("chown", m)).c_str(), 1, 1), "ok");
      s.check("chgrp", chown(s.path(name("chgrp", m)).c_str(), static_cast<uid_t>(-1), 1), "ok");
      s.check(
          "chown -1 -1",
          chown(s.path(name("chown-1", m)).c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1)),
          "ok");
    }
    for (mode_t m : kModes) {
      for (const char* c : kChanges) s.stat("after", name(c, m), "mode,size,uid,gid");
    }
  });
  EXPECT_TRUE(cmp.same());
}

// The bits set on a file already open for writing go at the next write
// through that open file (passthrough included), as `install -m 4755` or
// `cp -p` by a user would see; setgid stays for a writer in the group when
// the file is not group-executable.
TEST_F(PermTest, BitsSetOnAnOpenFileGoAtItsNextWrite) {
  TmpfsComparison cmp(mount_.mountpoint());
  cmp.run([](Scenario& s) { s.check("chmod root 0777", chmod(s.root().c_str(), 0777), "ok"); });
  cmp.run_as(kNobody, [](Scenario& s) {
    for (mode_t m : {06777, 02767, 04755}) {
      std::string f = "own" + std::to_string(m);
      int fd = s.open("create", f, O_CREAT | O_RDWR, 0666, "ok");
      s.pwrite("first write", fd, "a", 0, "1");
      s.check("fchmod", fchmod(fd, m), "ok");
      s.fstat("set", fd, "mode");
      s.pwrite("second write", fd, "b", 1, "1");
      s.fstat("after the write", fd, "mode");
      s.stat("by path", f, "mode,size");
    }
  });
  EXPECT_TRUE(cmp.same());
}

// In passthrough, a write(2) reaches the store without the daemon, and under
// KILLPRIV_V2 the kernel no longer asks for security.capability before each
// one: once it knows a file has neither capability nor setuid/setgid, a
// hundred writes cost the daemon no request at all.
TEST_F(PermTest, WritesInPassthroughSendTheDaemonNoRequest) {
  if (!passthrough()) GTEST_SKIP() << "cached io mode: every write is a request";
  std::string path = mount_.path("quiet");
  int fd = open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  char page[4096] = {1};
  ASSERT_EQ(pwrite(fd, page, sizeof page, 0), 4096);  // the kernel learns "no privileges" here
  auto requests = [&] {
    volfs_stats st{};
    EXPECT_EQ(ioctl(fd, VOLFS_IOC_STATS, &st), 0) << strerror(errno);
    return st.requests;
  };
  const uint64_t before = requests();
  for (int k = 0; k < 100; ++k) {
    ASSERT_EQ(pwrite(fd, page, sizeof page, static_cast<off_t>(k) * 4096), 4096);
  }
  const uint64_t after = requests();
  close(fd);
  EXPECT_EQ(after - before, 1u) << "requests during 100 pwrites, besides the second STATS";
}

}  // namespace
}  // namespace volfs::test
