// volatile_test.cc: functional tests of volatile ranges through the ioctl ABI
// (client/include/volfs/volfs.h). Each case runs on its own private mount and,
// where it matters, spreads the work over real processes: one marks, another
// purges, a third unmarks, while others hold MAP_SHARED mappings. After each
// scenario the global accounting (VOLFS_IOC_STATS) is compared field by field.
// The one promise under test: a page that is not volatile is never purged,
// and UNMARK never answers INTACT for a range whose data was lost.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "volatile_util.h"
#include "volfs_abi_layout.h"  // static_asserts: the ABI layout, hand-computed

namespace volfs::test {
namespace {

using std::chrono::milliseconds;

const uint64_t kPage = page_size();

// ---------------------------------------------------------------------------
// Helpers.

// Fails the child with the errno of a -errno result.
#define CHILD_CHECK_OK(expr)                                \
  do {                                                      \
    int volfs_e_ = (expr);                                  \
    if (volfs_e_ != 0) {                                    \
      errno = -volfs_e_;                                    \
      ::volfs::test::child_fail(__FILE__, __LINE__, #expr); \
    }                                                       \
  } while (0)

std::vector<std::string> pattern_pages(uint32_t tag, uint64_t first, uint64_t n, uint64_t gen = 1) {
  std::vector<std::string> v;
  for (uint64_t p = first; p < first + n; ++p) v.push_back(page_bytes(tag, p, gen));
  return v;
}

// Compares pages [first, first + want.size()) of path with want, through the
// page cache (pread) and from the daemon's store (O_DIRECT).
::testing::AssertionResult pages_are(const std::string& path, uint64_t first,
                                     const std::vector<std::string>& want) {
  const size_t len = want.size() * kPage;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return ::testing::AssertionFailure() << "open " << path << ": " << strerror(errno);
  UniqueFd dfd(open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!dfd.ok()) {
    return ::testing::AssertionFailure() << "open O_DIRECT " << path << ": " << strerror(errno);
  }
  std::unique_ptr<char, decltype(&free)> direct(static_cast<char*>(aligned_alloc(kPage, len)),
                                                &free);
  std::optional<std::string> cached = pread_some(fd.get(), len, first * kPage);
  if (!cached || cached->size() != len) {
    return ::testing::AssertionFailure()
           << "pread " << path << ": " << (cached ? "short" : strerror(errno));
  }
  ssize_t n = pread_direct(dfd.get(), direct.get(), len, first * kPage);
  if (n != static_cast<ssize_t>(len)) {
    return ::testing::AssertionFailure() << "O_DIRECT pread " << path << ": "
                                         << (n < 0 ? strerror(static_cast<int>(-n)) : "short");
  }
  for (size_t i = 0; i < want.size(); ++i) {
    std::string d = describe_page_mismatch(cached->data() + i * kPage, want[i].data());
    if (!d.empty()) {
      return ::testing::AssertionFailure()
             << path << " page " << first + i << " (page cache): " << d;
    }
    d = describe_page_mismatch(direct.get() + i * kPage, want[i].data());
    if (!d.empty()) {
      return ::testing::AssertionFailure() << path << " page " << first + i << " (store): " << d;
    }
  }
  return ::testing::AssertionSuccess();
}

// Child-side check of a mapping against expected pages: exit status 1 with a
// message on the first mismatch.
void child_expect_mapped(const char* map, uint64_t first, const std::vector<std::string>& want,
                         const char* what) {
  for (size_t i = 0; i < want.size(); ++i) {
    std::string d = describe_page_mismatch(map + (first + i) * kPage, want[i].data());
    if (!d.empty()) {
      std::fprintf(stderr, "child %d: %s: page %zu: %s\n", getpid(), what,
                   static_cast<size_t>(first + i), d.c_str());
      _exit(1);
    }
  }
}

char* child_map(const std::string& path, uint64_t pages, int prot = PROT_READ | PROT_WRITE) {
  int fd = open(path.c_str(), (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
  CHILD_CHECK(fd >= 0);
  void* p = mmap(nullptr, pages * kPage, prot, MAP_SHARED, fd, 0);
  CHILD_CHECK(p != MAP_FAILED);
  close(fd);
  return static_cast<char*>(p);
}

// Marks in a child process of its own, through its own open file.
::testing::AssertionResult mark_in_child(const std::string& path, uint64_t off, uint64_t len,
                                         uint32_t flags = 0) {
  int st = run_in_child([&] {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    CHILD_CHECK(fd >= 0);
    CHILD_CHECK_OK(vol_mark(fd, off, len, flags));
    return 0;
  });
  return exited_with(st, 0);
}

// Unmarks in a child process of its own; VOLFS_INTACT, VOLFS_PURGED, or -1.
int unmark_in_child(const std::string& path, uint64_t off, uint64_t len) {
  int st = run_in_child([&] {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    CHILD_CHECK(fd >= 0);
    uint32_t result = 0;
    CHILD_CHECK_OK(vol_unmark(fd, off, len, &result));
    if (result == VOLFS_INTACT) return 10;
    if (result == VOLFS_PURGED) return 11;
    std::fprintf(stderr, "unmark result %u\n", result);
    return 12;
  });
  if (WIFEXITED(st) && WEXITSTATUS(st) == 10) return VOLFS_INTACT;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 11) return VOLFS_PURGED;
  ADD_FAILURE() << "unmark child " << describe_wait_status(st);
  return -1;
}

// Purges through the root directory in a child process of its own; the bytes
// purged, or -errno.
int64_t purge_in_child(const std::string& mountpoint, uint64_t bytes,
                       std::optional<Credentials> creds = std::nullopt) {
  SharedBlock<std::atomic<int64_t>> out;
  ChildProcess child;
  child.start(
      [&] {
        out->store(purge_via_root(mountpoint, bytes));
        return 0;
      },
      creds);
  int st = child.wait();
  if (!exited_with(st, 0)) {
    ADD_FAILURE() << "purge child " << describe_wait_status(st);
    return -1000;
  }
  return out->load();
}

class VolatileTest : public MountTest {
 protected:
  std::string P(std::string_view name) const { return mount_.path(name); }

  // Creates name holding pages [0, pages) of page_bytes(tag, p, gen).
  void make_file(const std::string& name, uint64_t pages, uint32_t tag, uint64_t gen = 1) {
    UniqueFd fd(open(P(name).c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok()) << name << ": " << strerror(errno);
    std::string data;
    for (uint64_t p = 0; p < pages; ++p) data += page_bytes(tag, p, gen);
    ASSERT_TRUE(pwrite_all(fd.get(), data, 0)) << name << ": " << strerror(errno);
  }

  volfs_stats stats() const {
    std::optional<volfs_stats> s = mount_stats(mount_.mountpoint());
    EXPECT_TRUE(s.has_value()) << "VOLFS_IOC_STATS: " << strerror(errno);
    return s.value_or(volfs_stats{});
  }

  volfs_status status(const std::string& name, uint64_t off = 0, uint64_t len = 0) const {
    std::optional<volfs_status> s = path_status(P(name), off, len);
    EXPECT_TRUE(s.has_value()) << "VOLFS_IOC_GET_STATUS " << name << ": " << strerror(errno);
    return s.value_or(volfs_status{});
  }

  uint64_t purged_in(const std::string& name) const { return status(name).purged_pages; }

  // Waits (bounded) until the stats match, for effects that follow a close
  // or unlink asynchronously (the kernel's FORGET).
  ::testing::AssertionResult eventually_stats(const StatsExpect& e,
                                              milliseconds timeout = milliseconds(5000)) {
    ::testing::AssertionResult last = ::testing::AssertionFailure();
    poll_until(
        [&] {
          last = stats_match(stats(), e);
          return static_cast<bool>(last);
        },
        timeout);
    return last;
  }
};

// ---------------------------------------------------------------------------
// The ABI.

TEST(VolfsAbi, LayoutIsTheSameOn32And64Bit) {
  // The compile-time checks are in volfs_abi_layout.h (included above); here
  // only what the compiler cannot see: the header's own growth contract.
  volfs_stats s{};
  EXPECT_EQ(sizeof(s.sources) / sizeof(s.sources[0]), size_t{VOLFS_SOURCES});
  EXPECT_EQ(_IOC_SIZE(VOLFS_IOC_STATS_V1), size_t{VOLFS_STATS_V1_SIZE});
  EXPECT_EQ(_IOC_NR(VOLFS_IOC_STATS_V1), _IOC_NR(VOLFS_IOC_STATS));
  EXPECT_EQ(_IOC_SIZE(VOLFS_IOC_STATS), sizeof(volfs_stats));
  EXPECT_EQ(_IOC_DIR(VOLFS_IOC_STATS), static_cast<unsigned>(_IOC_READ));
  EXPECT_EQ(_IOC_DIR(VOLFS_IOC_PURGE), static_cast<unsigned>(_IOC_READ | _IOC_WRITE));
}

// ---------------------------------------------------------------------------
// Argument checking.

TEST_F(VolatileTest, MarkAndUnmarkNeedAFileOpenForWriting) {
  make_file("f", 4, 1);
  UniqueFd ro(open(P("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(ro.ok());
  uint32_t result = 0;
  EXPECT_EQ(vol_mark(ro.get(), 0, 0), -EBADF);
  EXPECT_EQ(vol_mark(ro.get(), 0, kPage, VOLFS_MARK_STRICT), -EBADF);
  EXPECT_EQ(vol_unmark(ro.get(), 0, 0, &result), -EBADF);
  // Reading the state needs no write access.
  volfs_status st;
  ASSERT_EQ(vol_status(ro.get(), 0, 0, &st), 0);
  EXPECT_TRUE(status_match(st, {.nonvolatile = 4, .resident = 4}));
  volfs_stats s;
  EXPECT_EQ(vol_stats(ro.get(), &s), 0);

  // O_WRONLY is enough.
  UniqueFd wo(open(P("f").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(wo.ok());
  EXPECT_EQ(vol_mark(wo.get(), 0, 2 * kPage), 0);
  ASSERT_EQ(vol_status(ro.get(), 0, 0, &st), 0);
  EXPECT_TRUE(status_match(st, {.nonvolatile = 2, .volatile_ = 2, .resident = 4}));

  // An O_PATH descriptor is refused by the kernel before volfs sees it.
  UniqueFd path(open(P("f").c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(vol_mark(path.get(), 0, 0), -EBADF);
  EXPECT_EQ(vol_stats(path.get(), &s), -EBADF);

  EXPECT_EQ(vol_unmark(wo.get(), 0, 0, &result), 0);
  EXPECT_EQ(result, VOLFS_INTACT);
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 4,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 0,
                                    .unmark_purged_total = 0,
                                    .unmark_intact_total = 1}));
}

TEST_F(VolatileTest, MisalignedRangesAreEinval) {
  make_file("f", 4, 1);
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  const std::pair<uint64_t, uint64_t> bad[] = {
      {1, kPage}, {kPage / 2, kPage}, {0, 1}, {0, kPage + 1}, {kPage, 100},
      {1, 0},     {kPage + 512, 0},
  };
  for (auto [off, len] : bad) {
    SCOPED_TRACE("offset " + std::to_string(off) + " length " + std::to_string(len));
    uint32_t result;
    volfs_status st;
    EXPECT_EQ(vol_mark(fd.get(), off, len), -EINVAL);
    EXPECT_EQ(vol_mark(fd.get(), off, len, VOLFS_MARK_STRICT), -EINVAL);
    EXPECT_EQ(vol_unmark(fd.get(), off, len, &result), -EINVAL);
    EXPECT_EQ(vol_status(fd.get(), off, len, &st), -EINVAL);
  }
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 4, .resident = 4}));
}

TEST_F(VolatileTest, OverflowingRangesAreEinval) {
  make_file("f", 4, 1);
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  const uint64_t top = UINT64_MAX - kPage + 1;  // the last page-aligned offset
  const std::pair<uint64_t, uint64_t> bad[] = {{top, 2 * kPage}, {kPage, top}, {top, top}};
  for (auto [off, len] : bad) {
    SCOPED_TRACE("offset " + std::to_string(off) + " length " + std::to_string(len));
    uint32_t result;
    volfs_status st;
    EXPECT_EQ(vol_mark(fd.get(), off, len), -EINVAL);
    EXPECT_EQ(vol_unmark(fd.get(), off, len, &result), -EINVAL);
    EXPECT_EQ(vol_status(fd.get(), off, len, &st), -EINVAL);
  }
  // The largest range that does not overflow is fine for UNMARK and
  // GET_STATUS (past the end of the file), not for MARK.
  EXPECT_EQ(vol_mark(fd.get(), 0, top), -EINVAL);
  uint32_t result = 7;
  EXPECT_EQ(vol_unmark(fd.get(), 0, top, &result), 0);
  EXPECT_EQ(result, VOLFS_INTACT);
  volfs_status st;
  ASSERT_EQ(vol_status(fd.get(), 0, top, &st), 0);
  EXPECT_EQ(st.volatile_pages, 0u);
  EXPECT_EQ(st.nonvolatile_pages + st.volatile_pages, top / kPage) << to_string(st);
  EXPECT_EQ(st.resident_pages, 4u);
}

TEST_F(VolatileTest, MarkPastEndOfFileIsEinvalUnmarkAndStatusAreNot) {
  // 2.5 pages: the page-rounded end is page 3.
  {
    UniqueFd fd(open(P("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok());
    std::string data = page_bytes(1, 0, 1) + page_bytes(1, 1, 1) + page_bytes(1, 2, 1);
    data.resize(2 * kPage + kPage / 2);
    ASSERT_TRUE(pwrite_all(fd.get(), data, 0));
  }
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  uint32_t result = 7;
  EXPECT_EQ(vol_mark(fd.get(), 0, 4 * kPage), -EINVAL);
  EXPECT_EQ(vol_mark(fd.get(), 3 * kPage, kPage), -EINVAL);
  EXPECT_EQ(vol_mark(fd.get(), 10 * kPage, 0), -EINVAL);
  EXPECT_EQ(vol_mark(fd.get(), 2 * kPage, 2 * kPage), -EINVAL);
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 3, .resident = 3}))
      << "a refused MARK must change nothing";

  // Up to the rounded end is fine, with an explicit length or with 0.
  EXPECT_EQ(vol_mark(fd.get(), 2 * kPage, kPage), 0);
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 2, .volatile_ = 1, .resident = 3}));
  EXPECT_EQ(vol_mark(fd.get(), 0, 0), 0);
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 3, .resident = 3}));
  EXPECT_EQ(vol_mark(fd.get(), 0, 3 * kPage), 0);

  // UNMARK and GET_STATUS may reach past the end.
  EXPECT_EQ(vol_unmark(fd.get(), 0, 100 * kPage, &result), 0);
  EXPECT_EQ(result, VOLFS_INTACT);
  EXPECT_EQ(vol_unmark(fd.get(), 10 * kPage, kPage, &result), 0);
  EXPECT_EQ(result, VOLFS_INTACT);
  volfs_status st;
  ASSERT_EQ(vol_status(fd.get(), 10 * kPage, 5 * kPage, &st), 0);
  EXPECT_EQ(st.volatile_pages, 0u) << to_string(st);
  EXPECT_EQ(st.resident_pages, 0u) << to_string(st);
  EXPECT_EQ(st.nonvolatile_pages + st.volatile_pages, 5u) << to_string(st);
  ASSERT_EQ(vol_status(fd.get(), 0, 0, &st), 0);
  EXPECT_TRUE(status_match(st, {.nonvolatile = 3, .resident = 3}));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 3,
                                    .volatile_pages = 0,
                                    .unmark_purged_total = 0,
                                    .unmark_intact_total = 2}));
}

TEST_F(VolatileTest, UnknownFlagBitsAreEinval) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  for (int bit = 0; bit < 32; ++bit) {
    uint32_t flag = 1u << bit;
    if (flag & VOLFS_MARK_VALID_FLAGS) continue;
    EXPECT_EQ(vol_mark(fd.get(), 0, 0, flag), -EINVAL) << "flag bit " << bit;
    EXPECT_EQ(vol_mark(fd.get(), 0, 0, flag | VOLFS_MARK_STRICT | VOLFS_MARK_PRIORITY(3)), -EINVAL)
        << "flag bit " << bit;
  }
  // UNMARK takes no flags.
  volfs_range r{};
  r.flags = VOLFS_MARK_STRICT;
  errno = 0;
  EXPECT_EQ(ioctl(fd.get(), VOLFS_IOC_UNMARK_VOLATILE, &r), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 8, .resident = 8}))
      << "a refused MARK must change nothing";

  // Every defined combination is accepted.
  for (uint32_t p = 0; p < 8; ++p) {
    uint32_t flags = VOLFS_MARK_PRIORITY(p) | (p % 2 ? VOLFS_MARK_STRICT : 0);
    EXPECT_EQ(vol_mark(fd.get(), p * kPage, kPage, flags), 0) << "priority " << p;
  }
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .resident = 8, .strict = 4}));
}

TEST_F(VolatileTest, DirectoriesFifosAndUnknownCommandsAreEnotty) {
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  ASSERT_EQ(mkfifo(P("fifo").c_str(), 0644), 0);
  make_file("f", 2, 1);
  for (const std::string& dir : {P("d"), mount_.mountpoint()}) {
    SCOPED_TRACE(dir);
    UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    uint32_t result;
    volfs_status st;
    volfs_stats s;
    EXPECT_EQ(vol_mark(fd.get(), 0, 0), -ENOTTY);
    EXPECT_EQ(vol_unmark(fd.get(), 0, 0, &result), -ENOTTY);
    EXPECT_EQ(vol_status(fd.get(), 0, 0, &st), -ENOTTY);
    EXPECT_EQ(vol_stats(fd.get(), &s), 0);  // STATS works on any file
  }
  {
    UniqueFd fd(open(P("fifo").c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    uint32_t result;
    volfs_status st;
    EXPECT_EQ(vol_mark(fd.get(), 0, 0), -ENOTTY);
    EXPECT_EQ(vol_unmark(fd.get(), 0, 0, &result), -ENOTTY);
    EXPECT_EQ(vol_status(fd.get(), 0, 0, &st), -ENOTTY);
  }
  {
    UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    volfs_range r{};
    uint64_t small = 0;
    errno = 0;
    EXPECT_EQ(ioctl(fd.get(), _IOWR(VOLFS_IOC_MAGIC, 99, struct volfs_range), &r), -1);
    EXPECT_EQ(errno, ENOTTY) << "unknown command number";
    errno = 0;
    EXPECT_EQ(ioctl(fd.get(), _IOWR(VOLFS_IOC_MAGIC, 1, uint64_t), &small), -1);
    EXPECT_EQ(errno, ENOTTY) << "MARK's number with the wrong size";
    errno = 0;
    EXPECT_EQ(ioctl(fd.get(), _IOWR('W', 1, struct volfs_range), &r), -1);
    EXPECT_EQ(errno, ENOTTY) << "another magic";
  }
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 2, .resident = 2}));
}

class VolatileAllowOtherTest : public VolatileTest {
 protected:
  std::string mount_options() const override { return "size=64m,allow_other"; }
};

TEST_F(VolatileAllowOtherTest, PurgeNeedsRootOrTheMountOwner) {
  make_file("f", 4, 1);
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0));
  const std::string mnt = mount_.mountpoint();
  const std::string f = P("f");
  const std::string g = P("g");
  int st = run_as_user([&] {
    // Anyone may read the accounting and a file's state...
    std::optional<volfs_stats> s = mount_stats(mnt);
    CHILD_CHECK(s.has_value());
    CHILD_CHECK(s->volatile_pages == 4);
    std::optional<volfs_status> fs = path_status(f);
    CHILD_CHECK(fs.has_value());
    CHILD_CHECK(fs->volatile_pages == 4);
    // ...but not purge: that takes other users' data.
    CHILD_CHECK(purge_via_root(mnt, VOLFS_PURGE_ALL) == -EPERM);
    CHILD_CHECK(purge_via_root(mnt, kPage) == -EPERM);
    int ffd = open(f.c_str(), O_RDONLY);
    CHILD_CHECK(ffd >= 0);
    uint64_t purged = 0;
    CHILD_CHECK(vol_purge(ffd, VOLFS_PURGE_ALL, &purged) == -EPERM);
    // Marking its own file is fine.
    int gfd = open(g.c_str(), O_CREAT | O_RDWR, 0644);
    CHILD_CHECK(gfd >= 0);
    std::string data = page_bytes(2, 0, 1) + page_bytes(2, 1, 1);
    CHILD_CHECK(pwrite_all(gfd, data, 0));
    CHILD_CHECK_OK(vol_mark(gfd, 0, 0, VOLFS_MARK_PRIORITY(0)));
    return 0;
  });
  EXPECT_TRUE(exited_with(st, 0));
  EXPECT_TRUE(stats_match(stats(), {.files = 2,
                                    .resident_pages = 6,
                                    .volatile_pages = 6,
                                    .volatile_resident_pages = 6,
                                    .purged_pages = 0,
                                    .pages_purged_total = 0,
                                    .purge_events_total = 0}));
  // Root may.
  EXPECT_EQ(purge_in_child(mnt, VOLFS_PURGE_ALL), static_cast<int64_t>(6 * kPage));
  EXPECT_EQ(purged_in("f"), 4u);
  EXPECT_EQ(purged_in("g"), 2u);
  EXPECT_TRUE(stats_match(stats(), {.files = 2,
                                    .resident_pages = 0,
                                    .volatile_pages = 6,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 6,
                                    .pages_purged_total = 6}));
}

// ---------------------------------------------------------------------------
// Zero-fill and strict pages.

TEST_F(VolatileTest, PurgedZeroFillPagesReadAsZerosEverywhere) {
  make_file("f", 8, 1);
  const std::string f = P("f");
  SyncPipe mapped, go;
  ChildProcess reader;  // holds a mapping from before the purge
  reader.start([&] {
    char* m = child_map(f, 8);
    child_expect_mapped(m, 0, pattern_pages(1, 0, 8), "before the purge");
    mapped.post();
    CHILD_CHECK(go.wait());
    // Right after PURGE returned: zeros through the old mapping.
    child_expect_mapped(m, 0, zero_pages(8), "existing mapping after the purge");
    // Writing a purged page through the mapping makes it resident again.
    fill_page(m + 5 * kPage, 1, 5, 2);
    CHILD_CHECK(msync(m, 8 * kPage, MS_SYNC) == 0);
    return 0;
  });
  ASSERT_TRUE(mapped.wait());
  ASSERT_TRUE(mark_in_child(f, 0, 0));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .resident = 8}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(8 * kPage));
  go.post();
  EXPECT_TRUE(exited_with(reader.wait(), 0));

  // A new mapping and read(2), in yet another process.
  std::vector<std::string> want = zero_pages(5) + pattern_pages(1, 5, 1, 2) + zero_pages(2);
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            char* m = child_map(f, 8, PROT_READ);
                            child_expect_mapped(m, 0, want, "new mapping");
                            int fd = open(f.c_str(), O_RDONLY);
                            CHILD_CHECK(fd >= 0);
                            std::optional<std::string> d = pread_some(fd, 8 * kPage, 0);
                            CHILD_CHECK(d && d->size() == 8 * kPage);
                            child_expect_mapped(d->data(), 0, want, "read(2)");
                            return 0;
                          }),
                          0));
  EXPECT_TRUE(pages_are(f, 0, want));
  // Still volatile and still purged: the data it had when marked is gone.
  // In passthrough the mappings map the store, and a tmpfs page read through
  // a shared mapping is allocated (zeroed) as on tmpfs itself.
  const uint64_t resident = passthrough() ? 8 : 1;
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .purged = 8, .resident = resident}));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = resident,
                                    .volatile_pages = 8,
                                    .volatile_resident_pages = resident,
                                    .purged_pages = 8,
                                    .pages_purged_total = 8,
                                    .purge_events_total = 1,
                                    .false_purged_total = 0,
                                    .unmark_purged_total = 0,
                                    .unmark_intact_total = 0}));

  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, want));
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 8, .resident = resident}));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = resident,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 8,
                                    .purge_events_total = 1,
                                    .false_purged_total = 0,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 0}));
}

TEST_F(VolatileTest, WriteToPurgedPageKeepsItVolatileAndUnmarkStillSaysPurged) {
  make_file("f", 4, 1);
  const std::string f = P("f");
  ASSERT_TRUE(mark_in_child(f, 0, 0, VOLFS_MARK_PRIORITY(1)));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(4 * kPage));
  // write(2) in another process.
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            int fd = open(f.c_str(), O_RDWR);
                            CHILD_CHECK(fd >= 0);
                            CHILD_CHECK(pwrite_all(fd, page_bytes(1, 2, 3), 2 * kPage));
                            return 0;
                          }),
                          0));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 4, .purged = 4, .resident = 1}));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(2) + pattern_pages(1, 2, 1, 3) + zero_pages(1)));
  EXPECT_TRUE(stats_match(
      stats(),
      {.resident_pages = 1, .volatile_pages = 4, .volatile_resident_pages = 1, .purged_pages = 4}));
  // Unmarking only the rewritten page still says PURGED: its marked data
  // was lost, even though it holds data now.
  EXPECT_EQ(unmark_in_child(f, 2 * kPage, kPage), static_cast<int>(VOLFS_PURGED));
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(2) + pattern_pages(1, 2, 1, 3) + zero_pages(1)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 1,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4,
                                    .purge_events_total = 1,
                                    .unmark_purged_total = 2,
                                    .unmark_intact_total = 0}));
}

TEST_F(VolatileTest, PurgeDropsDirtyMappedPagesInsteadOfWritingThemBack) {
  make_file("f", 4, 1);
  const std::string f = P("f");
  SyncPipe dirty, go;
  ChildProcess writer;
  writer.start([&] {
    int fd = open(f.c_str(), O_RDWR);
    CHILD_CHECK(fd >= 0);
    char* m = child_map(f, 4);
    CHILD_CHECK_OK(vol_mark(fd, 0, 0));
    for (uint64_t p = 0; p < 4; ++p) fill_page(m + p * kPage, 1, p, 2);  // dirty, not synced
    dirty.post();
    CHILD_CHECK(go.wait());
    child_expect_mapped(m, 0, zero_pages(4), "dirty mapping after the purge");
    return 0;
  });
  ASSERT_TRUE(dirty.wait());
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(4 * kPage));
  go.post();
  EXPECT_TRUE(exited_with(writer.wait(), 0));
  // In passthrough the zeros the child read through its mapping are tmpfs
  // pages of the store (allocated by the read fault, as on tmpfs).
  const uint64_t resident = passthrough() ? 4 : 0;
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 4, .purged = 4, .resident = resident}));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(4)));
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(4)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = resident,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4,
                                    .unmark_purged_total = 1}));
}

TEST_F(VolatileTest, StrictPurgedPagesRaiseSigbusAndEio) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  const std::string f = P("f");
  const auto neighbours = [] {
    return std::vector<std::pair<uint64_t, std::vector<std::string>>>{{0, pattern_pages(1, 0, 2)},
                                                                      {4, pattern_pages(1, 4, 4)}};
  };
  SyncPipe mapped1, go1, mapped2, go2, mapped3, go3;
  ChildProcess reader;  // existing mapping, reads a strict purged page
  reader.start([&] {
    char* m = child_map(f, 8);
    child_expect_mapped(m, 0, pattern_pages(1, 0, 8), "before the purge");
    mapped1.post();
    CHILD_CHECK(go1.wait());
    for (auto& [first, want] : neighbours()) child_expect_mapped(m, first, want, "neighbour");
    volatile char c = m[2 * kPage + 10];  // SIGBUS here
    (void)c;
    return 0;
  });
  ChildProcess writer;  // existing mapping, writes a strict purged page
  writer.start([&] {
    char* m = child_map(f, 8);
    child_expect_mapped(m, 0, pattern_pages(1, 0, 8), "before the purge");
    mapped2.post();
    CHILD_CHECK(go2.wait());
    m[3 * kPage] = 'x';  // SIGBUS here
    return 0;
  });
  ChildProcess survivor;  // existing mapping, touches the pages after UNMARK only
  survivor.start([&] {
    char* m = child_map(f, 8);
    child_expect_mapped(m, 0, pattern_pages(1, 0, 8), "before the purge");
    mapped3.post();
    CHILD_CHECK(go3.wait());
    child_expect_mapped(
        m, 0,
        pattern_pages(1, 0, 2) + zero_pages(2) + pattern_pages(1, 4, 1, 2) + pattern_pages(1, 5, 3),
        "existing mapping after UNMARK");
    return 0;
  });
  ASSERT_TRUE(mapped1.wait());
  ASSERT_TRUE(mapped2.wait());
  ASSERT_TRUE(mapped3.wait());

  ASSERT_TRUE(mark_in_child(f, 2 * kPage, 2 * kPage, VOLFS_MARK_STRICT));
  EXPECT_TRUE(
      status_match(status("f"), {.nonvolatile = 6, .volatile_ = 2, .resident = 8, .strict = 2}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(2 * kPage));
  go1.post();
  go2.post();
  EXPECT_TRUE(killed_by(reader.wait(), SIGBUS)) << "read of a strict purged page, old mapping";
  EXPECT_TRUE(killed_by(writer.wait(), SIGBUS)) << "write of a strict purged page, old mapping";

  // A new mapping: neighbours work, the purged page raises SIGBUS.
  int st = run_in_child([&] {
    char* m = child_map(f, 8, PROT_READ);
    for (auto& [first, want] : neighbours()) child_expect_mapped(m, first, want, "neighbour");
    volatile char c = m[3 * kPage + 100];
    (void)c;
    return 0;
  });
  EXPECT_TRUE(killed_by(st, SIGBUS)) << "read of a strict purged page, new mapping";

  // read(2) and write(2): EIO on the purged pages, neighbours fine.
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            int fd = open(f.c_str(), O_RDWR);
                            CHILD_CHECK(fd >= 0);
                            char buf[64];
                            for (uint64_t p : {2, 3}) {
                              errno = 0;
                              CHILD_CHECK(pread(fd, buf, sizeof buf, p * kPage + 8) == -1);
                              CHILD_CHECK(errno == EIO);
                              std::string page = page_bytes(9, p, 9);
                              errno = 0;
                              CHILD_CHECK(pwrite(fd, page.data(), kPage, p * kPage) == -1);
                              CHILD_CHECK(errno == EIO);
                            }
                            std::optional<std::string> d = pread_some(fd, 2 * kPage, 0);
                            CHILD_CHECK(d && d->size() == 2 * kPage);
                            child_expect_mapped(d->data(), 0, pattern_pages(1, 0, 2), "pread");
                            d = pread_some(fd, 4 * kPage, 4 * kPage);
                            CHILD_CHECK(d && d->size() == 4 * kPage);
                            child_expect_mapped(d->data(), 0, pattern_pages(1, 4, 4), "pread");
                            CHILD_CHECK(pwrite_all(fd, page_bytes(1, 4, 2), 4 * kPage));
                            return 0;
                          }),
                          0));
  EXPECT_TRUE(status_match(
      status("f"), {.nonvolatile = 6, .volatile_ = 2, .purged = 2, .resident = 6, .strict = 2}));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 6,
                                    .volatile_pages = 2,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 2,
                                    .pages_purged_total = 2,
                                    .purge_events_total = 1}));

  EXPECT_EQ(unmark_in_child(f, 2 * kPage, 2 * kPage), static_cast<int>(VOLFS_PURGED));
  // After UNMARK: zeros, through read(2), a new mapping and the old one.
  std::vector<std::string> want =
      pattern_pages(1, 0, 2) + zero_pages(2) + pattern_pages(1, 4, 1, 2) + pattern_pages(1, 5, 3);
  EXPECT_TRUE(pages_are(f, 0, want));
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            char* m = child_map(f, 8, PROT_READ);
                            child_expect_mapped(m, 0, want, "new mapping after UNMARK");
                            return 0;
                          }),
                          0));
  go3.post();
  EXPECT_TRUE(exited_with(survivor.wait(), 0));
  // And the pages take writes again.
  {
    UniqueFd fd(open(f.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    EXPECT_TRUE(pwrite_all(fd.get(), page_bytes(1, 2, 5), 2 * kPage));
  }
  want[2] = page_bytes(1, 2, 5);
  EXPECT_TRUE(pages_are(f, 0, want));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 7,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 2,
                                    .purge_events_total = 1,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 0}));
}

// Readahead batches neighbouring pages into one READ; a strict purged page in
// the batch must not make its non-volatile neighbours unreadable, and a
// write(2) that fails on it must not leave its bytes in a neighbour's cache.
TEST_F(VolatileTest, StrictPurgedPageDoesNotBreakItsNeighbours) {
  use_cached_io_mode();  // strict marks below
  constexpr uint64_t kPages = 64;
  make_file("f", kPages, 1);
  const std::string f = P("f");
  ASSERT_TRUE(mark_in_child(f, 30 * kPage, 2 * kPage, VOLFS_MARK_STRICT));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(2 * kPage));
  auto drop_cache = [&] {
    UniqueFd fd(open(f.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
  };
  const std::vector<std::string> before = pattern_pages(1, 0, 30);
  const std::vector<std::string> after = pattern_pages(1, 32, kPages - 32);
  drop_cache();
  // Sequential read(2) stops at the purged page: a short read, not an error.
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            int fd = open(f.c_str(), O_RDONLY);
                            CHILD_CHECK(fd >= 0);
                            std::string buf(kPages * kPage, '\0');
                            ssize_t n = pread(fd, buf.data(), buf.size(), 0);
                            CHILD_CHECK(n == static_cast<ssize_t>(30 * kPage));
                            child_expect_mapped(buf.data(), 0, before, "read up to the hole");
                            std::optional<std::string> d =
                                pread_some(fd, (kPages - 32) * kPage, 32 * kPage);
                            CHILD_CHECK(d && d->size() == (kPages - 32) * kPage);
                            child_expect_mapped(d->data(), 0, after, "read after the hole");
                            return 0;
                          }),
                          0));
  drop_cache();
  // Faults around the purged page, through a fresh mapping.
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            char* m = child_map(f, kPages, PROT_READ);
                            child_expect_mapped(m, 29, {page_bytes(1, 29, 1)}, "page 29");
                            child_expect_mapped(m, 32, {page_bytes(1, 32, 1)}, "page 32");
                            child_expect_mapped(m, 0, before, "mapping before the hole");
                            child_expect_mapped(m, 32, after, "mapping after the hole");
                            return 0;
                          }),
                          0));
  // A write(2) over page 29 and the purged page 30 fails as a whole...
  {
    UniqueFd fd(open(f.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    std::string junk = page_bytes(9, 29, 9) + page_bytes(9, 30, 9);
    errno = 0;
    EXPECT_EQ(pwrite(fd.get(), junk.data(), junk.size(), 29 * kPage), -1);
    EXPECT_EQ(errno, EIO);
  }
  // ...and page 29 keeps its data, in the cache and in the store.
  EXPECT_TRUE(pages_are(f, 29, {page_bytes(1, 29, 1)}));
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            char* m = child_map(f, kPages, PROT_READ);
                            child_expect_mapped(m, 29, {page_bytes(1, 29, 1)}, "page 29");
                            return 0;
                          }),
                          0));
  EXPECT_EQ(unmark_in_child(f, 30 * kPage, 2 * kPage), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, before + zero_pages(2) + after));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = kPages - 2,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 2,
                                    .unmark_purged_total = 1}));
}

// Issue 11, defect 3: a purged zero-fill page whose zeros are in the kernel's
// cache, re-marked strict, fails like any strict purged page: the mark's
// answer comes after the kernel's copy was dropped.
TEST_F(VolatileTest, PurgedZeroFillPageRemarkedStrictFailsEvenWhenCached) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 4, 1);
  const std::string f = P("f");
  ASSERT_TRUE(mark_in_child(f, kPage, kPage));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(kPage));
  UniqueFd fd(open(f.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  std::string buf(kPage, 'q');
  // Zeros, now cached; a mapping holds them too.
  ASSERT_EQ(pread(fd.get(), buf.data(), kPage, kPage), static_cast<ssize_t>(kPage));
  EXPECT_TRUE(is_all_zero(buf.data(), kPage));
  SyncPipe mapped, go;
  ChildProcess toucher;  // an existing mapping that has the zeros faulted in
  toucher.start([&] {
    char* m = child_map(f, 4, PROT_READ);
    volatile char c = m[kPage + 5];
    CHILD_CHECK(c == 0);
    mapped.post();
    CHILD_CHECK(go.wait());
    c = m[kPage + 5];  // SIGBUS here
    return 0;
  });
  ASSERT_TRUE(mapped.wait());
  ASSERT_TRUE(mark_in_child(f, kPage, kPage, VOLFS_MARK_STRICT));
  EXPECT_TRUE(status_match(status("f", kPage, kPage),
                           {.volatile_ = 1, .purged = 1, .resident = 0, .strict = 1}));
  errno = 0;
  EXPECT_EQ(pread(fd.get(), buf.data(), kPage, kPage), -1) << "read(2) of cached zeros";
  EXPECT_EQ(errno, EIO);
  {
    UniqueFd fresh(open(f.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fresh.ok());
    errno = 0;
    EXPECT_EQ(pread(fresh.get(), buf.data(), kPage, kPage), -1) << "read(2) through a new fd";
    EXPECT_EQ(errno, EIO);
  }
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), buf.data(), kPage, kPage), -1) << "write(2)";
  EXPECT_EQ(errno, EIO);
  go.post();
  EXPECT_TRUE(killed_by(toucher.wait(), SIGBUS)) << "existing mapping";
  EXPECT_TRUE(killed_by(run_in_child([&] {
                          char* m = child_map(f, 4, PROT_READ);
                          volatile char c = m[kPage];
                          (void)c;
                          return 0;
                        }),
                        SIGBUS))
      << "new mapping";
  // Neighbours work; after UNMARK the page reads as zeros.
  EXPECT_TRUE(pages_are(f, 0, {page_bytes(1, 0, 1)}));
  EXPECT_EQ(unmark_in_child(f, kPage, kPage), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, pattern_pages(1, 0, 1) + zero_pages(1) + pattern_pages(1, 2, 2)));
}

// ---------------------------------------------------------------------------
// UNMARK answers.

TEST_F(VolatileTest, UnmarkIsIntactWhenOnlyOtherFilesWerePurged) {
  make_file("f", 8, 1);
  make_file("g", 8, 2);
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0, VOLFS_MARK_PRIORITY(7)));
  ASSERT_TRUE(mark_in_child(P("g"), 0, 0, VOLFS_MARK_PRIORITY(0)));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 8 * kPage), static_cast<int64_t>(8 * kPage));
  EXPECT_EQ(unmark_in_child(P("f"), 0, 0), static_cast<int>(VOLFS_INTACT));
  EXPECT_TRUE(pages_are(P("f"), 0, pattern_pages(1, 0, 8)));
  EXPECT_EQ(unmark_in_child(P("g"), 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(P("g"), 0, zero_pages(8)));
  EXPECT_TRUE(stats_match(stats(), {.files = 2,
                                    .resident_pages = 8,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 8,
                                    .purge_events_total = 1,
                                    .false_purged_total = 0,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 1}));
}

TEST_F(VolatileTest, UnmarkingTheIntactHalfOfAPartlyPurgedRangeIsIntact) {
  make_file("f", 8, 1);
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 4 * kPage), static_cast<int64_t>(4 * kPage));
  uint64_t low = status("f", 0, 4 * kPage).purged_pages;
  uint64_t high = status("f", 4 * kPage, 4 * kPage).purged_pages;
  ASSERT_EQ(low + high, 4u);
  ASSERT_TRUE(low == 0 || high == 0) << "the purge split its 4 pages over both halves (" << low
                                     << "+" << high << "); this test needs one half untouched";
  uint64_t intact_half = low == 0 ? 0 : 4;
  uint64_t purged_half = 4 - intact_half;
  EXPECT_EQ(unmark_in_child(P("f"), intact_half * kPage, 4 * kPage),
            static_cast<int>(VOLFS_INTACT));
  EXPECT_TRUE(pages_are(P("f"), intact_half, pattern_pages(1, intact_half, 4)));
  EXPECT_EQ(unmark_in_child(P("f"), purged_half * kPage, 4 * kPage),
            static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(P("f"), purged_half, zero_pages(4)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 4,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 1}));
}

TEST_F(VolatileTest, RemarkingKeepsTheLossOfAnEarlierPurge) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  const std::string f = P("f");
  // Purge half of [0, 4), mark it again, extended: the lost data stays lost.
  ASSERT_TRUE(mark_in_child(f, 0, 4 * kPage));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 2 * kPage), static_cast<int64_t>(2 * kPage));
  ASSERT_TRUE(mark_in_child(f, 0, 0));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .purged = 2, .resident = 6}));
  // Unmarking [4, 8) (never purged) is intact; [0, 4) is not.
  EXPECT_EQ(unmark_in_child(f, 4 * kPage, 4 * kPage), static_cast<int>(VOLFS_INTACT));
  ASSERT_TRUE(mark_in_child(f, 0, 2 * kPage, VOLFS_MARK_STRICT));  // re-mark, other mode
  EXPECT_EQ(unmark_in_child(f, 0, 4 * kPage), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 8, .resident = 6}));
  // A range with purged and never-marked pages answers PURGED too.
  ASSERT_TRUE(mark_in_child(f, 4 * kPage, kPage));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(kPage));
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 5,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 3,
                                    .unmark_purged_total = 2,
                                    .unmark_intact_total = 1}));
}

TEST_F(VolatileTest, PurgeLeavesPagesUnmarkedOutOfALargerMarkAlone) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  const std::string f = P("f");
  ASSERT_TRUE(mark_in_child(f, 0, 0));
  // The middle of the mark becomes non-volatile; the mark's ends stay queued.
  EXPECT_EQ(unmark_in_child(f, 2 * kPage, 4 * kPage), static_cast<int>(VOLFS_INTACT));
  // A younger mark inside an older one, then unmarked again.
  ASSERT_TRUE(mark_in_child(f, 3 * kPage, kPage, VOLFS_MARK_STRICT | VOLFS_MARK_PRIORITY(0)));
  EXPECT_EQ(unmark_in_child(f, 3 * kPage, kPage), static_cast<int>(VOLFS_INTACT));
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 4, .volatile_ = 4, .resident = 8}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(4 * kPage));
  EXPECT_TRUE(pages_are(f, 2, pattern_pages(1, 2, 4)));
  EXPECT_TRUE(
      status_match(status("f"), {.nonvolatile = 4, .volatile_ = 4, .purged = 4, .resident = 4}));
  EXPECT_EQ(unmark_in_child(f, 0, 2 * kPage), static_cast<int>(VOLFS_PURGED));
  EXPECT_EQ(unmark_in_child(f, 6 * kPage, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(2) + pattern_pages(1, 2, 4) + zero_pages(2)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 4,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4,
                                    .unmark_purged_total = 2,
                                    .unmark_intact_total = 2}));
}

TEST_F(VolatileTest, AYoungerMarkInsideAnOlderOneIsPurgedInItsOwnTurn) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  const std::string f = P("f");
  ASSERT_TRUE(mark_in_child(f, 0, 0, VOLFS_MARK_PRIORITY(2)));
  ASSERT_TRUE(mark_in_child(f, 2 * kPage, 2 * kPage, VOLFS_MARK_PRIORITY(5) | VOLFS_MARK_STRICT));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .resident = 8, .strict = 2}));
  // The priority-2 mark now covers 6 pages; they go before the inner two.
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 6 * kPage), static_cast<int64_t>(6 * kPage));
  EXPECT_TRUE(status_match(status("f", 2 * kPage, 2 * kPage),
                           {.volatile_ = 2, .resident = 2, .strict = 2}));
  EXPECT_TRUE(pages_are(f, 2, pattern_pages(1, 2, 2)));
  EXPECT_EQ(unmark_in_child(f, 2 * kPage, 2 * kPage), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), 0);
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(f, 0, zero_pages(2) + pattern_pages(1, 2, 2) + zero_pages(4)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 2,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 6,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 1}));
}

TEST_F(VolatileTest, HolesHaveNothingToPurge) {
  {
    UniqueFd fd(open(P("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(ftruncate(fd.get(), 8 * kPage), 0);
  }
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), 0);
  EXPECT_EQ(unmark_in_child(P("f"), 0, 0), static_cast<int>(VOLFS_INTACT));
  // Only the written page is taken.
  {
    UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(pwrite_all(fd.get(), page_bytes(1, 3, 1), 3 * kPage));
  }
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(kPage));
  EXPECT_TRUE(status_match(status("f"), {.volatile_ = 8, .purged = 1}));
  EXPECT_EQ(unmark_in_child(P("f"), 4 * kPage, 0), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(unmark_in_child(P("f"), 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(P("f"), 0, zero_pages(8)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 0,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 1,
                                    .purge_events_total = 1,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 2}));
}

// ---------------------------------------------------------------------------
// Purge order and amount.

TEST_F(VolatileTest, PurgeOrderIsPriorityThenLeastRecentlyMarked) {
  for (const char* name : {"a", "b", "c"}) make_file(name, 4, name[0]);
  // Each marked by a process of its own, in this order.
  ASSERT_TRUE(mark_in_child(P("a"), 0, 0, VOLFS_MARK_PRIORITY(4)));
  ASSERT_TRUE(mark_in_child(P("b"), 0, 0, VOLFS_MARK_PRIORITY(0)));
  ASSERT_TRUE(mark_in_child(P("c"), 0, 0, VOLFS_MARK_PRIORITY(4)));
  auto purged = [&] {
    return std::vector<uint64_t>{purged_in("a"), purged_in("b"), purged_in("c")};
  };
  const std::string mnt = mount_.mountpoint();
  EXPECT_EQ(purge_in_child(mnt, 4 * kPage), static_cast<int64_t>(4 * kPage));
  EXPECT_EQ(purged(), (std::vector<uint64_t>{0, 4, 0})) << "priority 0 goes first";
  EXPECT_EQ(purge_in_child(mnt, 4 * kPage), static_cast<int64_t>(4 * kPage));
  EXPECT_EQ(purged(), (std::vector<uint64_t>{4, 4, 0})) << "then the older priority-4 mark";
  EXPECT_EQ(purge_in_child(mnt, 4 * kPage), static_cast<int64_t>(4 * kPage));
  EXPECT_EQ(purged(), (std::vector<uint64_t>{4, 4, 4}));
  EXPECT_EQ(purge_in_child(mnt, VOLFS_PURGE_ALL), 0);
  EXPECT_TRUE(stats_match(stats(), {.files = 3,
                                    .resident_pages = 0,
                                    .volatile_pages = 12,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 12,
                                    .pages_purged_total = 12,
                                    .purge_events_total = 3}));
}

TEST_F(VolatileTest, RemarkingMakesARangeTheMostRecentlyMarked) {
  for (const char* name : {"a", "b", "c"}) make_file(name, 2, name[0]);
  ASSERT_TRUE(mark_in_child(P("a"), 0, 0));
  ASSERT_TRUE(mark_in_child(P("b"), 0, 0));
  ASSERT_TRUE(mark_in_child(P("c"), 0, 0));
  ASSERT_TRUE(mark_in_child(P("a"), 0, 0));  // a is now the youngest
  const std::string mnt = mount_.mountpoint();
  EXPECT_EQ(purge_in_child(mnt, 2 * kPage), static_cast<int64_t>(2 * kPage));
  EXPECT_EQ(purged_in("b"), 2u);
  EXPECT_EQ(purged_in("a") + purged_in("c"), 0u);
  EXPECT_EQ(purge_in_child(mnt, 2 * kPage), static_cast<int64_t>(2 * kPage));
  EXPECT_EQ(purged_in("c"), 2u);
  EXPECT_EQ(purged_in("a"), 0u);
  EXPECT_EQ(purge_in_child(mnt, 2 * kPage), static_cast<int64_t>(2 * kPage));
  EXPECT_EQ(purged_in("a"), 2u);
}

TEST_F(VolatileTest, PurgeOrderCoversEveryPriorityAndTheDefault) {
  // Marked from priority 7 down to 0, so mark age alone would give the
  // opposite order; "dflt" gets the default priority (4) after "p4".
  for (int p = 7; p >= 0; --p) {
    std::string name = "p" + std::to_string(p);
    make_file(name, 1, static_cast<uint32_t>(p));
    ASSERT_TRUE(mark_in_child(P(name), 0, 0, VOLFS_MARK_PRIORITY(p)));
    if (p == 4) {
      make_file("dflt", 1, 100);
      ASSERT_TRUE(mark_in_child(P("dflt"), 0, 0));
    }
  }
  const std::vector<std::string> order = {"p0", "p1", "p2", "p3", "p4", "dflt", "p5", "p6", "p7"};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(purge_in_child(mount_.mountpoint(), kPage), static_cast<int64_t>(kPage));
    for (size_t j = 0; j < order.size(); ++j) {
      EXPECT_EQ(purged_in(order[j]), j <= i ? 1u : 0u)
          << "after purge " << i + 1 << ", file " << order[j];
    }
  }
}

// A batch of {offset, length, flags} ranges.
volfs_range_batch batch_of(std::initializer_list<volfs_range> ranges) {
  volfs_range_batch b{};
  for (const volfs_range& r : ranges) b.ranges[b.count++] = r;
  return b;
}

TEST_F(VolatileTest, BatchesMarkAndUnmarkManyRangesInOneCall) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  // Pages 0, 2, 4 and 6; page 2 at priority 0, so that a one-page purge
  // takes it; page 4 strict.
  volfs_range_batch b = batch_of({{0, kPage, 0, 0},
                                  {2 * kPage, kPage, VOLFS_MARK_PRIORITY(0), 0},
                                  {4 * kPage, kPage, VOLFS_MARK_STRICT, 0},
                                  {6 * kPage, kPage, 0, 0}});
  ASSERT_EQ(ioctl(fd.get(), VOLFS_IOC_MARK_BATCH, &b), 0) << strerror(errno);
  EXPECT_TRUE(
      status_match(status("f"), {.nonvolatile = 4, .volatile_ = 4, .resident = 8, .strict = 1}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), kPage), static_cast<int64_t>(kPage));

  b = batch_of({{0, kPage, 0, 0},
                {2 * kPage, kPage, 0, 0},
                {4 * kPage, kPage, 0, 0},
                {6 * kPage, kPage, 0, 0}});
  for (uint32_t k = 0; k < b.count; ++k) b.ranges[k].result = 99;  // must be overwritten
  ASSERT_EQ(ioctl(fd.get(), VOLFS_IOC_UNMARK_BATCH, &b), 0) << strerror(errno);
  EXPECT_EQ(b.ranges[0].result, VOLFS_INTACT);
  EXPECT_EQ(b.ranges[1].result, VOLFS_PURGED);
  EXPECT_EQ(b.ranges[2].result, VOLFS_INTACT);
  EXPECT_EQ(b.ranges[3].result, VOLFS_INTACT);
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 8, .resident = 7}));
  EXPECT_TRUE(
      pages_are(P("f"), 0, pattern_pages(1, 0, 2) + zero_pages(1) + pattern_pages(1, 3, 5)));
  EXPECT_TRUE(stats_match(stats(), {.volatile_pages = 0,
                                    .pages_purged_total = 1,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 3}));
}

TEST_F(VolatileTest, ABadRangeOrHeaderFailsTheWholeBatchAndChangesNothing) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 4, 1);
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  auto call = [&](unsigned long cmd, volfs_range_batch b) {
    errno = 0;
    return ioctl(fd.get(), cmd, &b) == 0 ? 0 : -errno;
  };
  const volfs_range ok0{0, kPage, 0, 0}, ok1{kPage, kPage, 0, 0};
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, batch_of({ok0, ok1, {3 * kPage, 2 * kPage, 0, 0}})), -EINVAL)
      << "past the end of the file";
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, batch_of({ok0, {2 * kPage + 1, kPage, 0, 0}})), -EINVAL)
      << "misaligned";
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, batch_of({ok0, {kPage, kPage, 0x10000u, 0}})), -EINVAL)
      << "unknown flag";
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, batch_of({})), -EINVAL) << "count 0";
  volfs_range_batch too_many = batch_of({ok0});
  too_many.count = VOLFS_BATCH_MAX + 1;
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, too_many), -EINVAL) << "count over VOLFS_BATCH_MAX";
  volfs_range_batch reserved = batch_of({ok0});
  reserved.reserved[2] = 1;
  EXPECT_EQ(call(VOLFS_IOC_MARK_BATCH, reserved), -EINVAL) << "reserved not zero";
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 4, .resident = 4}));

  ASSERT_EQ(call(VOLFS_IOC_MARK_BATCH, batch_of({ok0, ok1})), 0);
  EXPECT_EQ(call(VOLFS_IOC_UNMARK_BATCH, batch_of({ok0, {kPage, kPage, VOLFS_MARK_STRICT, 0}})),
            -EINVAL)
      << "flags on unmark";
  EXPECT_EQ(call(VOLFS_IOC_UNMARK_BATCH, batch_of({ok0, {kPage + 1, kPage, 0, 0}})), -EINVAL)
      << "misaligned";
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 2, .volatile_ = 2, .resident = 4}))
      << "a failed unmark batch unmarks nothing";

  UniqueFd ro(open(P("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(ro.ok());
  volfs_range_batch b = batch_of({ok0});
  EXPECT_EQ(ioctl(ro.get(), VOLFS_IOC_MARK_BATCH, &b), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(ioctl(ro.get(), VOLFS_IOC_UNMARK_BATCH, &b), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_F(VolatileTest, PurgeTakesUpToTheBytesAskedAndNeverNonVolatilePages) {
  make_file("v", 4, 1);
  make_file("nv", 4, 2);
  ASSERT_TRUE(mark_in_child(P("v"), 0, 0));
  const std::string mnt = mount_.mountpoint();
  EXPECT_EQ(purge_in_child(mnt, 100), 0) << "less than a page";
  EXPECT_EQ(purge_in_child(mnt, kPage + 100), static_cast<int64_t>(kPage));
  EXPECT_EQ(purge_in_child(mnt, 10 * kPage), static_cast<int64_t>(3 * kPage));
  EXPECT_EQ(purge_in_child(mnt, VOLFS_PURGE_ALL), 0);
  EXPECT_TRUE(pages_are(P("nv"), 0, pattern_pages(2, 0, 4)));
  EXPECT_TRUE(stats_match(stats(), {.files = 2,
                                    .resident_pages = 4,
                                    .volatile_pages = 4,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 4,
                                    .pages_purged_total = 4,
                                    .purge_events_total = 2}));
}

TEST_F(VolatileTest, NonVolatilePagesSurvivePurgeAll) {
  use_cached_io_mode();  // strict marks below
  make_file("nv", 32, 1);
  make_file("alt", 32, 2);
  make_file("vol", 32, 3);
  const std::string nv = P("nv"), alt = P("alt");
  // Every odd page of "alt" is marked, each by its own mark.
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            int fd = open(alt.c_str(), O_RDWR);
                            CHILD_CHECK(fd >= 0);
                            for (uint64_t p = 1; p < 32; p += 2) {
                              CHILD_CHECK_OK(
                                  vol_mark(fd, p * kPage, kPage, p % 3 ? VOLFS_MARK_STRICT : 0));
                            }
                            return 0;
                          }),
                          0));
  ASSERT_TRUE(mark_in_child(P("vol"), 0, 0, VOLFS_MARK_PRIORITY(0)));
  SyncPipe mapped, go;
  ChildProcess holder;
  holder.start([&] {
    char* n = child_map(nv, 32, PROT_READ);
    char* a = child_map(alt, 32, PROT_READ);
    child_expect_mapped(n, 0, pattern_pages(1, 0, 32), "nv before");
    for (uint64_t p = 0; p < 32; p += 2) child_expect_mapped(a, p, {page_bytes(2, p, 1)}, "alt");
    mapped.post();
    CHILD_CHECK(go.wait());
    child_expect_mapped(n, 0, pattern_pages(1, 0, 32), "nv after PURGE ALL");
    for (uint64_t p = 0; p < 32; p += 2) {
      child_expect_mapped(a, p, {page_bytes(2, p, 1)}, "alt even page after PURGE ALL");
    }
    return 0;
  });
  ASSERT_TRUE(mapped.wait());
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(48 * kPage));
  go.post();
  EXPECT_TRUE(exited_with(holder.wait(), 0));
  EXPECT_TRUE(pages_are(nv, 0, pattern_pages(1, 0, 32)));
  for (uint64_t p = 0; p < 32; p += 2) {
    EXPECT_TRUE(pages_are(alt, p, {page_bytes(2, p, 1)}));
    EXPECT_EQ(unmark_in_child(alt, p * kPage, kPage), static_cast<int>(VOLFS_INTACT));
    EXPECT_EQ(unmark_in_child(alt, (p + 1) * kPage, kPage), static_cast<int>(VOLFS_PURGED));
    EXPECT_TRUE(pages_are(alt, p + 1, zero_pages(1)));
  }
  EXPECT_TRUE(status_match(status("nv"), {.nonvolatile = 32, .resident = 32}));
  EXPECT_TRUE(stats_match(stats(), {.files = 3,
                                    .resident_pages = 48,
                                    .volatile_pages = 32,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 32,
                                    .pages_purged_total = 48,
                                    .unmark_purged_total = 16,
                                    .unmark_intact_total = 16}));
}

// ---------------------------------------------------------------------------
// GET_STATUS and STATS.

TEST_F(VolatileTest, GetStatusCountsEveryKindOfPage) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 12, 1);
  {
    UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(ftruncate(fd.get(), 16 * kPage), 0);  // pages 12..15: holes
    EXPECT_EQ(vol_mark(fd.get(), 0, 4 * kPage, VOLFS_MARK_STRICT), 0);
    EXPECT_EQ(vol_mark(fd.get(), 4 * kPage, 4 * kPage, VOLFS_MARK_PRIORITY(2)), 0);
    EXPECT_EQ(vol_mark(fd.get(), 12 * kPage, 0), 0);
  }
  // Priority 2 goes first: two of [4, 8).
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 2 * kPage), static_cast<int64_t>(2 * kPage));
  UniqueFd ro(open(P("f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(ro.ok());
  volfs_status st;
  ASSERT_EQ(vol_status(ro.get(), 0, 0, &st), 0);
  EXPECT_TRUE(status_match(
      st, {.nonvolatile = 4, .volatile_ = 12, .purged = 2, .resident = 10, .strict = 4}));
  EXPECT_EQ(st.offset, 0u);
  EXPECT_EQ(st.length, 0u);
  ASSERT_EQ(vol_status(ro.get(), 0, 16 * kPage, &st), 0);
  EXPECT_TRUE(status_match(
      st, {.nonvolatile = 4, .volatile_ = 12, .purged = 2, .resident = 10, .strict = 4}));
  ASSERT_EQ(vol_status(ro.get(), 0, 4 * kPage, &st), 0);
  EXPECT_TRUE(status_match(st, {.volatile_ = 4, .resident = 4, .strict = 4}));
  ASSERT_EQ(vol_status(ro.get(), 4 * kPage, 4 * kPage, &st), 0);
  EXPECT_TRUE(status_match(st, {.volatile_ = 4, .purged = 2, .resident = 2}));
  ASSERT_EQ(vol_status(ro.get(), 8 * kPage, 4 * kPage, &st), 0);
  EXPECT_TRUE(status_match(st, {.nonvolatile = 4, .resident = 4}));
  ASSERT_EQ(vol_status(ro.get(), 12 * kPage, 0, &st), 0);
  EXPECT_TRUE(status_match(st, {.volatile_ = 4}));
  ASSERT_EQ(vol_status(ro.get(), 7 * kPage, 2 * kPage, &st), 0);
  EXPECT_EQ(st.nonvolatile_pages + st.volatile_pages, 2u) << to_string(st);
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 10,
                                    .volatile_pages = 12,
                                    .volatile_resident_pages = 6,
                                    .purged_pages = 2,
                                    .pages_purged_total = 2,
                                    .purge_events_total = 1}));
}

TEST_F(VolatileTest, StatsWorkOnAnyFileAndTheRootDirectory) {
  make_file("f", 3, 1);
  ASSERT_EQ(mkdir(P("d").c_str(), 0755), 0);
  std::vector<std::pair<std::string, int>> opens = {{mount_.mountpoint(), O_RDONLY | O_DIRECTORY},
                                                    {P("d"), O_RDONLY | O_DIRECTORY},
                                                    {P("f"), O_RDONLY},
                                                    {P("f"), O_WRONLY},
                                                    {P("f"), O_RDWR}};
  for (auto& [path, flags] : opens) {
    SCOPED_TRACE(path + " flags " + std::to_string(flags));
    UniqueFd fd(open(path.c_str(), flags | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    volfs_stats s;
    ASSERT_EQ(vol_stats(fd.get(), &s), 0);
    EXPECT_EQ(s.size, sizeof(volfs_stats));
    EXPECT_EQ(s.version, VOLFS_STATS_VERSION);
    EXPECT_EQ(s.page_size, kPage);
    EXPECT_EQ(s.size_limit_bytes, 256u * kMiB);  // mounted with size=256m
    EXPECT_TRUE(stats_match(s, {.files = 1,
                                .resident_pages = 3,
                                .volatile_pages = 0,
                                .volatile_resident_pages = 0,
                                .purged_pages = 0,
                                .pages_purged_total = 0,
                                .purge_events_total = 0,
                                .false_purged_total = 0,
                                .unmark_purged_total = 0,
                                .unmark_intact_total = 0}));
    EXPECT_EQ(s.reserved32, 0u);
    const volfs_source_stats& spare = s.sources[VOLFS_SOURCES - 1];
    EXPECT_EQ(spare.signals + spare.purges + spare.purged_bytes, 0u);
  }
}

// volfs_stats.requests counts the FUSE requests the daemon served, each STATS
// included. Only lower bounds: the kernel may send requests of its own
// (FORGET, a late RELEASE) at any time.
TEST_F(VolatileTest, StatsCountTheRequestsTheDaemonServed) {
  UniqueFd root(open(mount_.mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(root.ok());
  volfs_stats s0, s1, s2;
  ASSERT_EQ(vol_stats(root.get(), &s0), 0);
  EXPECT_GE(s0.requests, 2u);  // INIT, and this STATS
  ASSERT_EQ(vol_stats(root.get(), &s1), 0);
  EXPECT_GE(s1.requests, s0.requests + 1);  // the second STATS
  // A name never looked up: the kernel has nothing cached and must ask.
  struct stat st {};
  ASSERT_EQ(stat(P("never-looked-up").c_str(), &st), -1);
  ASSERT_EQ(errno, ENOENT);
  ASSERT_EQ(vol_stats(root.get(), &s2), 0);
  EXPECT_GE(s2.requests, s1.requests + 2);  // its LOOKUP, and the third STATS
}

TEST_F(VolatileTest, PagesMappedByManyProcessesAreCountedOnce) {
  constexpr int kProcs = 4;
  constexpr uint64_t kPages = 16;
  {
    UniqueFd fd(open(P("f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(ftruncate(fd.get(), kPages * kPage), 0);
  }
  const std::string f = P("f");
  std::vector<std::unique_ptr<SyncPipe>> ready, go;
  std::vector<std::unique_ptr<ChildProcess>> kids;
  for (int k = 0; k < kProcs; ++k) {
    ready.push_back(std::make_unique<SyncPipe>());
    go.push_back(std::make_unique<SyncPipe>());
  }
  // Each child maps the whole file, writes its quarter and reads the rest.
  for (int k = 0; k < kProcs; ++k) {
    kids.push_back(std::make_unique<ChildProcess>());
    kids.back()->start([&, k] {
      char* m = child_map(f, kPages);
      const uint64_t per = kPages / kProcs;
      for (uint64_t p = k * per; p < (k + 1) * per; ++p) fill_page(m + p * kPage, 1, p, 1);
      CHILD_CHECK(msync(m, kPages * kPage, MS_SYNC) == 0);
      ready[k]->post();
      CHILD_CHECK(go[k]->wait());
      child_expect_mapped(m, 0, pattern_pages(1, 0, kPages), "shared mapping");
      ready[k]->post();
      CHILD_CHECK(go[k]->wait());
      child_expect_mapped(m, 0, zero_pages(kPages), "shared mapping after the purge");
      return 0;
    });
  }
  for (auto& r : ready) ASSERT_TRUE(r->wait());
  for (auto& g : go) g->post();
  for (auto& r : ready) ASSERT_TRUE(r->wait());
  EXPECT_TRUE(stats_match(stats(), {.files = 1, .resident_pages = kPages, .volatile_pages = 0}));
  ASSERT_TRUE(mark_in_child(f, 0, 0));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = kPages,
                                    .volatile_pages = kPages,
                                    .volatile_resident_pages = kPages,
                                    .purged_pages = 0}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL),
            static_cast<int64_t>(kPages * kPage));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 0,
                                    .volatile_pages = kPages,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = kPages,
                                    .pages_purged_total = kPages,
                                    .purge_events_total = 1}));
  for (auto& g : go) g->post();
  for (auto& k : kids) EXPECT_TRUE(exited_with(k->wait(), 0));
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));
  // (In passthrough the children's reads of zeros allocated tmpfs pages.)
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = passthrough() ? kPages : 0,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = kPages,
                                    .unmark_purged_total = 1}));
}

// ---------------------------------------------------------------------------
// Accounting across truncate, hole punching, unlink and rename.

TEST_F(VolatileTest, TruncateKeepsTheAccountingExact) {
  make_file("f", 8, 1);
  ASSERT_TRUE(mark_in_child(P("f"), 4 * kPage, 4 * kPage));
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 8, .volatile_pages = 4, .volatile_resident_pages = 4}));
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(ftruncate(fd.get(), 6 * kPage), 0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 6, .volatile_pages = 2, .volatile_resident_pages = 2}));
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 4, .volatile_ = 2, .resident = 6}));
  // A partial last page keeps its state; whole pages past the end go.
  ASSERT_EQ(ftruncate(fd.get(), 4 * kPage + kPage / 2), 0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 5, .volatile_pages = 1, .volatile_resident_pages = 1}));
  ASSERT_EQ(ftruncate(fd.get(), 2 * kPage), 0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 2, .volatile_pages = 0, .volatile_resident_pages = 0}));
  ASSERT_EQ(ftruncate(fd.get(), 8 * kPage), 0);  // grows with holes
  EXPECT_TRUE(status_match(status("f"), {.nonvolatile = 8, .resident = 2}));
  uint32_t result = 7;
  EXPECT_EQ(vol_unmark(fd.get(), 0, 0, &result), 0);
  EXPECT_EQ(result, VOLFS_INTACT);

  // Truncating away purged pages forgets them too.
  make_file("g", 4, 2);
  ASSERT_TRUE(mark_in_child(P("g"), 0, 0));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(4 * kPage));
  EXPECT_TRUE(stats_match(
      stats(), {.files = 2, .resident_pages = 2, .volatile_pages = 4, .purged_pages = 4}));
  ASSERT_EQ(truncate(P("g").c_str(), 0), 0);
  EXPECT_TRUE(stats_match(
      stats(), {.files = 2, .resident_pages = 2, .volatile_pages = 0, .purged_pages = 0}));
  // So does O_TRUNC.
  make_file("h", 3, 3);
  ASSERT_TRUE(mark_in_child(P("h"), 0, 0));
  { UniqueFd t(open(P("h").c_str(), O_RDWR | O_TRUNC | O_CLOEXEC)); }
  EXPECT_TRUE(stats_match(stats(), {.files = 3,
                                    .resident_pages = 2,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4}));
  EXPECT_EQ(unmark_in_child(P("g"), 0, 0), static_cast<int>(VOLFS_INTACT));
}

TEST_F(VolatileTest, PunchHoleAndZeroRangeKeepTheAccountingExact) {
  make_file("f", 8, 1);
  ASSERT_TRUE(mark_in_child(P("f"), 0, 0));
  UniqueFd fd(open(P("f").c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kPage, 2 * kPage),
            0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 6, .volatile_pages = 6, .volatile_resident_pages = 6}));
  EXPECT_TRUE(status_match(status("f", 2 * kPage, 2 * kPage), {.nonvolatile = 2}));
  // A partial page is zeroed in place and keeps its state.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5 * kPage + 100, 200),
            0);
  EXPECT_TRUE(stats_match(stats(), {.resident_pages = 6, .volatile_pages = 6}));
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 6 * kPage, 2 * kPage),
            0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 4, .volatile_pages = 4, .volatile_resident_pages = 4}));
  // ZERO_RANGE past the end grows the file with pages that cost nothing.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 8 * kPage, 2 * kPage), 0);
  struct stat sb;
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  EXPECT_EQ(static_cast<uint64_t>(sb.st_size), 10 * kPage);
  EXPECT_TRUE(stats_match(stats(), {.resident_pages = 4, .volatile_pages = 4}));
  // Allocating the punched pages makes them resident, not volatile.
  ASSERT_EQ(fallocate(fd.get(), 0, 2 * kPage, 2 * kPage), 0);
  EXPECT_TRUE(stats_match(
      stats(), {.resident_pages = 6, .volatile_pages = 4, .volatile_resident_pages = 4}));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), VOLFS_PURGE_ALL), static_cast<int64_t>(4 * kPage));
  EXPECT_TRUE(stats_match(
      stats(),
      {.resident_pages = 2, .volatile_pages = 4, .volatile_resident_pages = 0, .purged_pages = 4}));
  // Punching purged pages forgets them.
  ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kPage), 0);
  EXPECT_TRUE(stats_match(stats(), {.resident_pages = 2, .volatile_pages = 2, .purged_pages = 2}));
  EXPECT_EQ(unmark_in_child(P("f"), 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 2,
                                    .volatile_pages = 0,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 4,
                                    .unmark_purged_total = 1}));
  // st_blocks follows the resident pages (fallocated ones included; note that
  // SEEK_DATA, like tmpfs, reports fallocated but unwritten pages as a hole).
  ASSERT_EQ(fstat(fd.get(), &sb), 0);
  EXPECT_EQ(static_cast<uint64_t>(sb.st_blocks) * 512, 2 * kPage);
}

TEST_F(VolatileTest, UnlinkAndRenameKeepTheAccountingExact) {
  // Unlinked but open: still counted. Closed: gone.
  make_file("a", 4, 1);
  ASSERT_TRUE(mark_in_child(P("a"), 0, 0));
  {
    UniqueFd fd(open(P("a").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(unlink(P("a").c_str()), 0);
    EXPECT_TRUE(stats_match(
        stats(),
        {.files = 1, .resident_pages = 4, .volatile_pages = 4, .volatile_resident_pages = 4}));
    volfs_status st;
    ASSERT_EQ(vol_status(fd.get(), 0, 0, &st), 0);
    EXPECT_TRUE(status_match(st, {.volatile_ = 4, .resident = 4}));
  }
  EXPECT_TRUE(eventually_stats({.files = 0,
                                .resident_pages = 0,
                                .volatile_pages = 0,
                                .volatile_resident_pages = 0,
                                .purged_pages = 0}));

  // An unlinked file held only by another process's mapping, writable or
  // read-only (opened O_RDONLY).
  for (int prot : {PROT_READ | PROT_WRITE, PROT_READ}) {
    SCOPED_TRACE(prot == PROT_READ ? "read-only mapping" : "writable mapping");
    make_file("m", 2, 2);
    ASSERT_TRUE(mark_in_child(P("m"), 0, 0));
    {
      SyncPipe mapped, go;
      const std::string m = P("m");
      ChildProcess holder;
      holder.start([&] {
        char* p = child_map(m, 2, prot);
        mapped.post();
        CHILD_CHECK(go.wait());
        child_expect_mapped(p, 0, pattern_pages(2, 0, 2), "mapping of an unlinked file");
        return 0;
      });
      ASSERT_TRUE(mapped.wait());
      ASSERT_EQ(unlink(m.c_str()), 0);
      EXPECT_TRUE(stats_match(stats(), {.files = 1, .resident_pages = 2, .volatile_pages = 2}));
      go.post();
      EXPECT_TRUE(exited_with(holder.wait(), 0));
    }
    EXPECT_TRUE(eventually_stats(
        {.files = 0, .resident_pages = 0, .volatile_pages = 0, .volatile_resident_pages = 0}));
  }

  // The same, mapped after the unlink and then closed (shm_unlink before the
  // mmap): its last close must not free what the mapping holds.
  make_file("n", 2, 6);
  ASSERT_TRUE(mark_in_child(P("n"), 0, 0));
  {
    SyncPipe mapped, go;
    const std::string n = P("n");
    ChildProcess holder;
    holder.start([&] {
      int fd = open(n.c_str(), O_RDWR);
      CHILD_CHECK(fd >= 0);
      CHILD_CHECK(unlink(n.c_str()) == 0);
      void* p = mmap(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      CHILD_CHECK(p != MAP_FAILED);
      CHILD_CHECK(close(fd) == 0);
      mapped.post();
      CHILD_CHECK(go.wait());
      child_expect_mapped(static_cast<char*>(p), 0, pattern_pages(6, 0, 2),
                          "mapping of a file unlinked, then closed");
      return 0;
    });
    ASSERT_TRUE(mapped.wait());
    // The RELEASE of the close is asynchronous: give it time to do harm.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_TRUE(stats_match(stats(), {.files = 1, .resident_pages = 2, .volatile_pages = 2}));
    go.post();
    EXPECT_TRUE(exited_with(holder.wait(), 0));
  }
  EXPECT_TRUE(eventually_stats(
      {.files = 0, .resident_pages = 0, .volatile_pages = 0, .volatile_resident_pages = 0}));

  // Renaming keeps the state; unmark through the new name.
  make_file("b", 4, 3);
  ASSERT_TRUE(mark_in_child(P("b"), 0, 0));
  EXPECT_EQ(purge_in_child(mount_.mountpoint(), 2 * kPage), static_cast<int64_t>(2 * kPage));
  ASSERT_EQ(rename(P("b").c_str(), P("c").c_str()), 0);
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 2,
                                    .volatile_pages = 4,
                                    .volatile_resident_pages = 2,
                                    .purged_pages = 2}));
  EXPECT_TRUE(status_match(status("c"), {.volatile_ = 4, .purged = 2, .resident = 2}));
  EXPECT_EQ(unmark_in_child(P("c"), 0, 0), static_cast<int>(VOLFS_PURGED));

  // Renaming over a file with volatile pages drops the replaced file.
  make_file("d", 4, 4);
  ASSERT_TRUE(mark_in_child(P("d"), 0, 0));
  make_file("e", 2, 5);
  EXPECT_TRUE(stats_match(stats(), {.files = 3, .resident_pages = 8, .volatile_pages = 4}));
  ASSERT_EQ(rename(P("e").c_str(), P("d").c_str()), 0);
  EXPECT_TRUE(eventually_stats({.files = 2,
                                .resident_pages = 4,
                                .volatile_pages = 0,
                                .volatile_resident_pages = 0,
                                .purged_pages = 0,
                                .pages_purged_total = 2,
                                .unmark_purged_total = 1}));
  EXPECT_TRUE(pages_are(P("d"), 0, pattern_pages(5, 0, 2)));
}

// ---------------------------------------------------------------------------
// Purge triggers: the size limit, the watermarks, purge_on_mark.

class VolatileSizeLimitTest : public VolatileTest {
 protected:
  std::string mount_options() const override { return "size=8m"; }
  uint64_t limit_pages() const { return 8 * kMiB / kPage; }
  // In passthrough a write over size= lands first (volatile data stands
  // above size= in the private tmpfs) and the purge worker takes the excess
  // back within a tick; in the cached mode the write purged it already.
  void wait_until_purged(const std::string& name, uint64_t pages) {
    for (int k = 0; k < 1000 && passthrough() && purged_in(name) < pages; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
};

TEST_F(VolatileSizeLimitTest, WriteOverTheLimitPurgesVolatilePagesFirst) {
  ASSERT_EQ(stats().size_limit_bytes, 8 * kMiB);
  const uint64_t keep = kMiB / kPage, cache = 5 * kMiB / kPage, big = 3 * kMiB / kPage;
  make_file("keep", keep, 1);
  make_file("cache", cache, 2);
  ASSERT_TRUE(mark_in_child(P("cache"), 0, 0));
  const uint64_t overflow = keep + cache + big - limit_pages();
  // Another process writes "big", 1 MiB at a time: room comes from "cache".
  const std::string bigp = P("big");
  EXPECT_TRUE(exited_with(run_in_child([&] {
                            int fd = open(bigp.c_str(), O_CREAT | O_RDWR, 0644);
                            CHILD_CHECK(fd >= 0);
                            const uint64_t chunk = kMiB / kPage;
                            for (uint64_t first = 0; first < big; first += chunk) {
                              std::string data;
                              for (uint64_t p = first; p < first + chunk; ++p) {
                                data += page_bytes(3, p, 1);
                              }
                              CHILD_CHECK(pwrite_all(fd, data, first * kPage));
                            }
                            return 0;
                          }),
                          0));
  EXPECT_TRUE(pages_are(P("keep"), 0, pattern_pages(1, 0, keep)));
  EXPECT_TRUE(pages_are(P("big"), 0, pattern_pages(3, 0, big)));
  wait_until_purged("cache", overflow);
  uint64_t purged = purged_in("cache");
  EXPECT_GE(purged, overflow);
  // Every purged page of "cache" reads as zeros, every other one is intact.
  {
    std::optional<std::string> d = read_file(P("cache"));
    ASSERT_TRUE(d && d->size() == cache * kPage);
    uint64_t zero = 0, intact = 0;
    for (uint64_t p = 0; p < cache; ++p) {
      const char* pg = d->data() + p * kPage;
      if (is_all_zero(pg, kPage)) {
        ++zero;
      } else if (describe_page_mismatch(pg, page_bytes(2, p, 1).data()).empty()) {
        ++intact;
      }
    }
    EXPECT_EQ(zero, purged);
    EXPECT_EQ(intact, cache - purged);
  }
  volfs_stats s = stats();
  EXPECT_TRUE(stats_match(s, {.files = 3,
                              .resident_pages = keep + big + cache - purged,
                              .volatile_pages = cache,
                              .volatile_resident_pages = cache - purged,
                              .purged_pages = purged,
                              .pages_purged_total = purged}));
  EXPECT_LE(s.resident_pages, limit_pages());
  EXPECT_EQ(unmark_in_child(P("cache"), 0, 0), static_cast<int>(VOLFS_PURGED));
}

// As on tmpfs, a deleted file's room is back for the next write: at its
// unlink if it was closed, at its last close if it was deleted while open.
// The kernel sends that last RELEASE (and a FORGET) without waiting for the
// daemon; volfs frees the file before the UNLINK answers, and an open or a
// write that finds the mount full waits for a file being freed.
TEST_F(VolatileSizeLimitTest, ADeletedFilesRoomIsBackForTheNextWrite) {
  const std::string all(limit_pages() * kPage, 'r');
  for (int round = 0; round < 50; ++round) {
    for (bool unlink_first : {false, true}) {
      SCOPED_TRACE("round " + std::to_string(round) +
                   (unlink_first ? ", unlinked then closed" : ", closed then unlinked"));
      const std::string f = P(unlink_first ? "u" : "c");
      UniqueFd fd(open(f.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644));
      ASSERT_TRUE(fd.ok()) << strerror(errno);
      ASSERT_TRUE(pwrite_all(fd.get(), all, 0)) << strerror(errno);
      if (unlink_first) {
        ASSERT_EQ(unlink(f.c_str()), 0);
      }
      fd.reset();
      if (!unlink_first) {
        ASSERT_EQ(unlink(f.c_str()), 0);
      }
    }
  }
  EXPECT_TRUE(eventually_stats({.files = 0, .resident_pages = 0}));
}

TEST_F(VolatileSizeLimitTest, EnospcOnlyWhenNothingVolatileIsLeft) {
  const uint64_t all = limit_pages();
  make_file("full", all, 1);
  UniqueFd fd(open(P("more").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.ok());
  std::string page = page_bytes(2, 0, 1);
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), page.data(), kPage, 0), -1);
  EXPECT_EQ(errno, ENOSPC);
  // Four volatile pages make room for four pages.
  ASSERT_TRUE(mark_in_child(P("full"), 8 * kPage, 4 * kPage, VOLFS_MARK_PRIORITY(3)));
  std::string four =
      page_bytes(2, 0, 1) + page_bytes(2, 1, 1) + page_bytes(2, 2, 1) + page_bytes(2, 3, 1);
  EXPECT_TRUE(pwrite_all(fd.get(), four, 0)) << strerror(errno);
  wait_until_purged("full", 4);
  EXPECT_EQ(purged_in("full"), 4u);
  errno = 0;
  EXPECT_EQ(pwrite(fd.get(), page.data(), kPage, 4 * kPage), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_TRUE(pages_are(P("more"), 0, pattern_pages(2, 0, 4)));
  EXPECT_TRUE(pages_are(P("full"), 0, pattern_pages(1, 0, 8)));
  EXPECT_TRUE(pages_are(P("full"), 12, pattern_pages(1, 12, 100)));
  EXPECT_TRUE(stats_match(stats(), {.files = 2,
                                    .resident_pages = all,
                                    .volatile_pages = 4,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 4,
                                    .pages_purged_total = 4}));
  EXPECT_EQ(unmark_in_child(P("full"), 0, 0), static_cast<int>(VOLFS_PURGED));
}

// The size limit is a quota charged when pages become resident; every way a
// page can leave (purge, truncate, punch, zero-range, unlink, rename over,
// O_TRUNC) must give its share back, exactly once. Afterwards the mount holds
// exactly size= again: one page more is ENOSPC.
TEST_F(VolatileSizeLimitTest, EveryWayPagesLeaveGivesTheirQuotaBack) {
  use_cached_io_mode();  // strict marks below
  const uint64_t all = limit_pages();
  const std::string mnt = mount_.mountpoint();
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    make_file("a", 64, 1);
    make_file("b", 64, 2);
    make_file("c", 64, 3);
    make_file("d", 64, 4);
    make_file("e", 8, 5);
    {
      UniqueFd fd(open(P("a").c_str(), O_RDWR | O_CLOEXEC));
      ASSERT_TRUE(fd.ok());
      ASSERT_EQ(vol_mark(fd.get(), 0, 32 * kPage), 0);
      ASSERT_EQ(vol_mark(fd.get(), 40 * kPage, 8 * kPage, VOLFS_MARK_STRICT), 0);
    }
    EXPECT_EQ(purge_in_child(mnt, 16 * kPage), static_cast<int64_t>(16 * kPage));
    // Rewrite some purged pages, allocate others.
    {
      UniqueFd fd(open(P("a").c_str(), O_RDWR | O_CLOEXEC));
      ASSERT_TRUE(fd.ok());
      ASSERT_TRUE(pwrite_all(fd.get(), page_bytes(1, 0, 2) + page_bytes(1, 1, 2), 0));
      ASSERT_EQ(fallocate(fd.get(), 0, 4 * kPage, 4 * kPage), 0);
      ASSERT_EQ(ftruncate(fd.get(), 36 * kPage + 100), 0);  // cuts volatile and strict pages
      ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10 * kPage,
                          20 * kPage + 10),
                0);
    }
    {
      UniqueFd fd(open(P("b").c_str(), O_RDWR | O_CLOEXEC));
      ASSERT_TRUE(fd.ok());
      ASSERT_EQ(vol_mark(fd.get(), 0, 0, VOLFS_MARK_PRIORITY(0)), 0);
      ASSERT_EQ(
          fallocate(fd.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 8 * kPage, 8 * kPage), 0);
      ASSERT_EQ(fallocate(fd.get(), FALLOC_FL_ZERO_RANGE, 60 * kPage, 10 * kPage), 0);
      ASSERT_EQ(fallocate(fd.get(), 0, 64 * kPage, 4 * kPage), 0);  // past the old end
    }
    EXPECT_GT(purge_in_child(mnt, 8 * kPage), 0);
    // Unlink while mapped by another process, rename over, O_TRUNC.
    {
      const std::string c = P("c");
      SyncPipe mapped, go;
      ChildProcess holder;
      holder.start([&] {
        char* m = child_map(c, 64);
        mapped.post();
        CHILD_CHECK(go.wait());
        fill_page(m, 3, 0, 9);  // write to the unlinked file: charged, then returned
        CHILD_CHECK(msync(m, kPage, MS_SYNC) == 0);
        return 0;
      });
      ASSERT_TRUE(mapped.wait());
      ASSERT_TRUE(mark_in_child(c, 0, 16 * kPage));
      ASSERT_EQ(unlink(c.c_str()), 0);
      go.post();
      EXPECT_TRUE(exited_with(holder.wait(), 0));
    }
    ASSERT_TRUE(mark_in_child(P("d"), 8 * kPage, 8 * kPage));
    ASSERT_EQ(rename(P("e").c_str(), P("d").c_str()), 0);
    { UniqueFd t(open(P("a").c_str(), O_RDWR | O_TRUNC | O_CLOEXEC)); }
    ASSERT_EQ(unlink(P("a").c_str()), 0);
    ASSERT_EQ(unlink(P("b").c_str()), 0);
    ASSERT_EQ(unlink(P("d").c_str()), 0);
    ASSERT_TRUE(eventually_stats({.files = 0,
                                  .resident_pages = 0,
                                  .volatile_pages = 0,
                                  .volatile_resident_pages = 0,
                                  .purged_pages = 0}));
    // Exactly the whole limit fits again, and not one page more.
    make_file("full", all, 6);
    UniqueFd fd(open(P("more").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok());
    std::string page = page_bytes(7, 0, 1);
    errno = 0;
    EXPECT_EQ(pwrite(fd.get(), page.data(), kPage, 0), -1) << "quota leaked the other way";
    EXPECT_EQ(errno, ENOSPC);
    fd.reset();
    ASSERT_EQ(unlink(P("more").c_str()), 0);
    ASSERT_EQ(unlink(P("full").c_str()), 0);
    ASSERT_TRUE(eventually_stats({.files = 0, .resident_pages = 0}));
  }
}

class VolatileWatermarkTest : public VolatileTest {
 protected:
  std::string mount_options() const override { return "size=8m,purge_high=80,purge_low=50"; }
};

TEST_F(VolatileWatermarkTest, BackgroundPurgeGoesDownToTheLowWatermark) {
  const uint64_t limit = 8 * kMiB / kPage;
  const uint64_t low = limit * 50 / 100, high = limit * 80 / 100;
  const uint64_t keep = 2 * kMiB / kPage, cache = 5 * kMiB / kPage;
  ASSERT_GT(keep + cache, high);
  make_file("keep", keep, 1);
  make_file("cache", cache, 2);
  // Over the high watermark, but nothing is volatile: nothing may go.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(stats_match(stats(), {.resident_pages = keep + cache, .pages_purged_total = 0}));
  ASSERT_TRUE(mark_in_child(P("cache"), 0, 0));
  bool reached = poll_until([&] { return stats().resident_pages <= low; }, milliseconds(10000));
  volfs_stats s = stats();
  ASSERT_TRUE(reached) << "no background purge down to " << low
                       << " pages within 10 s: " << to_string(s);
  EXPECT_GE(s.resident_pages, keep);
  EXPECT_EQ(s.pages_purged_total, keep + cache - s.resident_pages) << to_string(s);
  EXPECT_EQ(purged_in("cache"), s.pages_purged_total);
  EXPECT_TRUE(pages_are(P("keep"), 0, pattern_pages(1, 0, keep)));
  // Below the high watermark a new volatile file is left alone.
  make_file("cache2", kMiB / kPage, 3);
  ASSERT_TRUE(mark_in_child(P("cache2"), 0, 0));
  ASSERT_LT(stats().resident_pages, high);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(purged_in("cache2"), 0u);
  EXPECT_EQ(unmark_in_child(P("cache2"), 0, 0), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(unmark_in_child(P("cache"), 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(stats_match(stats(), {.files = 3,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .unmark_purged_total = 1,
                                    .unmark_intact_total = 1}));
}

class VolatilePurgeOnMarkTest : public VolatileTest {
 protected:
  std::string mount_options() const override { return "size=64m,purge_on_mark"; }
};

TEST_F(VolatilePurgeOnMarkTest, EveryMarkPurgesAtOnce) {
  use_cached_io_mode();  // strict marks below
  make_file("f", 8, 1);
  const std::string f = P("f");
  SyncPipe mapped, go;
  ChildProcess reader;
  reader.start([&] {
    char* m = child_map(f, 8, PROT_READ);
    child_expect_mapped(m, 0, pattern_pages(1, 0, 8), "before MARK");
    mapped.post();
    CHILD_CHECK(go.wait());
    child_expect_mapped(m, 0, pattern_pages(1, 0, 2) + zero_pages(4) + pattern_pages(1, 6, 2),
                        "existing mapping right after MARK");
    return 0;
  });
  ASSERT_TRUE(mapped.wait());
  ASSERT_TRUE(mark_in_child(f, 2 * kPage, 4 * kPage));
  go.post();
  EXPECT_TRUE(exited_with(reader.wait(), 0));
  EXPECT_TRUE(
      status_match(status("f"), {.nonvolatile = 4, .volatile_ = 4, .purged = 4, .resident = 4}));
  EXPECT_TRUE(pages_are(f, 0, pattern_pages(1, 0, 2) + zero_pages(4) + pattern_pages(1, 6, 2)));
  EXPECT_TRUE(stats_match(stats(), {.files = 1,
                                    .resident_pages = 4,
                                    .volatile_pages = 4,
                                    .volatile_resident_pages = 0,
                                    .purged_pages = 4,
                                    .pages_purged_total = 4,
                                    .purge_events_total = 1}));
  EXPECT_EQ(unmark_in_child(f, 0, 0), static_cast<int>(VOLFS_PURGED));

  // Holes have nothing to lose.
  {
    UniqueFd fd(open(P("h").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(ftruncate(fd.get(), 4 * kPage), 0);
  }
  ASSERT_TRUE(mark_in_child(P("h"), 0, 0));
  EXPECT_EQ(unmark_in_child(P("h"), 0, 0), static_cast<int>(VOLFS_INTACT));

  // Strict: EIO at once.
  make_file("s", 2, 3);
  ASSERT_TRUE(mark_in_child(P("s"), 0, 0, VOLFS_MARK_STRICT));
  {
    UniqueFd fd(open(P("s").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    char buf[16];
    errno = 0;
    EXPECT_EQ(pread(fd.get(), buf, sizeof buf, 0), -1);
    EXPECT_EQ(errno, EIO);
  }
  EXPECT_EQ(unmark_in_child(P("s"), 0, 0), static_cast<int>(VOLFS_PURGED));
  EXPECT_TRUE(pages_are(P("s"), 0, zero_pages(2)));
  EXPECT_TRUE(stats_match(stats(), {.files = 3,
                                    .resident_pages = 4,
                                    .volatile_pages = 0,
                                    .purged_pages = 0,
                                    .pages_purged_total = 6,
                                    .unmark_purged_total = 2,
                                    .unmark_intact_total = 1}));
}

}  // namespace
}  // namespace volfs::test
