// Unit tests of the mountinfo line parser: optional tags, escapes, bad lines.
#include "mountinfo.h"

#include <gtest/gtest.h>

namespace volfs::core {
namespace {

TEST(MountinfoTest, ParsesFieldsAroundTheOptionalTags) {
  auto e = parse_mountinfo_line(
      "812 30 0:77 / /tmp/a\\040b/mnt rw,nosuid,relatime shared:1 master:2 - fuse.volfs myvol "
      "rw,user_id=0");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->mount_id, 812);
  EXPECT_EQ(e->device, "0:77");
  EXPECT_EQ(e->mount_point, "/tmp/a b/mnt");
  EXPECT_EQ(e->fs_type, "fuse.volfs");
  EXPECT_EQ(e->source, "myvol");
  auto plain = parse_mountinfo_line("25 1 8:1 / / rw - ext4 /dev/sda1 rw");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->mount_point, "/");
  EXPECT_EQ(plain->fs_type, "ext4");
}

TEST(MountinfoTest, RejectsMalformedLines) {
  EXPECT_FALSE(parse_mountinfo_line(""));
  EXPECT_FALSE(parse_mountinfo_line("25 1 8:1 / / rw ext4 /dev/sda1 rw"));   // no separator
  EXPECT_FALSE(parse_mountinfo_line("x 1 8:1 / / rw - ext4 /dev/sda1 rw"));  // bad id
  EXPECT_FALSE(parse_mountinfo_line("25 1 8:1 / / rw - ext4"));              // no source
}

TEST(MountinfoTest, ReadsThisProcessesMounts) {
  auto all = read_mountinfo();
  ASSERT_FALSE(all.empty());
  EXPECT_TRUE(std::any_of(all.begin(), all.end(), [](auto& m) { return m.mount_point == "/"; }));
}

}  // namespace
}  // namespace volfs::core
