// Unit tests of the setuid/setgid clearing rules (against what tmpfs does,
// tests/integration/perm_test.cc) and of reading a caller's credentials.
#include "privileges.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace volfs::core {
namespace {

constexpr gid_t kFileGroup = 1234;

Credentials nobody() { return Credentials{false, {65534}}; }
Credentials member() { return Credentials{false, {65534, kFileGroup}}; }
Credentials capable() { return Credentials{true, {0}}; }

mode_t dropped(mode_t perm, PrivilegeKill why, const Credentials& who) {
  return privileges_dropped(S_IFREG | perm, kFileGroup, why, who);
}

TEST(PrivilegesTest, AModificationByAnUnprivilegedCallerClearsSetuidAndExecutableSetgid) {
  EXPECT_EQ(dropped(06777, PrivilegeKill::kModify, nobody()), S_ISUID | S_ISGID);
  EXPECT_EQ(dropped(04777, PrivilegeKill::kModify, member()), S_ISUID);
  EXPECT_EQ(dropped(02777, PrivilegeKill::kModify, member()), S_ISGID);
  EXPECT_EQ(dropped(0777, PrivilegeKill::kModify, nobody()), 0u);
}

TEST(PrivilegesTest, SetgidWithoutGroupExecuteGoesOnlyForCallersOutsideTheGroup) {
  EXPECT_EQ(dropped(02767, PrivilegeKill::kModify, nobody()), S_ISGID);
  EXPECT_EQ(dropped(02767, PrivilegeKill::kModify, member()), 0u);
  EXPECT_EQ(dropped(02767, PrivilegeKill::kChown, nobody()), S_ISGID);
  EXPECT_EQ(dropped(02767, PrivilegeKill::kChown, capable()), 0u);
}

TEST(PrivilegesTest, CapFsetidKeepsBothOnModificationButNotSetuidOnChown) {
  EXPECT_EQ(dropped(06777, PrivilegeKill::kModify, capable()), 0u);
  EXPECT_EQ(dropped(06755, PrivilegeKill::kChown, capable()), S_ISUID | S_ISGID);
  EXPECT_EQ(dropped(04755, PrivilegeKill::kChown, capable()), S_ISUID);
}

TEST(PrivilegesTest, OnlyRegularFilesLoseThem) {
  EXPECT_EQ(privileges_dropped(S_IFDIR | 02777, kFileGroup, PrivilegeKill::kChown, nobody()), 0u);
  EXPECT_EQ(privileges_dropped(S_IFDIR | 06777, kFileGroup, PrivilegeKill::kModify, nobody()), 0u);
  EXPECT_EQ(dropped(06777, PrivilegeKill::kNone, nobody()), 0u);
}

TEST(PrivilegesTest, ParsesCapEffAndGroupsOfProcStatus) {
  auto c = parse_proc_status(
      "Name:\tsh\nGroups:\t4 24 27 \nCapInh:\t0000000000000000\n"
      "CapEff:\t0000000000000010\nCapBnd:\t000001ffffffffff\n",
      100);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(c->cap_fsetid);
  EXPECT_EQ(c->groups, (std::vector<gid_t>{100, 4, 24, 27}));
  auto none = parse_proc_status("Groups:\t\nCapEff:\t00000000000000ef\n", 7);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->cap_fsetid);  // bit 4 is clear in 0xef
  EXPECT_EQ(none->groups, (std::vector<gid_t>{7}));
}

TEST(PrivilegesTest, RejectsStatusWithoutAReadableCapEff) {
  EXPECT_FALSE(parse_proc_status("", 0));
  EXPECT_FALSE(parse_proc_status("CapEff:\tzz\n", 0));
  EXPECT_FALSE(parse_proc_status("CapEffective:\t10\n", 0));
}

TEST(PrivilegesTest, ReadsThisProcessAndFallsBackSafelyWithoutOne) {
  Credentials self = read_credentials(getpid(), geteuid(), getegid());
  EXPECT_EQ(self.groups.front(), getegid());
  // Root here has CAP_FSETID; anyone else normally has not.
  EXPECT_EQ(self.cap_fsetid, geteuid() == 0);
  Credentials unknown = read_credentials(0, 65534, 65534);
  EXPECT_FALSE(unknown.cap_fsetid);
  EXPECT_EQ(unknown.groups, (std::vector<gid_t>{65534}));
  EXPECT_TRUE(read_credentials(0, 0, 0).cap_fsetid);
}

}  // namespace
}  // namespace volfs::core
