// slots_test.cc: functional tests of slots (volfs/volfs.h "Slots", issue 12):
// registration and its errors, MARK/UNMARK kept off slots, pin and unpin
// through a MAP_SHARED mapping without a FUSE request, purges that take
// unpinned slots only, GET_STATUS/STATS accounting, the pin bits of an open
// file cleared when the kernel releases it (close, SIGKILL), unregistration,
// truncate and punch, the limit of 62 holders per file, and `volctl status`.
// Slots need passthrough: in the .cached run only the EOPNOTSUPP test runs.
// The promise under test: a pin never answers INTACT for data that was
// purged, and a pinned slot or a page outside slots and marks is never lost.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "slot_util.h"
#include "volatile_util.h"

#ifndef VOLCTL_BIN
#error "VOLCTL_BIN must name the volctl binary"
#endif

namespace volfs::test {
namespace {

using std::chrono::milliseconds;

const uint64_t kPage = page_size();
constexpr uint64_t kWordSize = sizeof(volfs_slot_word);
constexpr uint32_t kTag = 12;  // page_bytes tag of the test file's pages

// The test file: kFilePages pages, the words in page 0 (slot k's at 16 k),
// slot k's data at pages 1 + 2k and 2 + 2k, so slots 0..6 fit. Page p holds
// page_bytes(kTag, p, 1) at first, page 0 zeros.
constexpr uint64_t kFilePages = 16;
constexpr uint64_t kSlotPages = 2;
uint64_t slot_len() { return kSlotPages * kPage; }
uint64_t data_page(uint64_t k) { return 1 + kSlotPages * k; }
uint64_t data_off(uint64_t k) { return data_page(k) * kPage; }
uint64_t word_off(uint64_t k) { return kWordSize * k; }
constexpr uint64_t kLive = VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE);
constexpr uint64_t kPurged = VOLFS_SLOT_WORD(VOLFS_SLOT_PURGED);

std::string err(int e) { return e == 0 ? "success" : std::strerror(-e); }

std::vector<std::string> file_pages(uint64_t first, uint64_t n, uint64_t gen = 1) {
  std::vector<std::string> v;
  for (uint64_t p = first; p < first + n; ++p) v.push_back(page_bytes(kTag, p, gen));
  return v;
}

// Pages [first, first + want.size()) of path against want, through read(2)
// on a fresh descriptor and, if given, through a mapping of the file.
::testing::AssertionResult pages_are(const std::string& path, uint64_t first,
                                     const std::vector<std::string>& want,
                                     const char* map = nullptr) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << strerror(errno);
  std::optional<std::string> got = pread_some(fd.get(), want.size() * kPage, first * kPage);
  if (!got || got->size() != want.size() * kPage) {
    return ::testing::AssertionFailure() << "pread: " << (got ? "short" : strerror(errno));
  }
  for (size_t i = 0; i < want.size(); ++i) {
    std::string d = describe_page_mismatch(got->data() + i * kPage, want[i].data());
    if (!d.empty()) {
      return ::testing::AssertionFailure() << "page " << first + i << " (read): " << d;
    }
    if (map) {
      d = describe_page_mismatch(map + (first + i) * kPage, want[i].data());
      if (!d.empty()) {
        return ::testing::AssertionFailure() << "page " << first + i << " (mapping): " << d;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult word_is(const MappedFile& f, uint64_t woff, uint64_t want) {
  uint64_t w = f.load(woff);
  if (w == want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "word at " << woff << " is " << describe_word(w) << " (0x" << std::hex << w
         << "), want " << describe_word(want) << " (0x" << want << ")";
}

::testing::AssertionResult state_is(const MappedFile& f, uint64_t woff, uint32_t state) {
  uint64_t w = f.load(woff);
  if (word_state(w) == state) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "word at " << woff << " is " << describe_word(w)
                                       << ", want state " << describe_word(VOLFS_SLOT_WORD(state));
}

struct SlotCounts {
  uint64_t slots = 0, pinned = 0, purged = 0;
};

std::string to_string_with_slots(const volfs_status& s) {
  return to_string(s) + " slots=" + std::to_string(s.slots) +
         " pinned_slots=" + std::to_string(s.pinned_slots) +
         " purged_slots=" + std::to_string(s.purged_slots);
}

::testing::AssertionResult status_is(int fd, uint64_t off, uint64_t len, SlotCounts c,
                                     std::optional<StatusExpect> pages = std::nullopt) {
  volfs_status s;
  int e = vol_status(fd, off, len, &s);
  if (e != 0) return ::testing::AssertionFailure() << "GET_STATUS: " << err(e);
  bool ok = s.slots == c.slots && s.pinned_slots == c.pinned && s.purged_slots == c.purged;
  if (pages) {
    ok = ok && s.nonvolatile_pages == pages->nonvolatile && s.volatile_pages == pages->volatile_ &&
         s.purged_pages == pages->purged && s.resident_pages == pages->resident &&
         s.strict_pages == pages->strict;
  }
  if (ok) return ::testing::AssertionSuccess();
  auto r = ::testing::AssertionFailure();
  r << "GET_STATUS [" << off << ", +" << len << ") = " << to_string_with_slots(s)
    << "; want slots=" << c.slots << " pinned_slots=" << c.pinned << " purged_slots=" << c.purged;
  if (pages) {
    r << " nonvolatile=" << pages->nonvolatile << " volatile=" << pages->volatile_
      << " purged=" << pages->purged << " resident=" << pages->resident;
  }
  return r;
}

// volfs_slot_pin's answer as VOLFS_INTACT / VOLFS_PURGED, or -errno.
int pin(volfs_slot* s) {
  int r = volfs_slot_pin(s);
  return r < 0 ? -errno : r;
}
int unpin(volfs_slot* s) { return volfs_slot_unpin(s) < 0 ? -errno : 0; }
volfs_slot slot_of(const MappedFile& f, uint64_t woff, uint32_t holder, bool pinned) {
  volfs_slot s;
  volfs_slot_init(&s, f.word(woff), holder, pinned ? 1 : 0);
  return s;
}

// ---------------------------------------------------------------------------

class SlotTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    if (!passthrough()) {
      GTEST_SKIP() << "slots need passthrough io mode; this is the .cached run, where "
                      "SlotIoModeTest checks that every slot call fails with EOPNOTSUPP";
    }
    path_ = mount_.path("slots");
    make_file(path_, kFilePages);
    if (HasFatalFailure()) return;
    ASSERT_TRUE(f_.open(path_, kFilePages * kPage)) << "open " << path_ << ": " << strerror(errno);
  }
  void TearDown() override {
    f_.reset();  // nothing of the mount may stay open at unmount
    MountTest::TearDown();
  }

  // A file of `pages` pages: page 0 zeros (the words), page p page_bytes(kTag, p, 1).
  void make_file(const std::string& path, uint64_t pages) {
    std::string data = std::string(kPage, '\0');
    for (uint64_t p = 1; p < pages; ++p) data += page_bytes(kTag, p, 1);
    ASSERT_TRUE(write_file(path, data)) << path << ": " << strerror(errno);
  }

  // Registers slot k of the layout through f (one slot, no flags).
  SlotRegister reg(const MappedFile& f, uint64_t k, uint32_t count = 1) {
    SlotRegister r{};
    int e = slot_register(f.fd(), data_off(k), slot_len(), word_off(k), count, 0, &r);
    EXPECT_EQ(e, 0) << "REGISTER slot " << k << " (count " << count << "): " << err(e);
    return r;
  }

  int64_t purge_all() { return purge_via_root(mount_.mountpoint(), VOLFS_PURGE_ALL); }

  volfs_stats stats() {
    std::optional<volfs_stats> s = mount_stats(mount_.mountpoint());
    EXPECT_TRUE(s.has_value()) << "STATS: " << strerror(errno);
    return s.value_or(volfs_stats{});
  }

  std::string path_;
  MappedFile f_;
};

// ---------------------------------------------------------------------------
// Io modes.

class SlotIoModeTest : public MountTest {};

TEST_F(SlotIoModeTest, EverySlotCallFailsWithEopnotsuppInTheCachedIoMode) {
  // In the passthrough run the file gets the cached mode from its directory.
  if (passthrough()) use_cached_io_mode();
  const std::string path = mount_.path("cached");
  ASSERT_TRUE(write_file(path, std::string(4 * kPage, 'x')));
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok()) << strerror(errno);
  EXPECT_EQ(slot_register(fd.get(), kPage, kPage, 0), -EOPNOTSUPP)
      << "REGISTER on a file in the cached io mode";
  EXPECT_EQ(slot_register(fd.get(), kPage, kPage, 0, 2), -EOPNOTSUPP)
      << "REGISTER of 2 slots on a file in the cached io mode";
  uint32_t holder;
  EXPECT_EQ(slot_holder(fd.get(), &holder), -EOPNOTSUPP) << "HOLDER in the cached io mode";
  uint32_t result;
  EXPECT_EQ(slot_unregister(fd.get(), 0, &result), -EOPNOTSUPP)
      << "UNREGISTER in the cached io mode";
  // Nothing else changed: the file has no slot, and MARK still works.
  EXPECT_TRUE(status_is(fd.get(), 0, 0, {0, 0, 0}));
  EXPECT_EQ(vol_mark(fd.get(), kPage, kPage), 0);
}

// ---------------------------------------------------------------------------
// REGISTER.

TEST_F(SlotTest, RegisterCreatesALiveSlotPinnedByTheCaller) {
  SlotRegister r = reg(f_, 0);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(r.result, VOLFS_SLOT_CREATED);
  ASSERT_LT(r.holder, VOLFS_SLOT_HOLDERS);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r.holder)))
      << "a new slot is LIVE and pinned by the caller's bit";
  // The data is untouched and, pinned, not volatile.
  EXPECT_TRUE(pages_are(path_, data_page(0), file_pages(data_page(0), kSlotPages), f_.data()));
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 1, 0},
                        StatusExpect{.nonvolatile = kSlotPages, .resident = kSlotPages}));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0}));
  // A range that does not overlap the data counts no slot, not even the
  // word's page.
  EXPECT_TRUE(status_is(f_.fd(), 0, kPage, {0, 0, 0}));
  EXPECT_TRUE(status_is(f_.fd(), data_off(1), kPage, {0, 0, 0}));
  // The holder belongs to the open file: HOLDER and a dup answer the same.
  uint32_t h = 99;
  EXPECT_EQ(slot_holder(f_.fd(), &h), 0);
  EXPECT_EQ(h, r.holder);
  UniqueFd dup_fd(dup(f_.fd()));
  EXPECT_EQ(slot_holder(dup_fd.get(), &h), 0);
  EXPECT_EQ(h, r.holder) << "a dup shares the open file, so its pin bit";
}

TEST_F(SlotTest, AttachingLeavesTheWordAloneAndEachOpenFileIsItsOwnHolder) {
  SlotRegister r1 = reg(f_, 0);
  ASSERT_EQ(r1.result, VOLFS_SLOT_CREATED);
  const uint64_t pinned_by_1 = kLive | holder_bit(r1.holder);
  SlotRegister again = reg(f_, 0);
  EXPECT_EQ(again.result, VOLFS_SLOT_ATTACHED) << "same geometry, same open file";
  EXPECT_EQ(again.holder, r1.holder);
  EXPECT_TRUE(word_is(f_, word_off(0), pinned_by_1));

  MappedFile g;
  ASSERT_TRUE(g.open(path_, kFilePages * kPage));
  SlotRegister r2 = reg(g, 0);
  EXPECT_EQ(r2.result, VOLFS_SLOT_ATTACHED) << "same geometry, another open file";
  EXPECT_NE(r2.holder, r1.holder) << "another open file gets another pin bit";
  EXPECT_LT(r2.holder, VOLFS_SLOT_HOLDERS);
  EXPECT_TRUE(word_is(f_, word_off(0), pinned_by_1)) << "attaching does not pin";

  volfs_slot s1 = slot_of(f_, word_off(0), r1.holder, true);
  ASSERT_EQ(unpin(&s1), 0);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive));
  EXPECT_EQ(reg(g, 0).result, VOLFS_SLOT_ATTACHED);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive)) << "attaching to an unpinned slot does not pin";

  // Both holders pin at once: both bits, and the slot stays pinned until the
  // last one goes.
  volfs_slot s2 = slot_of(g, word_off(0), r2.holder, false);
  EXPECT_EQ(pin(&s1), VOLFS_INTACT);
  EXPECT_EQ(pin(&s2), VOLFS_INTACT);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r1.holder) | holder_bit(r2.holder)));
  ASSERT_EQ(unpin(&s1), 0);
  EXPECT_EQ(purge_all(), 0) << "pinned by the second holder: nothing to purge";
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r2.holder)));
  ASSERT_EQ(unpin(&s2), 0);
  EXPECT_EQ(purge_all(), static_cast<int64_t>(slot_len()));
  EXPECT_TRUE(word_is(f_, word_off(0), kPurged));
}

TEST_F(SlotTest, RegisterManyCreatesOrAttachesAllOrChangesNothing) {
  SlotRegister r = reg(f_, 0, 4);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  for (uint64_t k = 0; k < 4; ++k) {
    EXPECT_TRUE(word_is(f_, word_off(k), kLive | holder_bit(r.holder))) << "slot " << k;
  }
  EXPECT_TRUE(word_is(f_, word_off(4), 0));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {4, 4, 0}));

  MappedFile g;
  ASSERT_TRUE(g.open(path_, kFilePages * kPage));
  EXPECT_EQ(reg(g, 0, 4).result, VOLFS_SLOT_ATTACHED);
  EXPECT_EQ(reg(g, 1, 3).result, VOLFS_SLOT_ATTACHED) << "a run of existing slots from slot 1";
  // Four existing slots and a new one: EBUSY, and slot 4 is not made.
  EXPECT_EQ(slot_register(g.fd(), data_off(0), slot_len(), word_off(0), 5), -EBUSY);
  EXPECT_EQ(slot_register(g.fd(), data_off(3), slot_len(), word_off(3), 2), -EBUSY);
  EXPECT_TRUE(word_is(f_, word_off(4), 0)) << "a failed REGISTER made slot 4";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {4, 4, 0}));
  for (uint64_t k = 0; k < 4; ++k) {
    EXPECT_TRUE(word_is(f_, word_off(k), kLive | holder_bit(r.holder))) << "slot " << k;
  }
  // count 0 means one slot.
  SlotRegister one{};
  ASSERT_EQ(slot_register(g.fd(), data_off(4), slot_len(), word_off(4), 0, 0, &one), 0);
  EXPECT_EQ(one.result, VOLFS_SLOT_CREATED);
  EXPECT_TRUE(word_is(f_, word_off(4), kLive | holder_bit(one.holder)));
  EXPECT_TRUE(word_is(f_, word_off(5), 0));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {5, 5, 0}));
}

TEST_F(SlotTest, BadGeometryFlagsAndReservedWordsAreEinval) {
  const uint64_t size = kFilePages * kPage;
  struct Case {
    const char* what;
    SlotRegister r;
  };
  std::vector<Case> cases = {
      {"offset not a page multiple", slot_request(data_off(0) + 512, kPage, 0)},
      {"length not a page multiple", slot_request(data_off(0), kPage + 512, 0)},
      {"length 0", slot_request(data_off(0), 0, 0)},
      {"data past the end of the file", slot_request(data_off(6), 4 * kPage, 0)},
      {"data starting at the end of the file", slot_request(size, kPage, 0)},
      {"offset + length overflowing", slot_request(UINT64_MAX - kPage + 1, 2 * kPage, 0)},
      {"word not 16-byte aligned", slot_request(data_off(0), kPage, 8)},
      {"word at the end of the file", slot_request(data_off(0), kPage, size)},
      {"word far past the end of the file", slot_request(data_off(0), kPage, 64 * size)},
      {"count over VOLFS_SLOT_REGISTER_MAX",
       slot_request(data_off(0), kPage, 0, VOLFS_SLOT_REGISTER_MAX + 1)},
      {"count whose last slot is past the end", slot_request(data_off(0), slot_len(), 0, 8)},
      {"flags VOLFS_MARK_STRICT", slot_request(data_off(0), kPage, 0, 1, VOLFS_MARK_STRICT)},
      {"unknown flag 0x1000", slot_request(data_off(0), kPage, 0, 1, 0x1000)},
      {"unknown flag 0x80000000", slot_request(data_off(0), kPage, 0, 1, 0x80000000u)},
  };
  Case r0{"reserved[0] set", slot_request(data_off(0), kPage, 0)};
  r0.r.reserved[0] = 1;
  Case r1{"reserved[1] set", slot_request(data_off(0), kPage, 0)};
  r1.r.reserved[1] = 1;
  cases.push_back(r0);
  cases.push_back(r1);
  for (Case& c : cases) {
    EXPECT_EQ(slot_register_raw(f_.fd(), &c.r), -EINVAL) << c.what;
  }
  // Nothing was made, nothing written.
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {0, 0, 0}));
  EXPECT_TRUE(pages_are(path_, 0, zero_pages(1) + file_pages(1, kFilePages - 1), f_.data()));
  // A priority is the one flag allowed.
  SlotRegister ok{};
  EXPECT_EQ(
      slot_register(f_.fd(), data_off(0), slot_len(), word_off(0), 1, VOLFS_MARK_PRIORITY(7), &ok),
      0);
  EXPECT_EQ(ok.result, VOLFS_SLOT_CREATED);
}

TEST_F(SlotTest, OverlapsWithSlotsWordsAndVolatilePagesAreEbusy) {
  SlotRegister a = reg(f_, 0);  // data pages 1-2, word at 0
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  ASSERT_EQ(vol_mark(f_.fd(), 9 * kPage, 2 * kPage), 0);  // pages 9-10 volatile
  ASSERT_EQ(vol_mark(f_.fd(), 14 * kPage, kPage), 0);     // page 14 volatile
  struct Case {
    const char* what;
    uint64_t off, len, woff;
    uint32_t count;
  };
  const Case cases[] = {
      {"word inside another slot's data", data_off(2), slot_len(), data_off(0) + 16, 1},
      {"word inside its own data", data_off(2), slot_len(), data_off(2) + kPage, 1},
      {"data overlapping another slot's (shifted a page)", data_off(0) + kPage, slot_len(), 16, 1},
      {"data holding another slot's data and more", data_off(0), 3 * kPage, 16, 1},
      {"data inside another slot's data", data_off(0), kPage, 16, 1},
      {"the same data with another word", data_off(0), slot_len(), 32, 1},
      {"data over another slot's word", 0, kPage, 15 * kPage, 1},
      {"another slot's word", data_off(2), slot_len(), word_off(0), 1},
      {"data over volatile pages", 9 * kPage, 2 * kPage, 16, 1},
      {"data over part of a volatile range", 10 * kPage, 2 * kPage, 16, 1},
      {"word in a volatile page", data_off(2), slot_len(), 14 * kPage + 32, 1},
      {"the third of three slots over volatile pages", data_off(2), slot_len(), 16, 3},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(slot_register(f_.fd(), c.off, c.len, c.woff, c.count), -EBUSY) << c.what;
  }
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0}));
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(a.holder)));
  for (uint64_t w = 16; w < 64; w += 16) EXPECT_TRUE(word_is(f_, w, 0)) << "word at " << w;
  EXPECT_TRUE(pages_are(path_, 15, file_pages(15, 1))) << "a failed REGISTER wrote a word";
  // The failures were for the overlaps: the same slot elsewhere is fine,
  // its word on the page of slot 0's.
  SlotRegister b{};
  ASSERT_EQ(slot_register(f_.fd(), data_off(2), slot_len(), 16, 1, 0, &b), 0);
  EXPECT_EQ(b.result, VOLFS_SLOT_CREATED);
}

TEST_F(SlotTest, RegisterNeedsAFileOpenForWriting) {
  MappedFile ro;
  ASSERT_TRUE(ro.open(path_, kFilePages * kPage, O_RDONLY)) << strerror(errno);
  EXPECT_EQ(slot_register(ro.fd(), data_off(0), slot_len(), word_off(0)), -EBADF);
  EXPECT_EQ(slot_register(ro.fd(), data_off(0), slot_len(), word_off(0), 3), -EBADF);
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {0, 0, 0}));
  EXPECT_TRUE(word_is(f_, word_off(0), 0));
  // Not even attaching to an existing slot.
  ASSERT_EQ(reg(f_, 0).result, VOLFS_SLOT_CREATED);
  EXPECT_EQ(slot_register(ro.fd(), data_off(0), slot_len(), word_off(0)), -EBADF);
}

// ---------------------------------------------------------------------------
// MARK and UNMARK keep off slots.

TEST_F(SlotTest, MarkAndUnmarkOverASlotsDataOrWordPageAreEbusy) {
  SlotRegister a = reg(f_, 0);  // data pages 1-2, word page 0
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  for (bool pinned : {true, false}) {
    SCOPED_TRACE(pinned ? "slot pinned" : "slot unpinned");
    EXPECT_EQ(vol_mark(f_.fd(), data_off(0), slot_len()), -EBUSY) << "MARK of the data";
    EXPECT_EQ(vol_mark(f_.fd(), 2 * kPage, 2 * kPage), -EBUSY) << "MARK of part of the data";
    EXPECT_EQ(vol_mark(f_.fd(), 0, 0), -EBUSY) << "MARK of the whole file";
    EXPECT_EQ(vol_mark(f_.fd(), 0, kPage), -EBUSY) << "MARK of the word's page";
    uint32_t res;
    EXPECT_EQ(vol_unmark(f_.fd(), data_off(0), slot_len(), &res), -EBUSY) << "UNMARK of the data";
    EXPECT_EQ(vol_unmark(f_.fd(), kPage, kPage, &res), -EBUSY) << "UNMARK of part of the data";
    EXPECT_EQ(vol_unmark(f_.fd(), 0, kPage, &res), -EBUSY) << "UNMARK of the word's page";
    EXPECT_EQ(vol_unmark(f_.fd(), 0, 0, &res), -EBUSY) << "UNMARK of the whole file";
    EXPECT_EQ(vol_mark_batch(f_.fd(), {{5 * kPage, kPage}, {2 * kPage, kPage}}), -EBUSY)
        << "a MARK batch with one range over the data";
    EXPECT_TRUE(status_is(f_.fd(), 5 * kPage, kPage, {0, 0, 0},
                          StatusExpect{.nonvolatile = 1, .resident = 1}))
        << "the failed batch marked its other range";
    // Next to the slot all is as ever.
    EXPECT_EQ(vol_mark(f_.fd(), 3 * kPage, kPage), 0);
    EXPECT_EQ(vol_unmark(f_.fd(), 3 * kPage, kPage, &res), 0);
    EXPECT_EQ(res, VOLFS_INTACT);
    if (pinned) {
      EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(a.holder)));
      volfs_slot s = slot_of(f_, word_off(0), a.holder, true);
      ASSERT_EQ(unpin(&s), 0);
    } else {
      EXPECT_TRUE(word_is(f_, word_off(0), kLive));
    }
  }
}

// ---------------------------------------------------------------------------
// Pin, unpin, purge.

// libfuse's debug output names every request the daemon reads ("unique:
// N, opcode: ..."): the log shows whether pins reach the daemon.
class SlotDebugLogTest : public SlotTest {
 protected:
  std::string mount_options() const override { return "size=256m,debug"; }
  size_t requests_in_log() {
    std::string log = mount_.log();
    size_t n = 0;
    for (size_t at = log.find("opcode: "); at != std::string::npos;
         at = log.find("opcode: ", at + 1)) {
      ++n;
    }
    return n;
  }
};

TEST_F(SlotDebugLogTest, PinAndUnpinSendNoFuseRequest) {
  SlotRegister a = reg(f_, 0);
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  volfs_slot s = slot_of(f_, word_off(0), a.holder, true);
  ASSERT_EQ(unpin(&s), 0);
  // A request answered: the daemon has logged everything before it. STATS
  // on the file's own fd: no open or release of its own around it.
  volfs_stats s0{};
  ASSERT_EQ(volfs_get_stats(f_.fd(), &s0), 0) << strerror(errno);
  const size_t logged0 = requests_in_log();
  ASSERT_GT(logged0, 0u) << "no request in the daemon's debug log:\n" << mount_.log();
  int intact = 0;
  for (int i = 0; i < 1000; ++i) {
    intact += pin(&s) == VOLFS_INTACT;
    ASSERT_EQ(unpin(&s), 0);
  }
  EXPECT_EQ(intact, 1000);
  const size_t logged1 = requests_in_log();
  volfs_stats s1{};
  ASSERT_EQ(volfs_get_stats(f_.fd(), &s1), 0) << strerror(errno);
  EXPECT_EQ(logged1, logged0) << "1000 pins and unpins sent FUSE requests:\n"
                              << mount_.log().substr(
                                     mount_.log().size() > 4000 ? mount_.log().size() - 4000 : 0);
  if (s0.requests != 0) {
    EXPECT_EQ(s1.requests - s0.requests, 1u) << "volfs_stats.requests: only the second STATS";
  } else {
    std::printf("[ INFO     ] volfs_stats.requests is 0: the daemon does not count requests\n");
  }
  EXPECT_TRUE(word_is(f_, word_off(0), kLive));
}

TEST_F(SlotTest, AnUnpinnedSlotsPagesAreVolatileInStatsAndStatus) {
  SlotRegister a = reg(f_, 0);
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  EXPECT_TRUE(stats_match(stats(), {.volatile_pages = 0, .purged_pages = 0}));
  volfs_slot s = slot_of(f_, word_off(0), a.holder, true);
  ASSERT_EQ(unpin(&s), 0);
  EXPECT_TRUE(stats_match(stats(), {.resident_pages = kFilePages,
                                    .volatile_pages = kSlotPages,
                                    .volatile_resident_pages = kSlotPages,
                                    .purged_pages = 0}))
      << "an unpinned slot's pages are volatile";
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 0, 0},
                        StatusExpect{.volatile_ = kSlotPages, .resident = kSlotPages}));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 0, 0},
                        StatusExpect{.nonvolatile = kFilePages - kSlotPages,
                                     .volatile_ = kSlotPages,
                                     .resident = kFilePages}));
  ASSERT_EQ(pin(&s), VOLFS_INTACT);
  EXPECT_TRUE(stats_match(stats(), {.volatile_pages = 0, .purged_pages = 0}))
      << "pinned again, the slot's pages are not volatile";
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 1, 0},
                        StatusExpect{.nonvolatile = kSlotPages, .resident = kSlotPages}));
}

TEST_F(SlotTest, PurgeTakesUnpinnedSlotsOnlyAndTheNextPinLearnsIt) {
  SlotRegister r = reg(f_, 0, 2);  // A = slot 0, B = slot 1
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  volfs_slot a = slot_of(f_, word_off(0), r.holder, true);
  volfs_slot b = slot_of(f_, word_off(1), r.holder, true);
  ASSERT_EQ(unpin(&a), 0);
  const volfs_stats before = stats();

  EXPECT_EQ(purge_all(), static_cast<int64_t>(slot_len())) << "only A is purgeable";
  EXPECT_TRUE(word_is(f_, word_off(0), kPurged));
  EXPECT_TRUE(word_is(f_, word_off(1), kLive | holder_bit(r.holder))) << "B is pinned";
  // The counts first: a read fault through a mapping would allocate the
  // purged pages again (tmpfs), read(2) does not.
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 0, 1},
                        StatusExpect{.volatile_ = kSlotPages, .purged = kSlotPages}))
      << "the purged slot's resident pages are freed";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {2, 1, 1}));
  volfs_stats after = stats();
  EXPECT_EQ(after.purged_pages, kSlotPages) << to_string(after);
  EXPECT_EQ(after.pages_purged_total - before.pages_purged_total, kSlotPages) << to_string(after);
  EXPECT_EQ(after.resident_pages, kFilePages - kSlotPages) << to_string(after);
  EXPECT_TRUE(pages_are(path_, data_page(0), zero_pages(kSlotPages)))
      << "a purged slot reads as zeros";
  EXPECT_TRUE(pages_are(path_, data_page(1), file_pages(data_page(1), kSlotPages), f_.data()))
      << "a pinned slot lost data";
  const uint64_t rest = data_page(2);
  EXPECT_TRUE(pages_are(path_, rest, file_pages(rest, kFilePages - rest), f_.data()))
      << "a page outside slots and marks lost data";

  // The next pin answers PURGED once and makes the slot LIVE, pinned.
  ASSERT_EQ(pin(&a), VOLFS_PURGED);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r.holder)));
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 1, 0},
                        StatusExpect{.nonvolatile = kSlotPages}));
  EXPECT_TRUE(pages_are(path_, data_page(0), zero_pages(kSlotPages), f_.data()));
  EXPECT_EQ(purge_all(), 0) << "everything is pinned now";
  // Refilled, unpinned and pinned with no purge between: INTACT, the new data.
  for (uint64_t i = 0; i < kSlotPages; ++i) {
    fill_page(f_.data() + (data_page(0) + i) * kPage, kTag, data_page(0) + i, 2);
  }
  ASSERT_EQ(unpin(&a), 0);
  EXPECT_EQ(pin(&a), VOLFS_INTACT);
  EXPECT_TRUE(pages_are(path_, data_page(0), file_pages(data_page(0), kSlotPages, 2), f_.data()));
  // Unpinned and purged again: PURGED again, never INTACT.
  ASSERT_EQ(unpin(&a), 0);
  ASSERT_EQ(unpin(&b), 0);
  EXPECT_EQ(purge_all(), static_cast<int64_t>(2 * slot_len()));
  EXPECT_EQ(pin(&b), VOLFS_PURGED);
  EXPECT_EQ(pin(&a), VOLFS_PURGED);
  EXPECT_TRUE(pages_are(path_, data_page(0), zero_pages(2 * kSlotPages), f_.data()));
}

TEST_F(SlotTest, GetStatusCountsTheSlotsWhoseDataOverlapsTheRange) {
  SlotRegister r = reg(f_, 0, 4);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  std::vector<volfs_slot> s;
  for (uint64_t k = 0; k < 4; ++k) s.push_back(slot_of(f_, word_off(k), r.holder, true));
  for (uint64_t k = 1; k < 4; ++k) ASSERT_EQ(unpin(&s[k]), 0);
  ASSERT_EQ(purge_all(), static_cast<int64_t>(3 * slot_len()));
  ASSERT_EQ(pin(&s[3]), VOLFS_PURGED);
  ASSERT_EQ(unpin(&s[0]), 0);
  // Now: slot 0 unpinned and intact, 1 and 2 purged, 3 pinned (refill due).
  const uint64_t n = kSlotPages;
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {4, 1, 2},
                        StatusExpect{.nonvolatile = kFilePages - 3 * n,
                                     .volatile_ = 3 * n,
                                     .purged = 2 * n,
                                     .resident = kFilePages - 3 * n}));
  EXPECT_TRUE(status_is(f_.fd(), data_off(0), slot_len(), {1, 0, 0},
                        StatusExpect{.volatile_ = n, .resident = n}));
  EXPECT_TRUE(status_is(f_.fd(), data_off(1), slot_len(), {1, 0, 1},
                        StatusExpect{.volatile_ = n, .purged = n}));
  EXPECT_TRUE(
      status_is(f_.fd(), data_off(3), slot_len(), {1, 1, 0}, StatusExpect{.nonvolatile = n}));
  // The last page of slot 0 and the first of slot 1.
  EXPECT_TRUE(status_is(f_.fd(), data_off(1) - kPage, 2 * kPage, {2, 0, 1},
                        StatusExpect{.volatile_ = 2, .purged = 1, .resident = 1}));
  EXPECT_TRUE(status_is(f_.fd(), data_off(1), 3 * slot_len(), {3, 1, 2}));
  EXPECT_TRUE(status_is(f_.fd(), 0, kPage, {0, 0, 0})) << "the words' page holds no slot's data";
  EXPECT_TRUE(status_is(f_.fd(), data_off(4), 0, {0, 0, 0}));
}

TEST_F(SlotTest, APinnedSlotSurvivesTheWatermarkPurgeAnUnpinnedOneDoesNot) {
  // Its own mount: 8 MiB, background purge above 80 % down to 50 %.
  f_.reset();
  ASSERT_TRUE(mount_.stop());
  ASSERT_TRUE(mount_.start("size=8m,purge_high=80,purge_low=50"));
  const uint64_t mib = kMiB / kPage;
  // Words in page 0, A = 2 MiB pinned, B = 3 MiB unpinned; 2 MiB plain beside.
  const std::string path = mount_.path("big");
  make_file(path, 1 + 5 * mib);
  make_file(mount_.path("keep"), 2 * mib);
  ASSERT_FALSE(HasFatalFailure());
  MappedFile f;
  ASSERT_TRUE(f.open(path, (1 + 5 * mib) * kPage));
  SlotRegister a{}, b{};
  ASSERT_EQ(slot_register(f.fd(), kPage, 2 * mib * kPage, 0, 1, 0, &a), 0);
  ASSERT_EQ(slot_register(f.fd(), (1 + 2 * mib) * kPage, 3 * mib * kPage, 16, 1, 0, &b), 0);
  volfs_slot sb = slot_of(f, 16, b.holder, true);
  ASSERT_EQ(unpin(&sb), 0);
  std::chrono::microseconds waited;
  bool purged = poll_for([&] { return word_state(f.load(16)) == VOLFS_SLOT_PURGED; },
                         milliseconds(10000), &waited);
  ASSERT_TRUE(purged) << "the unpinned slot over the high watermark was not purged in 10 s: "
                      << describe_word(f.load(16));
  std::printf("[ INFO     ] the watermark purge took the unpinned slot after %.1f ms\n",
              waited.count() / 1000.0);
  std::this_thread::sleep_for(milliseconds(300));  // give it a chance to go too far
  EXPECT_TRUE(word_is(f, 0, kLive | holder_bit(a.holder)));
  EXPECT_TRUE(pages_are(path, 1, file_pages(1, 2 * mib)));
  EXPECT_TRUE(pages_are(mount_.path("keep"), 1, file_pages(1, 2 * mib - 1)));
  f.reset();
}

// ---------------------------------------------------------------------------
// Holders: their bits go when the kernel releases their open file.

TEST_F(SlotTest, AKilledHoldersPinsAreClearedAndItsSlotsPurged) {
  SlotRegister a = reg(f_, 0);  // slot A: made here, left unpinned
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  volfs_slot sa = slot_of(f_, word_off(0), a.holder, true);
  ASSERT_EQ(unpin(&sa), 0);
  SharedBlock<std::atomic<uint32_t>> child_holder;
  ASSERT_TRUE(child_holder.ok());
  SyncPipe ready;
  ChildProcess child;
  child.start([&]() -> int {
    MappedFile g;
    CHILD_CHECK(g.open(path_, kFilePages * kPage));
    SlotRegister r{};
    CHILD_CHECK(slot_register(g.fd(), data_off(0), slot_len(), word_off(0), 1, 0, &r) == 0);
    CHILD_CHECK(r.result == VOLFS_SLOT_ATTACHED);
    volfs_slot s = slot_of(g, word_off(0), r.holder, false);
    CHILD_CHECK(pin(&s) == VOLFS_INTACT);  // A: pinned by the child
    SlotRegister r2{};                     // B: made by the child, so pinned by it
    CHILD_CHECK(slot_register(g.fd(), data_off(1), slot_len(), word_off(1), 1, 0, &r2) == 0);
    CHILD_CHECK(r2.result == VOLFS_SLOT_CREATED);
    child_holder->store(r.holder);
    ready.post();
    for (;;) pause();
  });
  ASSERT_TRUE(ready.wait()) << "the child did not pin";
  const uint32_t h = child_holder->load();
  EXPECT_NE(h, a.holder);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(h)));
  EXPECT_TRUE(word_is(f_, word_off(1), kLive | holder_bit(h)));
  EXPECT_EQ(purge_all(), 0) << "both slots are pinned by the child";

  ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
  EXPECT_TRUE(killed_by(child.wait(), SIGKILL));
  std::chrono::microseconds waited;
  bool cleared =
      poll_for([&] { return pin_bits(f_.load(word_off(0)) | f_.load(word_off(1))) == 0; },
               milliseconds(10000), &waited);
  std::printf("[ INFO     ] the killed holder's bits were %s %.1f ms after it was reaped\n",
              cleared ? "cleared" : "STILL SET", waited.count() / 1000.0);
  ASSERT_TRUE(cleared) << "10 s after the holder's death: A " << describe_word(f_.load(word_off(0)))
                       << ", B " << describe_word(f_.load(word_off(1)));
  EXPECT_TRUE(word_is(f_, word_off(0), kLive));
  EXPECT_TRUE(word_is(f_, word_off(1), kLive));
  EXPECT_EQ(purge_all(), static_cast<int64_t>(2 * slot_len()));
  EXPECT_TRUE(word_is(f_, word_off(0), kPurged));
  EXPECT_TRUE(word_is(f_, word_off(1), kPurged));
  EXPECT_EQ(pin(&sa), VOLFS_PURGED);
}

TEST_F(SlotTest, TheLastCloseOfAHolderClearsItsPins) {
  SlotRegister a = reg(f_, 0);
  ASSERT_EQ(a.result, VOLFS_SLOT_CREATED);
  volfs_slot sa = slot_of(f_, word_off(0), a.holder, true);
  ASSERT_EQ(unpin(&sa), 0);
  MappedFile g;
  ASSERT_TRUE(g.open(path_, kFilePages * kPage));
  SlotRegister r = reg(g, 0);
  volfs_slot s = slot_of(g, word_off(0), r.holder, false);
  ASSERT_EQ(pin(&s), VOLFS_INTACT);
  UniqueFd dup_fd(dup(g.fd()));
  g.reset();  // unmapped and closed, but the dup keeps the open file
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r.holder)))
      << "a dup still holds the open file: its pins stay";
  dup_fd.reset();
  std::chrono::microseconds waited;
  bool cleared =
      poll_for([&] { return pin_bits(f_.load(word_off(0))) == 0; }, milliseconds(10000), &waited);
  std::printf("[ INFO     ] the closed holder's bit was %s %.1f ms after the last close\n",
              cleared ? "cleared" : "STILL SET", waited.count() / 1000.0);
  ASSERT_TRUE(cleared) << describe_word(f_.load(word_off(0)));
  EXPECT_EQ(purge_all(), static_cast<int64_t>(slot_len()));
  EXPECT_EQ(pin(&sa), VOLFS_PURGED);
}

TEST_F(SlotTest, SixtyTwoOpenFilesHoldBitsTheNextGetsEusers) {
  ASSERT_EQ(reg(f_, 0).result, VOLFS_SLOT_CREATED);
  std::vector<UniqueFd> fds;
  std::set<uint32_t> holders;
  uint32_t h = 0;
  ASSERT_EQ(slot_holder(f_.fd(), &h), 0);
  holders.insert(h);
  for (uint32_t i = 1; i < VOLFS_SLOT_HOLDERS; ++i) {
    fds.emplace_back(open(path_.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fds.back().ok()) << strerror(errno);
    // Half take their bit with HOLDER, half by attaching to slot 0.
    int e = (i % 2) ? slot_holder(fds.back().get(), &h) : [&] {
      SlotRegister r{};
      int e2 = slot_register(fds.back().get(), data_off(0), slot_len(), word_off(0), 1, 0, &r);
      h = r.holder;
      return e2;
    }();
    ASSERT_EQ(e, 0) << "open file " << i << " of " << VOLFS_SLOT_HOLDERS << ": " << err(e);
    ASSERT_LT(h, VOLFS_SLOT_HOLDERS);
    EXPECT_TRUE(holders.insert(h).second) << "holder " << h << " given twice";
  }
  UniqueFd extra(open(path_.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(extra.ok());
  EXPECT_EQ(slot_holder(extra.get(), &h), -EUSERS) << "a 63rd holder";
  EXPECT_EQ(slot_register(extra.get(), data_off(0), slot_len(), word_off(0)), -EUSERS)
      << "a 63rd holder attaching";
  EXPECT_EQ(slot_register(extra.get(), data_off(1), slot_len(), word_off(1)), -EUSERS)
      << "a 63rd holder creating";
  EXPECT_TRUE(word_is(f_, word_off(1), 0));
  // The limit is per file.
  const std::string other = mount_.path("other");
  make_file(other, 4);
  UniqueFd ofd(open(other.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_EQ(slot_holder(ofd.get(), &h), 0) << "another file's first holder";

  // One closes: its bit is free again for the next open file.
  uint32_t freed = 99;
  ASSERT_EQ(slot_holder(fds[10].get(), &freed), 0);
  fds[10].reset();
  std::chrono::microseconds waited;
  int e = -EUSERS;
  bool got = poll_for([&] { return (e = slot_holder(extra.get(), &h)) != -EUSERS; },
                      milliseconds(10000), &waited);
  std::printf("[ INFO     ] a holder was free again %.1f ms after the close\n",
              waited.count() / 1000.0);
  ASSERT_TRUE(got) << "still EUSERS 10 s after an open file with a bit was closed";
  EXPECT_EQ(e, 0) << err(e);
  EXPECT_EQ(h, freed) << "the only free bit is the closed file's";
}

// ---------------------------------------------------------------------------
// UNREGISTER, truncate, punch.

TEST_F(SlotTest, UnregisterTurnsTheWordNoneAndAnswersLikeUnmark) {
  SlotRegister r = reg(f_, 0, 3);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  volfs_slot s0 = slot_of(f_, word_off(0), r.holder, true);
  volfs_slot s1 = slot_of(f_, word_off(1), r.holder, true);
  volfs_slot s2 = slot_of(f_, word_off(2), r.holder, true);
  ASSERT_EQ(unpin(&s1), 0);
  ASSERT_EQ(unpin(&s2), 0);
  ASSERT_EQ(purge_all(), static_cast<int64_t>(2 * slot_len()));
  ASSERT_EQ(pin(&s2), VOLFS_PURGED);
  ASSERT_EQ(unpin(&s2), 0);  // slot 2: unpinned, intact since its refill (of zeros)

  uint32_t res = 99;
  // Slot 0, pinned by this very holder: INTACT.
  ASSERT_EQ(slot_unregister(f_.fd(), word_off(0), &res), 0);
  EXPECT_EQ(res, VOLFS_INTACT);
  EXPECT_TRUE(state_is(f_, word_off(0), VOLFS_SLOT_NONE));
  // Slot 1, purged: PURGED.
  ASSERT_EQ(slot_unregister(f_.fd(), word_off(1), &res), 0);
  EXPECT_EQ(res, VOLFS_PURGED);
  EXPECT_TRUE(state_is(f_, word_off(1), VOLFS_SLOT_NONE));
  // Slot 2, unpinned and not purged since the pin that learnt it: INTACT.
  ASSERT_EQ(slot_unregister(f_.fd(), word_off(2), &res), 0);
  EXPECT_EQ(res, VOLFS_INTACT);
  EXPECT_TRUE(state_is(f_, word_off(2), VOLFS_SLOT_NONE));

  EXPECT_TRUE(
      status_is(f_.fd(), 0, 0, {0, 0, 0},
                StatusExpect{.nonvolatile = kFilePages, .resident = kFilePages - 2 * kSlotPages}));
  EXPECT_EQ(unpin(&s0), 0) << "the unpin of a pin held across UNREGISTER";
  EXPECT_EQ(pin(&s0), -ESTALE) << "pin of an unregistered slot";
  volfs_slot fresh = slot_of(f_, word_off(1), r.holder, false);
  EXPECT_EQ(pin(&fresh), -ESTALE);
  // Plain data now: a purge leaves it, MARK may cover it.
  EXPECT_EQ(purge_all(), 0);
  EXPECT_TRUE(pages_are(path_, data_page(0), file_pages(data_page(0), kSlotPages), f_.data()));
  EXPECT_EQ(vol_mark(f_.fd(), data_off(0), slot_len()), 0);
  EXPECT_EQ(vol_unmark(f_.fd(), data_off(0), slot_len(), &res), 0);
  // And the same geometry makes a new slot.
  EXPECT_EQ(reg(f_, 0).result, VOLFS_SLOT_CREATED);
}

TEST_F(SlotTest, UnregisterIsEbusyWhileAnotherHolderPins) {
  SlotRegister r = reg(f_, 0);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  volfs_slot s = slot_of(f_, word_off(0), r.holder, true);
  ASSERT_EQ(unpin(&s), 0);
  MappedFile g;
  ASSERT_TRUE(g.open(path_, kFilePages * kPage));
  SlotRegister rg = reg(g, 0);
  volfs_slot sg = slot_of(g, word_off(0), rg.holder, false);
  ASSERT_EQ(pin(&sg), VOLFS_INTACT);
  uint32_t res;
  EXPECT_EQ(slot_unregister(f_.fd(), word_off(0), &res), -EBUSY);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(rg.holder)));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0}));
  ASSERT_EQ(unpin(&sg), 0);
  ASSERT_EQ(slot_unregister(f_.fd(), word_off(0), &res), 0);
  EXPECT_EQ(res, VOLFS_INTACT);
  EXPECT_TRUE(state_is(f_, word_off(0), VOLFS_SLOT_NONE));
  EXPECT_EQ(pin(&sg), -ESTALE) << "the other holder's next pin";
}

TEST_F(SlotTest, TruncateOrPunchOverAWordUnregistersItsSlot) {
  // Words near the end here: A's in page 15, B's in page 14, C's and D's in 13.
  const uint64_t wa = 15 * kPage, wb = 14 * kPage, wc = 13 * kPage + 32, wd = 13 * kPage;
  SlotRegister a{}, b{}, c{}, d{};
  ASSERT_EQ(slot_register(f_.fd(), data_off(0), slot_len(), wa, 1, 0, &a), 0);
  ASSERT_EQ(slot_register(f_.fd(), data_off(1), slot_len(), wb, 1, 0, &b), 0);
  ASSERT_EQ(slot_register(f_.fd(), data_off(2), slot_len(), wc, 1, 0, &c), 0);
  ASSERT_EQ(slot_register(f_.fd(), data_off(3), slot_len(), wd, 1, 0, &d), 0);
  volfs_slot sb = slot_of(f_, wb, b.holder, true);
  ASSERT_EQ(unpin(&sb), 0);  // B unpinned, the others pinned
  ASSERT_TRUE(status_is(f_.fd(), 0, 0, {4, 3, 0}));

  // Punch B's word page; punch just C's 16 bytes (D's word shares the page).
  ASSERT_EQ(fallocate(f_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, wb, kPage), 0)
      << strerror(errno);
  ASSERT_EQ(fallocate(f_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, wc, kWordSize), 0)
      << strerror(errno);
  volfs_slot fresh = slot_of(f_, wb, b.holder, false);
  EXPECT_EQ(pin(&fresh), -ESTALE) << "B after a punch over its word";
  fresh = slot_of(f_, wc, c.holder, false);
  EXPECT_EQ(pin(&fresh), -ESTALE) << "C after a punch of its word's 16 bytes";
  EXPECT_TRUE(word_is(f_, wd, kLive | holder_bit(d.holder))) << "D's word was not punched";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {2, 2, 0}));

  // Truncate A's word away (and back: the page reads zeros).
  ASSERT_EQ(ftruncate(f_.fd(), 15 * kPage), 0) << strerror(errno);
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0})) << "A after a truncate of its word";
  ASSERT_EQ(ftruncate(f_.fd(), kFilePages * kPage), 0) << strerror(errno);
  fresh = slot_of(f_, wa, a.holder, false);
  EXPECT_EQ(pin(&fresh), -ESTALE) << "A after a truncate of its word";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0}));
  // Their data is plain data now, which no purge touches.
  EXPECT_EQ(purge_all(), 0);
  EXPECT_TRUE(pages_are(path_, data_page(0), file_pages(data_page(0), 3 * kSlotPages), f_.data()));
  EXPECT_EQ(vol_mark(f_.fd(), data_off(0), 3 * slot_len()), 0);
}

TEST_F(SlotTest, TruncateIntoAnUnpinnedSlotsDataUnregistersIt) {
  // A: the data pages 13-14, its word at 0; unpinned.
  SlotRegister a{};
  ASSERT_EQ(slot_register(f_.fd(), 13 * kPage, 2 * kPage, 0, 1, 0, &a), 0);
  volfs_slot s = slot_of(f_, 0, a.holder, true);
  ASSERT_EQ(unpin(&s), 0);
  // Truncating at the end of its data leaves it.
  ASSERT_EQ(ftruncate(f_.fd(), 15 * kPage), 0) << strerror(errno);
  EXPECT_TRUE(word_is(f_, 0, kLive));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 0, 0}));
  // Cutting into it unregisters it.
  ASSERT_EQ(ftruncate(f_.fd(), 14 * kPage), 0) << strerror(errno);
  EXPECT_TRUE(state_is(f_, 0, VOLFS_SLOT_NONE)) << "the word survived the truncate";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {0, 0, 0}, StatusExpect{.nonvolatile = 14, .resident = 14}));
  EXPECT_EQ(pin(&s), -ESTALE);
  EXPECT_EQ(purge_all(), 0);
  EXPECT_TRUE(pages_are(path_, 13, file_pages(13, 1)));
}

TEST_F(SlotTest, PunchOverAnUnpinnedSlotsDataPurgesIt) {
  SlotRegister r = reg(f_, 0, 2);
  volfs_slot s0 = slot_of(f_, word_off(0), r.holder, true);
  volfs_slot s1 = slot_of(f_, word_off(1), r.holder, true);
  ASSERT_EQ(unpin(&s0), 0);
  ASSERT_EQ(unpin(&s1), 0);
  // One page of slot 0; all of slot 1.
  ASSERT_EQ(
      fallocate(f_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, data_off(0) + kPage, kPage), 0)
      << strerror(errno);
  ASSERT_EQ(fallocate(f_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, data_off(1), slot_len()),
            0)
      << strerror(errno);
  EXPECT_TRUE(word_is(f_, word_off(0), kPurged)) << "a punch into an unpinned slot's data";
  EXPECT_TRUE(word_is(f_, word_off(1), kPurged)) << "a punch over an unpinned slot's data";
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {2, 0, 2}));
  EXPECT_EQ(pin(&s0), VOLFS_PURGED);
  EXPECT_EQ(pin(&s1), VOLFS_PURGED);
  EXPECT_TRUE(pages_are(path_, data_page(0) + 1, zero_pages(1 + kSlotPages), f_.data()));
}

TEST_F(SlotTest, PunchOverAPinnedSlotsDataIsAPlainWriteOfZeros) {
  SlotRegister r = reg(f_, 0);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  volfs_slot s = slot_of(f_, word_off(0), r.holder, true);
  ASSERT_EQ(
      fallocate(f_.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, data_off(0) + kPage, kPage), 0)
      << strerror(errno);
  EXPECT_TRUE(word_is(f_, word_off(0), kLive | holder_bit(r.holder)));
  EXPECT_TRUE(status_is(f_.fd(), 0, 0, {1, 1, 0}));
  ASSERT_EQ(unpin(&s), 0);
  EXPECT_EQ(pin(&s), VOLFS_INTACT) << "nothing was purged";
  EXPECT_TRUE(
      pages_are(path_, data_page(0), file_pages(data_page(0), 1) + zero_pages(1), f_.data()));
}

// ---------------------------------------------------------------------------
// volctl status.

// Runs a command; its stdout, or nullopt if it did not exit 0.
std::optional<std::string> run_command(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return std::nullopt;
  return out;
}

TEST_F(SlotTest, VolctlStatusShowsTheSlotCounts) {
  SlotRegister r = reg(f_, 0, 4);
  ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
  std::vector<volfs_slot> s;
  for (uint64_t k = 0; k < 4; ++k) s.push_back(slot_of(f_, word_off(k), r.holder, true));
  for (uint64_t k = 1; k < 4; ++k) ASSERT_EQ(unpin(&s[k]), 0);
  ASSERT_EQ(purge_all(), static_cast<int64_t>(3 * slot_len()));
  ASSERT_EQ(pin(&s[3]), VOLFS_PURGED);  // 4 slots, 0 and 3 pinned, 1 and 2 purged

  const std::string volctl = std::string(VOLCTL_BIN) + " status '" + path_ + "'";
  std::optional<std::string> text = run_command(volctl);
  ASSERT_TRUE(text.has_value()) << volctl << " failed";
  EXPECT_NE(text->find("\nslots: 4\npinned_slots: 2\npurged_slots: 2\n"), std::string::npos)
      << *text;
  std::optional<std::string> json = run_command(volctl + " --json");
  ASSERT_TRUE(json.has_value());
  EXPECT_NE(json->find(", \"slots\": 4, \"pinned_slots\": 2, \"purged_slots\": 2}"),
            std::string::npos)
      << *json;
  json = run_command(volctl + " --json --offset " + std::to_string(data_off(1)) + " --length " +
                     std::to_string(slot_len()));
  ASSERT_TRUE(json.has_value());
  EXPECT_NE(json->find("\"slots\": 1, \"pinned_slots\": 0, \"purged_slots\": 1}"),
            std::string::npos)
      << *json;
}

}  // namespace
}  // namespace volfs::test
