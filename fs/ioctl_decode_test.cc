// Unit tests of decode_ioctl: each errno of ioctl_decode.h and its precedence, and that a
// decoded request carries exactly the caller's struct. fs/ioctl_decode_fuzz.cc goes further.
#include "ioctl_decode.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

namespace volfs {
namespace {

template <class T>
IoctlRequest decode(unsigned cmd, const T& in, bool on_open_file = true) {
  return decode_ioctl(cmd, on_open_file, &in, sizeof(in), sizeof(in));
}

volfs_range_batch make_batch(uint32_t count) {
  volfs_range_batch b{};
  b.count = count;
  for (uint32_t k = 0; k < VOLFS_BATCH_MAX; ++k) b.ranges[k] = {4096 * uint64_t{k}, 4096, 0, 0};
  return b;
}

TEST(IoctlDecodeTest, StatsIsOutputOnlyOfAnyVersionAndWorksOnAnyFile) {
  volfs_stats out{};
  IoctlRequest r = decode_ioctl(VOLFS_IOC_STATS, /*on_open_file=*/false, nullptr, 0, sizeof(out));
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.cmd, VOLFS_IOC_STATS);
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_STATS, false, nullptr, 0, sizeof(out) - 1).err, EINVAL);
  // Version 1's smaller command of old clients, and a newer client's larger one.
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_STATS_V1, false, nullptr, 0, VOLFS_STATS_V1_SIZE).err, 0);
  const unsigned bigger = _IOC(_IOC_READ, VOLFS_IOC_MAGIC, 4, sizeof(out) + 64);
  EXPECT_EQ(decode_ioctl(bigger, false, nullptr, 0, sizeof(out) + 64).err, 0);
  EXPECT_TRUE(is_stats(bigger));
  EXPECT_FALSE(is_stats(_IOC(_IOC_READ, VOLFS_IOC_MAGIC, 4, VOLFS_STATS_V1_SIZE - 8)));
}

TEST(IoctlDecodeTest, PurgeCopiesItsInputAndWorksOnAnyFile) {
  volfs_purge p{.bytes = 12345, .purged = 0, .reserved = {}};
  IoctlRequest r = decode(VOLFS_IOC_PURGE, p, /*on_open_file=*/false);
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.purge.bytes, 12345u);
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_PURGE, false, &p, sizeof(p) - 1, sizeof(p)).err, EINVAL);
}

TEST(IoctlDecodeTest, UnknownCommandsAndPerFileCommandsElsewhereAreNotTty) {
  volfs_range range{};
  EXPECT_EQ(decode(_IOWR('X', 1, volfs_range), range).err, ENOTTY);
  EXPECT_EQ(decode(_IOWR(VOLFS_IOC_MAGIC, 9, volfs_range), range).err, ENOTTY);
  EXPECT_EQ(decode(_IOW(VOLFS_IOC_MAGIC, 1, volfs_range), range).err, ENOTTY);  // wrong dir
  EXPECT_EQ(decode(VOLFS_IOC_MARK_VOLATILE, range, /*on_open_file=*/false).err, ENOTTY);
  // ENOTTY comes before the buffer checks.
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_GET_STATUS, false, nullptr, 0, 0).err, ENOTTY);
}

TEST(IoctlDecodeTest, SingleRanges) {
  volfs_range range{.offset = 8192, .length = 4096, .flags = VOLFS_MARK_STRICT, .result = 0};
  IoctlRequest r = decode(VOLFS_IOC_MARK_VOLATILE, range);
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.range.offset, 8192u);
  EXPECT_EQ(r.range.length, 4096u);
  EXPECT_EQ(r.range.flags, VOLFS_MARK_STRICT);
  // MARK flags are checked here (MarkFlagsAreCheckedAndDecodedHere); UNMARK takes none.
  range.flags = 0xdead;
  EXPECT_EQ(decode(VOLFS_IOC_MARK_VOLATILE, range).err, EINVAL);
  EXPECT_EQ(decode(VOLFS_IOC_UNMARK_VOLATILE, range).err, EINVAL);
  range.flags = 0;
  EXPECT_EQ(decode(VOLFS_IOC_UNMARK_VOLATILE, range).err, 0);
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_UNMARK_VOLATILE, true, &range, sizeof(range), 8).err, EINVAL);
}

TEST(IoctlDecodeTest, StatusCopiesItsInput) {
  volfs_status st{};
  st.offset = 4096;
  st.length = 0;
  IoctlRequest r = decode(VOLFS_IOC_GET_STATUS, st);
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(std::memcmp(&r.status, &st, sizeof(st)), 0);
  EXPECT_EQ(decode_ioctl(VOLFS_IOC_GET_STATUS, true, &st, sizeof(st) - 1, sizeof(st)).err, EINVAL);
}

TEST(IoctlDecodeTest, BatchCountAndReservedWords) {
  for (unsigned cmd : {VOLFS_IOC_MARK_BATCH, VOLFS_IOC_UNMARK_BATCH}) {
    for (uint32_t count : {1u, 2u, VOLFS_BATCH_MAX}) {
      IoctlRequest r = decode(cmd, make_batch(count));
      ASSERT_EQ(r.err, 0) << count;
      EXPECT_EQ(r.batch.count, count);
      EXPECT_EQ(r.batch.ranges[count - 1].offset, 4096 * uint64_t{count - 1});
    }
    EXPECT_EQ(decode(cmd, make_batch(0)).err, EINVAL);
    EXPECT_EQ(decode(cmd, make_batch(VOLFS_BATCH_MAX + 1)).err, EINVAL);
    EXPECT_EQ(decode(cmd, make_batch(UINT32_MAX)).err, EINVAL);
    for (int k = 0; k < 3; ++k) {
      volfs_range_batch b = make_batch(1);
      b.reserved[k] = 1;
      EXPECT_EQ(decode(cmd, b).err, EINVAL) << k;
    }
  }
}

TEST(IoctlDecodeTest, UnmarkBatchTakesNoFlagsInItsRanges) {
  volfs_range_batch b = make_batch(3);
  b.ranges[2].flags = VOLFS_MARK_STRICT;
  EXPECT_EQ(decode(VOLFS_IOC_UNMARK_BATCH, b).err, EINVAL);
  EXPECT_EQ(decode(VOLFS_IOC_MARK_BATCH, b).err, 0);
  // Ranges past count are not looked at.
  b = make_batch(2);
  b.ranges[2].flags = VOLFS_MARK_STRICT;
  EXPECT_EQ(decode(VOLFS_IOC_UNMARK_BATCH, b).err, 0);
}

TEST(IoctlDecodeTest, MarkFlagsAreCheckedAndDecodedHere) {
  EXPECT_TRUE(valid_mark_flags(0));
  EXPECT_TRUE(valid_mark_flags(VOLFS_MARK_STRICT | VOLFS_MARK_PRIORITY(7)));
  EXPECT_FALSE(valid_mark_flags(0x80000000u));
  EXPECT_FALSE(valid_mark_flags(VOLFS_MARK_PRIORITY_MASK)) << "priority bits without HAS_PRIORITY";
  EXPECT_EQ(mark_flags(0).prio, VOLFS_PRIORITY_DEFAULT);
  EXPECT_FALSE(mark_flags(0).strict);
  EXPECT_EQ(mark_flags(VOLFS_MARK_PRIORITY(0)).prio, 0);
  EXPECT_EQ(mark_flags(VOLFS_MARK_PRIORITY(7) | VOLFS_MARK_STRICT).prio, 7);
  EXPECT_TRUE(mark_flags(VOLFS_MARK_STRICT).strict);

  volfs_range bad{.offset = 0, .length = 4096, .flags = 0x80000000u, .result = 0};
  EXPECT_EQ(decode(VOLFS_IOC_MARK_VOLATILE, bad).err, EINVAL);
  volfs_range_batch b = make_batch(3);
  b.ranges[2].flags = VOLFS_MARK_PRIORITY_MASK;
  EXPECT_EQ(decode(VOLFS_IOC_MARK_BATCH, b).err, EINVAL) << "a bad flag in any range";
  volfs_slot_register g{};
  g.length = 4096;
  g.flags = VOLFS_MARK_PRIORITY(2);
  EXPECT_EQ(decode(VOLFS_IOC_SLOT_REGISTER, g).err, 0);
  g.flags = VOLFS_MARK_STRICT;
  EXPECT_EQ(decode(VOLFS_IOC_SLOT_REGISTER, g).err, EINVAL) << "slots are never strict";
}

}  // namespace
}  // namespace volfs
