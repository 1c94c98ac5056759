// client_test.cc: the client library (volfs/file.h, volfs/client.h) against a
// real mount: every operation works, failures are std::system_error (C++) or
// -1/errno (C) naming the file and range, and Pin keeps its promise.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
// client.h first: both headers must work in either order.
#include <volfs/client.h>
#include <volfs/file.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include <gtest/gtest.h>

#include "file_util.h"
#include "mount_fixture.h"

namespace volfs {
namespace {

using test::make_pattern;

const uint64_t kPage = File::page_size();

// A regular file outside volfs, removed at the end of the test.
class PlainFile {
 public:
  PlainFile() {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/volfs-client-test.XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) {
      (void)!write(fd, "plain\n", 6);
      close(fd);
    }
  }
  ~PlainFile() { unlink(path_.c_str()); }
  PlainFile(const PlainFile&) = delete;
  PlainFile& operator=(const PlainFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs f, which must throw std::system_error with errno `err`; returns what().
template <class F>
std::string expect_system_error(int err, F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), err) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no std::system_error (expected errno " << err << ")";
  return "";
}

// ---- Without a mount --------------------------------------------------------

TEST(ClientNoMount, OpenOfAFileNotOnVolfsIsENOTTYNamingTheFile) {
  PlainFile plain;
  std::string what = expect_system_error(ENOTTY, [&] { (void)File::open(plain.path()); });
  EXPECT_NE(what.find(plain.path()), std::string::npos) << what;
  EXPECT_NE(what.find("not on a volfs mount"), std::string::npos) << what;
  // Read-write opens are refused the same way.
  expect_system_error(ENOTTY, [&] { (void)File::open(plain.path(), O_RDWR); });
}

TEST(ClientNoMount, CreateOutsideVolfsIsENOTTYAndLeavesNoFile) {
  PlainFile plain;
  std::string target = plain.path() + ".created";
  expect_system_error(ENOTTY, [&] { (void)File::create(target); });
  EXPECT_NE(access(target.c_str(), F_OK), 0) << target << " was left behind";
}

TEST(ClientNoMount, StatsAndPurgeOfADirectoryNotOnVolfsAreENOTTY) {
  PlainFile plain;
  std::string dir = plain.path().substr(0, plain.path().rfind('/'));
  std::string what = expect_system_error(ENOTTY, [&] { (void)volfs::stats(dir); });
  EXPECT_NE(what.find(dir), std::string::npos) << what;
  expect_system_error(ENOTTY, [&] { (void)volfs::purge(dir, VOLFS_PURGE_ALL); });
}

TEST(ClientNoMount, OpenOfAMissingFileIsENOENTNamingIt) {
  std::string what =
      expect_system_error(ENOENT, [] { (void)File::open("/nonexistent/volfs-client-test"); });
  EXPECT_NE(what.find("/nonexistent/volfs-client-test"), std::string::npos) << what;
}

TEST(ClientNoMount, CApiReturnsMinusOneAndENOTTY) {
  PlainFile plain;
  int fd = open(plain.path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  int purged = 0;
  uint64_t bytes = 0;
  struct volfs_status st;
  struct volfs_stats s;
  errno = 0;
  EXPECT_EQ(volfs_mark(fd, 0, 0, 0), -1);
  EXPECT_EQ(errno, ENOTTY);
  errno = 0;
  EXPECT_EQ(volfs_unmark(fd, 0, 0, &purged), -1);
  EXPECT_EQ(errno, ENOTTY);
  errno = 0;
  EXPECT_EQ(volfs_get_status(fd, 0, 0, &st), -1);
  EXPECT_EQ(errno, ENOTTY);
  errno = 0;
  EXPECT_EQ(volfs_get_stats(fd, &s), -1);
  EXPECT_EQ(errno, ENOTTY);
  errno = 0;
  EXPECT_EQ(volfs_purge(fd, VOLFS_PURGE_ALL, &bytes), -1);
  EXPECT_EQ(errno, ENOTTY);
  close(fd);
  // A bad fd is EBADF, not a crash.
  errno = 0;
  EXPECT_EQ(volfs_get_stats(-1, &s), -1);
  EXPECT_EQ(errno, EBADF);
}

// ---- On a mount -------------------------------------------------------------

class ClientTest : public test::MountTest {
 protected:
  // A file of `pages` pages of known data, opened read-write.
  File make_file(const std::string& name, uint64_t pages) {
    File f = File::create(mount_.path(name));
    data_ = make_pattern(pages * kPage, 7);
    EXPECT_EQ(pwrite(f.fd(), data_.data(), data_.size(), 0), static_cast<ssize_t>(data_.size()));
    return f;
  }
  std::string read_all(const File& f) {
    std::string out(f.size(), '\0');
    EXPECT_EQ(pread(f.fd(), out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
  }
  std::string root() const { return mount_.mountpoint(); }

  std::string data_;
};

TEST_F(ClientTest, CreateOpenSizeResize) {
  File f = File::create(mount_.path("f"));
  EXPECT_EQ(f.path(), mount_.path("f"));
  EXPECT_EQ(f.size(), 0u);
  f.resize(3 * kPage);
  EXPECT_EQ(f.size(), 3 * kPage);
  File g = File::open(mount_.path("f"));  // read-only by default
  EXPECT_EQ(g.size(), 3 * kPage);
  // Moving hands the fd over; the moved-from File owns nothing.
  File h = std::move(g);
  EXPECT_GE(h.fd(), 0);
  EXPECT_EQ(g.fd(), -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

TEST_F(ClientTest, MarkUnmarkStatusAndPurge) {
  use_cached_io_mode();  // strict marks below
  File f = make_file("f", 4);
  RangeStatus st = f.status();
  EXPECT_EQ(st.nonvolatile_pages, 4u);
  EXPECT_EQ(st.resident_pages, 4u);

  f.mark_volatile({kPage, 2 * kPage});
  st = f.status();
  EXPECT_EQ(st.nonvolatile_pages, 2u);
  EXPECT_EQ(st.volatile_pages, 2u);
  EXPECT_EQ(st.strict_pages, 0u);
  // Not purged: intact, and the data is all there.
  EXPECT_TRUE(f.unmark({kPage, 2 * kPage}).intact());
  EXPECT_EQ(read_all(f), data_);

  f.mark_volatile({0, 0}, MarkOptions{.strict = true, .priority = 2});  // whole file
  st = f.status();
  EXPECT_EQ(st.volatile_pages, 4u);
  EXPECT_EQ(st.strict_pages, 4u);
  EXPECT_EQ(f.purge(VOLFS_PURGE_ALL), 4 * kPage);
  st = f.status({0, 2 * kPage});
  EXPECT_EQ(st.purged_pages, 2u);
  EXPECT_EQ(st.resident_pages, 0u);
  UnmarkResult r = f.unmark({});
  EXPECT_TRUE(r.purged());
  EXPECT_FALSE(r.intact());
  // Unmarked purged pages are zeros.
  EXPECT_EQ(read_all(f), std::string(4 * kPage, '\0'));
}

TEST_F(ClientTest, StatsAreExact) {
  File a = make_file("a", 8);
  File b = make_file("b", 2);
  a.mark_volatile({0, 2 * kPage});
  a.mark_volatile({4 * kPage, 4 * kPage}, MarkOptions{.priority = 7});
  b.mark_volatile({});
  struct volfs_stats s = volfs::stats(root());  // through the mount's root directory
  EXPECT_EQ(s.version, VOLFS_STATS_VERSION);
  EXPECT_EQ(s.page_size, kPage);
  EXPECT_EQ(s.size_limit_bytes, 256u << 20);  // kDefaultMountOptions: size=256m
  EXPECT_EQ(s.files, 2u);
  EXPECT_EQ(s.resident_pages, 10u);
  EXPECT_EQ(s.volatile_pages, 8u);
  EXPECT_EQ(s.volatile_resident_pages, 8u);
  EXPECT_EQ(s.purged_pages, 0u);

  // Purge order: priority 4 (the default) before 7. Three pages: a's first
  // mark (2 pages, older) and one of b's.
  EXPECT_EQ(volfs::purge(root(), 3 * kPage), 3 * kPage);
  s = b.stats();  // any file answers for the whole mount
  EXPECT_EQ(s.purged_pages, 3u);
  EXPECT_EQ(s.pages_purged_total, 3u);
  EXPECT_EQ(s.purge_events_total, 2u);
  EXPECT_EQ(s.resident_pages, 7u);
  EXPECT_TRUE(a.unmark({0, 2 * kPage}).purged());
  EXPECT_TRUE(a.unmark({4 * kPage, 4 * kPage}).intact());
  EXPECT_TRUE(b.unmark({}).purged());
  s = a.stats();
  EXPECT_EQ(s.volatile_pages, 0u);
  EXPECT_EQ(s.purged_pages, 0u);
  EXPECT_EQ(s.unmark_purged_total, 2u);
  EXPECT_EQ(s.unmark_intact_total, 1u);
  EXPECT_EQ(s.false_purged_total, 0u);
}

TEST_F(ClientTest, ErrorsNameFileAndRange) {
  File f = make_file("f", 2);
  const std::string path = mount_.path("f");
  // Past the end of the file.
  std::string what = expect_system_error(EINVAL, [&] { f.mark_volatile({kPage, 2 * kPage}); });
  EXPECT_NE(what.find(path + " [" + std::to_string(kPage) + ", " + std::to_string(3 * kPage) + ")"),
            std::string::npos)
      << what;
  // Not page-aligned.
  what = expect_system_error(EINVAL, [&] { (void)f.unmark({100, 0}); });
  EXPECT_NE(what.find(path + " [100, end of file)"), std::string::npos) << what;
  what = expect_system_error(EINVAL, [&] { (void)f.status({0, 100}); });
  EXPECT_NE(what.find(path + " [0, 100)"), std::string::npos) << what;
  // Priority out of range, caught before any ioctl.
  what = expect_system_error(EINVAL, [&] { f.mark_volatile({}, MarkOptions{.priority = 8}); });
  EXPECT_NE(what.find(path), std::string::npos) << what;
  // The daemon needs a writable fd for MARK and UNMARK.
  File ro = File::open(path, O_RDONLY);
  what = expect_system_error(EBADF, [&] { ro.mark_volatile({}); });
  EXPECT_NE(what.find(path), std::string::npos) << what;
  expect_system_error(EBADF, [&] { (void)ro.unmark({}); });
  // Reading the status is fine read-only.
  EXPECT_EQ(ro.status().nonvolatile_pages, 2u);
  // Nothing of this changed the file.
  EXPECT_EQ(f.status().volatile_pages, 0u);
}

TEST_F(ClientTest, PinReportsPurgeAndRemarksOnDestruction) {
  use_cached_io_mode();  // strict marks below
  File f = make_file("f", 4);
  const Range r{kPage, 2 * kPage};
  f.mark_volatile(r, MarkOptions{.strict = true, .priority = 3});
  {
    Pin pin(f, r, MarkOptions{.strict = true, .priority = 3});
    EXPECT_FALSE(pin.purged());
    // Pinned: not volatile, so a purge cannot touch it.
    EXPECT_EQ(f.status(r).volatile_pages, 0u);
    EXPECT_EQ(f.purge(VOLFS_PURGE_ALL), 0u);
  }
  // Re-marked, with the options given.
  RangeStatus st = f.status(r);
  EXPECT_EQ(st.volatile_pages, 2u);
  EXPECT_EQ(st.strict_pages, 2u);

  EXPECT_EQ(f.purge(VOLFS_PURGE_ALL), 2 * kPage);
  {
    Pin pin(f, r, MarkOptions{.strict = true, .priority = 3});
    EXPECT_TRUE(pin.purged());
    // The range is usable while pinned: purged pages read as zeros.
    std::string page(kPage, 'x');
    ASSERT_EQ(pread(f.fd(), page.data(), kPage, static_cast<off_t>(kPage)),
              static_cast<ssize_t>(kPage));
    EXPECT_EQ(page, std::string(kPage, '\0'));
    // Refill it, as an owner would.
    ASSERT_EQ(pwrite(f.fd(), data_.data() + kPage, 2 * kPage, static_cast<off_t>(kPage)),
              static_cast<ssize_t>(2 * kPage));
  }
  st = f.status(r);
  EXPECT_EQ(st.volatile_pages, 2u);
  EXPECT_EQ(st.purged_pages, 0u);
  {
    Pin pin(f, r);
    EXPECT_FALSE(pin.purged());
  }
  EXPECT_EQ(read_all(f), data_);
}

TEST_F(ClientTest, PinNeedsAWritableFileAndNeverThrowsFromItsDestructor) {
  File f = make_file("f", 2);
  File ro = File::open(mount_.path("f"), O_RDONLY);
  std::string what = expect_system_error(EBADF, [&] { Pin pin(ro, {}); });
  EXPECT_NE(what.find(mount_.path("f")), std::string::npos) << what;
  {
    Pin pin(f, {kPage, kPage});
    // The pinned range goes away: the re-mark fails (past the end of the
    // file), and the destructor swallows that, leaving nothing volatile.
    f.resize(kPage);
  }
  EXPECT_EQ(f.status().volatile_pages, 0u);
}

TEST_F(ClientTest, MappingSeesAPurge) {
  File f = make_file("f", 2);
  Mapping m = f.map();
  ASSERT_EQ(m.size(), 2 * kPage);
  EXPECT_EQ(std::memcmp(m.data(), data_.data(), m.size()), 0);
  m.data()[0] = 'A';
  f.mark_volatile({});
  EXPECT_EQ(f.purge(VOLFS_PURGE_ALL), 2 * kPage);
  // Non-strict: the purged pages read as zeros through the existing mapping.
  EXPECT_EQ(m.data()[0], '\0');
  EXPECT_EQ(m.data()[kPage], '\0');
  EXPECT_TRUE(f.unmark({}).purged());
  // Moving a Mapping hands the mapping over.
  Mapping n = std::move(m);
  EXPECT_EQ(n.size(), 2 * kPage);
  EXPECT_EQ(m.data(), nullptr);  // NOLINT(bugprone-use-after-move)
  // An empty range is an error naming the file.
  File empty = File::create(mount_.path("empty"));
  std::string what = expect_system_error(EINVAL, [&] { (void)empty.map(); });
  EXPECT_NE(what.find(mount_.path("empty")), std::string::npos) << what;
}

TEST_F(ClientTest, CApiOnVolfs) {
  File f = make_file("f", 3);
  int fd = f.fd();
  ASSERT_EQ(volfs_mark(fd, 0, 2 * kPage, VOLFS_MARK_PRIORITY(1)), 0);
  struct volfs_status st;
  ASSERT_EQ(volfs_get_status(fd, 0, 0, &st), 0);
  EXPECT_EQ(st.volatile_pages, 2u);
  EXPECT_EQ(st.nonvolatile_pages, 1u);
  struct volfs_stats s;
  ASSERT_EQ(volfs_get_stats(fd, &s), 0);
  EXPECT_EQ(s.volatile_pages, 2u);
  uint64_t bytes = 0;
  ASSERT_EQ(volfs_purge(fd, kPage, &bytes), 0);
  EXPECT_EQ(bytes, kPage);
  int purged = -1;
  ASSERT_EQ(volfs_unmark(fd, kPage, kPage, &purged), 0);
  EXPECT_EQ(purged, 0);
  ASSERT_EQ(volfs_unmark(fd, 0, kPage, &purged), 0);
  EXPECT_EQ(purged, 1);
  // Errors are -1 and errno.
  errno = 0;
  EXPECT_EQ(volfs_mark(fd, 100, kPage, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(volfs_mark(fd, 0, 0, 0x80000000u), -1);  // unknown flag
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(volfs_mark(fd, 0, 8 * kPage, 0), -1);  // past the end
  EXPECT_EQ(errno, EINVAL);
  int dir = open(mount_.mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir, 0);
  errno = 0;
  EXPECT_EQ(volfs_mark(dir, 0, 0, 0), -1);  // no ranges on a directory
  EXPECT_EQ(errno, ENOTTY);
  EXPECT_EQ(volfs_get_stats(dir, &s), 0);  // but stats work there
  close(dir);
}

TEST_F(ClientTest, CApiBatches) {
  use_cached_io_mode();  // strict marks below
  File f = make_file("f", 4);
  int fd = f.fd();
  struct volfs_range r[3] = {{0, kPage, VOLFS_MARK_PRIORITY(0), 0},
                             {kPage, kPage, 0, 0},
                             {3 * kPage, kPage, VOLFS_MARK_STRICT, 0}};
  ASSERT_EQ(volfs_mark_batch(fd, r, 3), 0);
  EXPECT_EQ(f.status().volatile_pages, 3u);
  EXPECT_EQ(f.status().strict_pages, 1u);
  ASSERT_EQ(f.purge(kPage), kPage);  // priority 0 first: page 0
  for (auto& x : r) x.flags = 0;
  ASSERT_EQ(volfs_unmark_batch(fd, r, 3), 0);
  EXPECT_EQ(r[0].result, VOLFS_PURGED);
  EXPECT_EQ(r[1].result, VOLFS_INTACT);
  EXPECT_EQ(r[2].result, VOLFS_INTACT);
  EXPECT_EQ(f.status().volatile_pages, 0u);
  errno = 0;
  EXPECT_EQ(volfs_mark_batch(fd, r, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(volfs_unmark_batch(fd, r, VOLFS_BATCH_MAX + 1), -1);
  EXPECT_EQ(errno, EINVAL);
}

// More ranges than one batch holds: the C++ calls split them.
TEST_F(ClientTest, RangeListsOfAnyLength) {
  constexpr uint64_t kPages = 2 * VOLFS_BATCH_MAX + 10;
  File f = make_file("f", kPages);
  std::vector<Range> ranges;
  for (uint64_t p = 0; p < kPages; p += 2) ranges.push_back({p * kPage, kPage});
  f.mark_volatile_ranges(ranges, MarkOptions{.priority = 3});
  EXPECT_EQ(f.status().volatile_pages, ranges.size());
  // Purge only the first marked page (every range has the same priority;
  // the first one marked is the oldest).
  ASSERT_EQ(f.purge(kPage), kPage);
  std::vector<UnmarkResult> got = f.unmark_ranges(ranges);
  ASSERT_EQ(got.size(), ranges.size());
  EXPECT_TRUE(got[0].purged());
  for (size_t k = 1; k < got.size(); ++k) EXPECT_TRUE(got[k].intact()) << k;
  EXPECT_EQ(f.status().volatile_pages, 0u);
  // A bad range names the batch it is in.
  ranges.push_back({kPages * kPage, kPage});  // past the end
  std::string what = expect_system_error(EINVAL, [&] { f.mark_volatile_ranges(ranges); });
  EXPECT_NE(what.find("mark_volatile_ranges"), std::string::npos) << what;
  EXPECT_NE(what.find(f.path().string()), std::string::npos) << what;
}

}  // namespace
}  // namespace volfs
