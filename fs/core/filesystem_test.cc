// Unit tests of the Filesystem core without FUSE: namespace and inode
// lifetime, data and accounting, and the purge protocol, with a
// CacheInvalidator that behaves like the kernel (it writes dirty pages back
// into the filesystem from inside the invalidation).
#include "filesystem.h"

#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "alloc_failure_injection.h"
#include "core_test_util.h"
#include "filesystem_internal.h"

namespace volfs::core {
namespace {

using test::mark;
using test::purge;
using test::status;
using test::unmark;
using test::wait_for;

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

MountOptions options(uint64_t size_pages = 1024) {
  MountOptions o;
  o.size_bytes = size_pages * kPage;
  o.nr_inodes = 1000;
  return o;
}

std::string read_all(Filesystem& fs, const OpenFile& f, uint64_t off, size_t len,
                     int* err = nullptr) {
  std::string out;
  Status s = fs.read(f, off, len, [&](int fd, uint64_t pos, size_t n) {
    out.resize(n);
    ASSERT_EQ(pread(fd, out.data(), n, static_cast<off_t>(pos)), static_cast<ssize_t>(n));
  });
  if (err) *err = s.err();
  return out;
}

struct Fixture {
  explicit Fixture(MountOptions o = options()) : fs(o, kPage) {}
  std::unique_ptr<OpenFile> create(const std::string& name, uint64_t pages, char fill = 'a') {
    Result<Entry> e = fs.create(kRootIno, name, 0644, Caller{});
    EXPECT_TRUE(e.ok());
    auto f = fs.open(e->ino, O_RDWR);
    EXPECT_TRUE(f.ok());
    std::string data(pages * kPage, fill);
    if (pages) {
      EXPECT_TRUE(fs.write(**f, data.data(), data.size(), 0).ok());
    }
    return std::move(*f);
  }
  Filesystem fs;
};

TEST(FilesystemTest, UnlinkedOpenFileLivesUntilItsLastRelease) {
  Fixture fx;
  auto f = fx.create("a", 4);
  auto g = fx.fs.open(f->inode->ino, O_RDONLY);
  ASSERT_TRUE(g.ok());
  const uint64_t ino = f->inode->ino;
  EXPECT_EQ(fx.fs.stats().files, 1u);
  EXPECT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  EXPECT_EQ(fx.fs.lookup(kRootIno, "a").err(), ENOENT);
  EXPECT_EQ(read_all(fx.fs, *f, 0, kPage), std::string(kPage, 'a'));
  EXPECT_EQ(fx.fs.stats().resident_pages, 4u);
  fx.fs.release(*f, {});
  EXPECT_EQ(read_all(fx.fs, **g, 0, kPage), std::string(kPage, 'a')) << "one open file is left";
  EXPECT_EQ(fx.fs.stats().files, 1u);
  fx.fs.release(**g, {});  // the last: the data goes now, not at the kernel's FORGET
  EXPECT_EQ(fx.fs.stats().files, 0u);
  EXPECT_EQ(fx.fs.stats().resident_pages, 0u);
  EXPECT_EQ(fx.fs.statfs().f_bfree, 1024u);
  fx.fs.forget(ino, 1);
  EXPECT_EQ(fx.fs.stats().charged_pages, 0u);
}

// A write that finds the mount full passes the read barrier, behind which
// a worker serves the RELEASE of a deleted file that it read first, later
// than kReleaseGrace (the wait for a RELEASE not seen); the write gets the
// room.
TEST(FilesystemTest, AFullWriteWaitsBehindTheReadBarrierForARelease) {
  struct SlowWorker : ReadBarrier {
    std::thread worker;
    void wait(std::chrono::steady_clock::time_point /*until*/) override {
      if (worker.joinable()) worker.join();
    }
  };
  Fixture fx(options(8));
  auto deleted = fx.create("a", 8);
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  auto f = fx.create("b", 0);
  SlowWorker barrier;
  barrier.worker = std::thread([&] {
    std::this_thread::sleep_for(5 * kReleaseGrace);
    fx.fs.release(*deleted, {});
  });
  fx.fs.set_read_barrier(&barrier);
  const std::string data(8 * kPage, 'b');
  Result<size_t> r = fx.fs.write(*f, data.data(), data.size(), 0);
  fx.fs.set_read_barrier(nullptr);
  if (barrier.worker.joinable()) barrier.worker.join();
  ASSERT_TRUE(r.ok()) << strerror(r.err());
  EXPECT_EQ(fx.fs.stats().resident_pages, 8u);
}

// A write that finds the mount full passes the read barrier, behind which
// a worker frees a deleted file (its RELEASE was read first); the drop is
// over when the write looks for drops under way, and the room is there.
TEST(FilesystemTest, AFullWriteGetsTheRoomOfADropBehindTheReadBarrier) {
  struct LateWorker : ReadBarrier {
    std::function<void()> release;
    void wait(std::chrono::steady_clock::time_point /*until*/) override {
      if (release) std::exchange(release, {})();
    }
  };
  Fixture fx(options(8));
  auto deleted = fx.create("a", 8);
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  auto f = fx.create("b", 0);
  LateWorker barrier;
  barrier.release = [&] { fx.fs.release(*deleted, {}); };
  fx.fs.set_read_barrier(&barrier);
  const std::string data(8 * kPage, 'b');
  Result<size_t> r = fx.fs.write(*f, data.data(), data.size(), 0);
  fx.fs.set_read_barrier(nullptr);
  ASSERT_TRUE(r.ok()) << strerror(r.err());
  EXPECT_FALSE(barrier.release) << "the barrier was passed";
  EXPECT_EQ(fx.fs.stats().resident_pages, 8u);
}

TEST(FilesystemTest, RenameRules) {
  Fixture fx;
  Caller c;
  ASSERT_TRUE(fx.fs.mkdir(kRootIno, "d", 0755, c).ok());
  Result<Entry> d = fx.fs.lookup(kRootIno, "d");
  ASSERT_TRUE(fx.fs.mkdir(d->ino, "sub", 0755, c).ok());
  auto f = fx.create("f", 0);
  EXPECT_EQ(fx.fs.rename(kRootIno, "d", d->ino, "x", 0).err(), EINVAL);
  EXPECT_EQ(fx.fs.rename(kRootIno, "f", kRootIno, "d", 0).err(), EISDIR);
  EXPECT_EQ(fx.fs.rename(kRootIno, "d", kRootIno, "f", 0).err(), ENOTDIR);
  EXPECT_EQ(fx.fs.rename(kRootIno, "f", kRootIno, "d", RENAME_NOREPLACE).err(), EEXIST);
  ASSERT_TRUE(fx.fs.mkdir(kRootIno, "e", 0755, c).ok());
  EXPECT_EQ(fx.fs.rename(kRootIno, "e", kRootIno, "d", 0).err(), ENOTEMPTY);
  EXPECT_TRUE(fx.fs.rename(kRootIno, "f", kRootIno, "d", RENAME_EXCHANGE).ok());
  EXPECT_TRUE(S_ISREG(fx.fs.lookup(kRootIno, "d")->attr.st_mode));
  EXPECT_TRUE(S_ISDIR(fx.fs.lookup(kRootIno, "f")->attr.st_mode));
  EXPECT_TRUE(fx.fs.rename(kRootIno, "e", kRootIno, "f", RENAME_NOREPLACE).err() == EEXIST);
}

TEST(FilesystemTest, ReaddirResumesWithoutRepeatsWhileEntriesChange) {
  Fixture fx;
  for (int k = 0; k < 50; ++k) fx.create("f" + std::to_string(k), 0);
  std::set<std::string> seen;
  uint64_t off = 0;
  int round = 0;
  for (;;) {
    int taken = 0;
    Status s =
        fx.fs.readdir(kRootIno, off, [&](std::string_view name, uint64_t, mode_t, uint64_t next) {
          if (taken == 7) return false;
          EXPECT_TRUE(seen.insert(std::string(name)).second) << name;
          off = next;
          ++taken;
          return true;
        });
    ASSERT_TRUE(s.ok());
    if (taken == 0) break;
    // Change the directory between the first calls: remove an unseen entry,
    // add one (which readdir may or may not return, once at most).
    if (round < 5) {
      ASSERT_TRUE(fx.fs.unlink(kRootIno, "f" + std::to_string(49 - round)).ok());
      fx.create("g" + std::to_string(round++), 0);
    }
  }
  for (int k = 0; k < 50 - round; ++k) EXPECT_TRUE(seen.count("f" + std::to_string(k))) << k;
  for (int k = 50 - round; k < 50; ++k) EXPECT_FALSE(seen.count("f" + std::to_string(k))) << k;
}

TEST(FilesystemTest, SizeLimitPurgesVolatilePagesBeforeEnospc) {
  Fixture fx(options(16));
  auto a = fx.create("a", 8);
  ASSERT_TRUE(mark(fx.fs, *a, 0, 8 * kPage).ok());
  auto b = fx.create("b", 8);
  std::string more(4 * kPage, 'b');
  // 16 pages are full; 4 more must come from purging a's volatile pages.
  Result<size_t> w = fx.fs.write(*b, more.data(), more.size(), 8 * kPage);
  ASSERT_TRUE(w.ok()) << w.err();
  EXPECT_EQ(fx.fs.stats().purged_pages, 4u);
  // Nothing volatile is left to purge for the rest: ENOSPC, and b's
  // non-volatile data was not touched.
  std::string too_much(8 * kPage, 'c');
  EXPECT_EQ(fx.fs.write(*b, too_much.data(), too_much.size(), 12 * kPage).err(), ENOSPC);
  EXPECT_EQ(read_all(fx.fs, *b, 0, 8 * kPage), std::string(8 * kPage, 'a'));
  EXPECT_EQ(unmark(fx.fs, *a, 0, 0), 1);
}

TEST(FilesystemTest, ArgumentChecks) {
  Fixture fx;
  auto f = fx.create("a", 4);
  auto ro = fx.fs.open(f->inode->ino, O_RDONLY);
  EXPECT_EQ(mark(fx.fs, **ro, 0, kPage).err(), EBADF);
  EXPECT_EQ(unmark(fx.fs, **ro, 0, kPage), -EBADF);
  EXPECT_EQ(mark(fx.fs, *f, 1, kPage).err(), EINVAL);
  EXPECT_EQ(mark(fx.fs, *f, 0, kPage + 1).err(), EINVAL);
  EXPECT_EQ(mark(fx.fs, *f, 0, kPage, test::priority(kMaxPriority + 1)).err(), EINVAL);
  EXPECT_EQ(mark(fx.fs, *f, 0, 5 * kPage).err(), EINVAL);  // past EOF
  EXPECT_EQ(mark(fx.fs, *f, UINT64_MAX - kPage + 1, 2 * kPage).err(), EINVAL);
  EXPECT_EQ(unmark(fx.fs, *f, 0, 100 * kPage), 0);  // past EOF is harmless
  EXPECT_TRUE(status(fx.fs, **ro, 0, 0).ok());
  EXPECT_EQ(fx.fs.fallocate(**ro, 0, 0, kPage).err(), EBADF);
}

TEST(FilesystemTest, TruncateAndPunchKeepAccountingExact) {
  Fixture fx;
  auto f = fx.create("a", 8);
  ASSERT_TRUE(mark(fx.fs, *f, 0, 8 * kPage, test::priority(1)).ok());
  ASSERT_TRUE(fx.fs.fallocate(*f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kPage).ok());
  SetAttr a;
  a.set_size = true;
  a.size = 6 * kPage;
  ASSERT_TRUE(fx.fs.setattr(f->inode->ino, a).ok());
  AccountingSnapshot s = fx.fs.stats();
  EXPECT_EQ(s.resident_pages, 4u);
  EXPECT_EQ(s.volatile_pages, 4u);
  EXPECT_EQ(s.volatile_resident_pages, 4u);
  EXPECT_EQ(s.charged_pages, 4u);
  EXPECT_EQ(purge(fx.fs, VOLFS_PURGE_ALL), 4 * kPage);
  s = fx.fs.stats();
  EXPECT_EQ(s.resident_pages, 0u);
  EXPECT_EQ(s.purged_pages, 4u);
  EXPECT_EQ(s.charged_pages, 0u);
}

// Issue 11, defect 1: xattrs are charged against size= (df shows them, a full
// mount says ENOSPC), and the charge goes when they or their inode go.
TEST(FilesystemTest, XattrsAreChargedAgainstTheSizeLimit) {
  Fixture fx(options(64));
  auto f = fx.create("a", 0);
  const uint64_t ino = f->inode->ino;
  const std::string value(kXattrValueMax, 'x');
  int stored = 0;
  Status s;
  while ((s = fx.fs.setxattr(ino, "user.k" + std::to_string(stored), value, 0)).ok()) {
    ASSERT_LT(++stored, 64) << "xattrs are not charged against size=";
  }
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_EQ(stored, 3);  // 4 x (64 KiB + name + overhead) > 64 pages
  EXPECT_LT(fx.fs.statfs().f_bfree, 64u - 3 * 16 + 1);
  // A replacement is charged by its difference; a smaller one frees pages.
  ASSERT_TRUE(fx.fs.setxattr(ino, "user.k0", "small", XATTR_REPLACE).ok());
  EXPECT_GE(fx.fs.statfs().f_bfree, 64u - 2 * 17);
  ASSERT_TRUE(fx.fs.removexattr(ino, "user.k1").ok());
  EXPECT_GE(fx.fs.statfs().f_bfree, 64u - 17);
  EXPECT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  fx.fs.forget(ino, 1);
  EXPECT_EQ(fx.fs.statfs().f_bfree, 64u);
  EXPECT_EQ(fx.fs.stats().charged_pages, 0u);
}

// Issue 11, defect 1: every link beyond the first takes an inode slot, as on
// tmpfs, so names cannot grow the daemon without bound.
TEST(FilesystemTest, HardLinksCountAgainstNrInodes) {
  MountOptions o = options();
  o.nr_inodes = 10;
  Fixture fx(o);
  auto f = fx.create("a", 1);
  const uint64_t ino = f->inode->ino;
  EXPECT_EQ(fx.fs.statfs().f_ffree, 8u);  // root and a
  for (int k = 0; k < 8; ++k) {
    ASSERT_TRUE(fx.fs.link(ino, kRootIno, "l" + std::to_string(k)).ok()) << k;
  }
  EXPECT_EQ(fx.fs.statfs().f_ffree, 0u);
  EXPECT_EQ(fx.fs.link(ino, kRootIno, "one_more").err(), ENOSPC);
  EXPECT_EQ(fx.fs.create(kRootIno, "b", 0644, Caller{}).err(), ENOSPC);
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "l0").ok());
  EXPECT_EQ(fx.fs.statfs().f_ffree, 1u);
  auto b = fx.create("b", 0);
  EXPECT_EQ(fx.fs.statfs().f_ffree, 0u);
  // Renaming a file onto a link frees the link's slot.
  ASSERT_TRUE(fx.fs.rename(kRootIno, "b", kRootIno, "l1", 0).ok());
  EXPECT_EQ(fx.fs.statfs().f_ffree, 1u);
  EXPECT_TRUE(fx.fs.link(ino, kRootIno, "one_more").ok());
  EXPECT_EQ(fx.fs.statfs().f_ffree, 0u);
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "l1").ok());
  fx.fs.forget(b->inode->ino, 1);
  EXPECT_EQ(fx.fs.statfs().f_ffree, 1u);
  for (int k = 2; k < 8; ++k) ASSERT_TRUE(fx.fs.unlink(kRootIno, "l" + std::to_string(k)).ok());
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "one_more").ok());
  EXPECT_EQ(fx.fs.statfs().f_ffree, 8u);
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  fx.fs.forget(ino, 10);
  EXPECT_EQ(fx.fs.statfs().f_ffree, 9u);
}

// Issue 11, defect 1: marking every other page of a sparse file costs a run of
// daemon heap per range and no page; a file holds at most kMaxRunsPerFile
// runs, and the batch that would pass it fails whole with ENOSPC.
TEST(FilesystemTest, VolatileRunsPerFileAreBounded) {
  Fixture fx;
  auto f = fx.create("a", 0);
  SetAttr a;
  a.set_size = true;
  a.size = (2 * kMaxRunsPerFile + uint64_t{2} * VOLFS_BATCH_MAX) * kPage;
  ASSERT_TRUE(fx.fs.setattr(f->inode->ino, a).ok());
  uint64_t page = 0;
  int err = 0;
  while (err == 0) {
    std::vector<Filesystem::MarkRequest> batch;
    for (unsigned k = 0; k < VOLFS_BATCH_MAX; ++k, page += 2) {
      batch.push_back({ByteRange{page * kPage, kPage}, {}});
    }
    const uint64_t before = fx.fs.stats().volatile_pages;
    auto out = std::make_shared<std::atomic<int>>(-1);
    fx.fs.mark_batch(*f, batch, [out](Status st) { *out = st.err(); });
    err = wait_for(out, -1);
    if (err) {
      EXPECT_EQ(fx.fs.stats().volatile_pages, before) << "a batch is all or nothing";
    }
    ASSERT_LE(f->inode->state->map().run_count(), kMaxRunsPerFile);
    ASSERT_LT(page, 2 * kMaxRunsPerFile + uint64_t{2} * VOLFS_BATCH_MAX) << "no limit on runs";
  }
  EXPECT_EQ(err, ENOSPC);
  EXPECT_GT(f->inode->state->map().run_count(), kMaxRunsPerFile - uint64_t{8} * VOLFS_BATCH_MAX);
  // Unmarking gives the runs back.
  EXPECT_EQ(unmark(fx.fs, *f, 0, 0), 0);
  EXPECT_EQ(f->inode->state->map().run_count(), 0u);
  EXPECT_TRUE(mark(fx.fs, *f, 0, 2 * kPage).ok());
}

// Plays the kernel: invalidating a range first writes back the pages the
// "process" dirtied, as fuse_reverse_inval_inode does, then may run an
// action (a racing request) before returning.
class KernelLikeInvalidator : public CacheInvalidator {
 public:
  explicit KernelLikeInvalidator(Filesystem& fs) : fs_(fs) {}
  void invalidate(uint64_t, uint64_t off, uint64_t len) override {
    ++calls;
    if (dirty && dirty->inode) {
      std::string data(len, 'D');
      (void)fs_.write(*dirty, data.data(), len, off, /*writeback=*/true);
    }
    if (during) during();
  }
  Filesystem& fs_;
  OpenFile* dirty = nullptr;
  std::function<void()> during;
  int calls = 0;
};

// The adapter passes credentials only under KILLPRIV_V2; the core then
// clears the bits on a truncating open (and tells the kernel, whose cached
// mode the OPEN reply cannot correct) and on a SETATTR that asks for it.
TEST(FilesystemTest, PrivilegesGoOnATruncatingOpenAndAKillingSetattr) {
  Fixture fx;
  struct AttrInvalidator : CacheInvalidator {
    void invalidate(uint64_t, uint64_t, uint64_t) override {}
    void invalidate_attributes(uint64_t ino) override { inos.push_back(ino); }
    std::vector<uint64_t> inos;
  } inv;
  fx.fs.start(&inv);
  auto f = fx.create("f", 1);
  const uint64_t ino = f->inode->ino;
  SetAttr mode;
  mode.set_mode = true;
  mode.mode = 06777;
  ASSERT_TRUE(fx.fs.setattr(ino, mode).ok());
  int asked = 0;
  auto nobody = [&] {
    ++asked;
    return Credentials{false, {65534}};
  };

  ASSERT_TRUE(fx.fs.open(ino, O_WRONLY | O_TRUNC).ok());  // no credentials: the kernel's job
  EXPECT_EQ(fx.fs.getattr(ino)->st_mode & 07777, 06777u);
  EXPECT_TRUE(inv.inos.empty());
  ASSERT_TRUE(fx.fs.open(ino, O_WRONLY | O_TRUNC, nobody).ok());
  EXPECT_EQ(fx.fs.getattr(ino)->st_mode & 07777, 0777u);
  EXPECT_EQ(inv.inos, std::vector<uint64_t>{ino});
  ASSERT_TRUE(fx.fs.open(ino, O_WRONLY | O_TRUNC, nobody).ok());
  EXPECT_EQ(asked, 1) << "credentials are read only for a file with the bits";
  EXPECT_EQ(inv.inos.size(), 1u) << "nothing changed, nothing to invalidate";

  mode.mode = 04755;
  ASSERT_TRUE(fx.fs.setattr(ino, mode).ok());
  SetAttr kill;
  kill.kill = PrivilegeKill::kModify;
  kill.credentials = [] { return Credentials{true, {0}}; };  // CAP_FSETID keeps them
  EXPECT_EQ(fx.fs.setattr(ino, kill)->st_mode & 07777, 04755u);
  kill.kill = PrivilegeKill::kChown;
  EXPECT_EQ(fx.fs.setattr(ino, kill)->st_mode & 07777, 0755u);
  fx.fs.stop();
}

TEST(FilesystemTest, WriteBackDuringPurgeDoesNotResurrectData) {
  Fixture fx;
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  auto f = fx.create("a", 4);
  inval.dirty = f.get();
  ASSERT_TRUE(mark(fx.fs, *f, 0, 4 * kPage).ok());
  std::atomic<uint64_t> purged{UINT64_MAX};
  fx.fs.purge(VOLFS_PURGE_ALL, [&](uint64_t b) { purged = b; });
  fx.fs.stop();  // runs the purge's second half
  EXPECT_EQ(purged.load(), 4 * kPage);
  EXPECT_EQ(inval.calls, 2);
  // The first invalidation's write-back was dropped; the second one's (a page
  // dirtied after the purge) was kept, and the unmark still says purged.
  EXPECT_EQ(fx.fs.stats().resident_pages, 4u);
  inval.dirty = nullptr;
  EXPECT_EQ(unmark(fx.fs, *f, 0, 0), 1);
}

TEST(FilesystemTest, UnmarkDuringPurgeWaitsAndWritesAfterItAreKept) {
  Fixture fx;
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  auto f = fx.create("a", 4);
  ASSERT_TRUE(mark(fx.fs, *f, 0, 4 * kPage).ok());
  std::atomic<int> answer{-EINPROGRESS};
  bool first = true;
  inval.during = [&] {
    if (!first) return;
    first = false;
    // An unmark racing the purge's invalidation must not answer yet.
    fx.fs.unmark(*f, ByteRange{0, 0},
                 [&](Result<bool> r) { answer = r.ok() ? int{*r} : -r.err(); });
    EXPECT_EQ(answer.load(), -EINPROGRESS);
  };
  EXPECT_EQ(purge(fx.fs, VOLFS_PURGE_ALL), 4 * kPage);
  fx.fs.stop();
  EXPECT_EQ(answer.load(), 1);
  std::string data(kPage, 'n');
  ASSERT_TRUE(fx.fs.write(*f, data.data(), kPage, 0).ok());
  EXPECT_EQ(read_all(fx.fs, *f, 0, kPage), data);
}

TEST(FilesystemTest, MarkBatchIsAllOrNothing) {
  Fixture fx;
  auto f = fx.create("a", 4);
  auto err = std::make_shared<std::atomic<int>>(-1);
  // The third range reaches past the end of the file.
  fx.fs.mark_batch(*f,
                   {{ByteRange{0, kPage}, {}},
                    {ByteRange{kPage, kPage}, test::kStrict},
                    {ByteRange{3 * kPage, 2 * kPage}, {}}},
                   [err](Status st) { *err = st.err(); });
  EXPECT_EQ(wait_for(err, -1), EINVAL);
  EXPECT_EQ(fx.fs.stats().volatile_pages, 0u);
  *err = -1;
  fx.fs.mark_batch(*f, {{ByteRange{0, kPage}, {}}, {ByteRange{kPage, kPage}, test::priority(8)}},
                   [err](Status st) { *err = st.err(); });
  EXPECT_EQ(wait_for(err, -1), EINVAL) << "a priority out of range in any range";
  EXPECT_EQ(fx.fs.stats().volatile_pages, 0u);
  *err = -1;
  fx.fs.mark_batch(*f, {{ByteRange{0, kPage}, {}}, {ByteRange{2 * kPage, 2 * kPage}, {}}},
                   [err](Status st) { *err = st.err(); });
  EXPECT_EQ(wait_for(err, -1), 0);
  EXPECT_EQ(fx.fs.stats().volatile_pages, 3u);
}

TEST(FilesystemTest, UnmarkBatchAnswersInOrderAndWaitsOnlyFromTheBusyRange) {
  Fixture fx;
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  auto f = fx.create("a", 4);
  ASSERT_TRUE(mark(fx.fs, *f, 0, kPage).ok());
  ASSERT_TRUE(mark(fx.fs, *f, 2 * kPage, kPage, test::priority(0)).ok());
  auto answer = std::make_shared<std::atomic<int>>(-EINPROGRESS);  // bit k: range k purged
  bool first = true;
  inval.during = [&] {
    if (!first) return;
    first = false;
    // Page 2 is being purged: the batch unmarks page 0 and then waits.
    fx.fs.unmark_batch(*f, {ByteRange{0, kPage}, ByteRange{2 * kPage, kPage}},
                       [answer](Result<std::vector<bool>> r) {
                         if (!r.ok()) return void(*answer = -r.err());
                         int bits = 0;
                         for (size_t k = 0; k < r->size(); ++k) bits |= int{(*r)[k]} << k;
                         *answer = bits | int(r->size()) << 8;
                       });
    EXPECT_EQ(answer->load(), -EINPROGRESS);
    Result<RangeStatus> st = status(fx.fs, *f, 0, kPage);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->nonvolatile_pages, 1u) << "ranges before the busy one are applied in order";
  };
  EXPECT_EQ(purge(fx.fs, kPage), kPage);
  fx.fs.stop();
  EXPECT_EQ(answer->load(), 0b10 | 2 << 8) << "page 0 intact, page 2 purged";
  EXPECT_EQ(fx.fs.stats().volatile_pages, 0u);
}

TEST(FilesystemTest, StrictPurgedPagesFailWithEioUntilUnmarked) {
  Fixture fx;
  auto f = fx.create("a", 3);
  ASSERT_TRUE(mark(fx.fs, *f, kPage, kPage, test::kStrict).ok());
  EXPECT_EQ(purge(fx.fs, VOLFS_PURGE_ALL), kPage);
  int err = 0;
  read_all(fx.fs, *f, 0, 3 * kPage, &err);
  EXPECT_EQ(err, EIO);
  EXPECT_EQ(read_all(fx.fs, *f, 0, kPage), std::string(kPage, 'a'));
  EXPECT_EQ(read_all(fx.fs, *f, 2 * kPage, kPage), std::string(kPage, 'a'));
  EXPECT_EQ(fx.fs.write(*f, "x", 1, kPage).err(), EIO);
  EXPECT_EQ(unmark(fx.fs, *f, kPage, kPage), 1);
  EXPECT_EQ(read_all(fx.fs, *f, kPage, kPage), std::string(kPage, '\0'));
}

// Issue 11, defect 4: between phase 1 (pages recorded purged) and the end of
// phase 2 (the kernel's copies dropped) read(2) may still return the old
// contents; GET_STATUS must not call the pages purged meanwhile, so it waits.
TEST(FilesystemTest, StatusWaitsWhileAPurgeOfTheRangeSettles) {
  Fixture fx;
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  auto f = fx.create("a", 4);
  ASSERT_TRUE(mark(fx.fs, *f, kPage, kPage, test::kStrict).ok());
  auto answered = std::make_shared<std::atomic<int>>(-1);  // purged pages, once answered
  std::vector<int> seen_during;
  inval.during = [&] {
    if (seen_during.empty()) {
      fx.fs.range_status(*f, ByteRange{kPage, kPage}, [answered](Result<RangeStatus> r) {
        *answered = r.ok() ? static_cast<int>(r->purged_pages) : -r.err();
      });
    }
    seen_during.push_back(answered->load());
  };
  EXPECT_EQ(purge(fx.fs, VOLFS_PURGE_ALL), kPage);
  fx.fs.stop();
  EXPECT_EQ(seen_during, (std::vector<int>{-1, -1})) << "answered while the kernel could serve "
                                                        "the old page";
  EXPECT_EQ(answered->load(), 1);
}

// Issue 11, defect 3: a purged zero-fill page re-marked strict may have its
// zeros cached by the kernel; the mark drops them (on the purge worker, no
// lock held) before it answers.
TEST(FilesystemTest, RemarkingPurgedZeroFillStrictDropsTheKernelsCopyFirst) {
  Fixture fx;
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  auto f = fx.create("a", 4);
  ASSERT_TRUE(mark(fx.fs, *f, kPage, 2 * kPage).ok());
  EXPECT_EQ(purge(fx.fs, kPage), kPage);  // page 1 only
  const int calls = inval.calls;
  // Page 3 (non-volatile, resident) joins: only purged zero-fill pages matter.
  auto seen = std::make_shared<std::atomic<int>>(-1);
  fx.fs.mark(*f, ByteRange{kPage, 3 * kPage}, test::kStrict,
             [&inval, seen](Status s) { *seen = s.ok() ? inval.calls : -1; });
  EXPECT_EQ(wait_for(seen, -1), calls + 1) << "answered before the kernel's copy was dropped";
  int err = 0;
  read_all(fx.fs, *f, kPage, kPage, &err);
  EXPECT_EQ(err, EIO);
  // A resident strict page re-marked strict costs no invalidation.
  ASSERT_TRUE(mark(fx.fs, *f, 2 * kPage, kPage, test::kStrict).ok());
  EXPECT_EQ(inval.calls, calls + 1);
  Result<RangeStatus> st = status(fx.fs, *f, 0, 0);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->purged_pages, 1u);
  EXPECT_EQ(st->strict_pages, 3u);
}

// Issue 11, defect 7: io_mu prefers writers. Readers that overlap without end
// (each holds io_mu shared while its reply goes out) must not starve a purge,
// which needs io_mu exclusive. glibc's std::shared_mutex prefers readers, and
// the purge waited as long as the readers ran.
TEST(FilesystemTest, APurgeIsNotStarvedByAReaderLoop) {
  Fixture fx;
  auto f = fx.create("a", 8);
  ASSERT_TRUE(mark(fx.fs, *f, 4 * kPage, 4 * kPage).ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  readers.reserve(3);
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (!stop) {
        (void)fx.fs.read(*f, 0, kPage, [](int, uint64_t, size_t) {
          std::this_thread::sleep_for(std::chrono::microseconds(500));  // a slow reply
        });
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto start = std::chrono::steady_clock::now();
  std::atomic<uint64_t> purged{UINT64_MAX};
  std::thread purger([&] { purged = purge(fx.fs, VOLFS_PURGE_ALL); });
  while (purged == UINT64_MAX &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  stop = true;
  for (auto& r : readers) r.join();
  purger.join();
  EXPECT_EQ(purged.load(), 4 * kPage);
  EXPECT_LT(waited, std::chrono::seconds(1))
      << "the purge waited " << std::chrono::duration<double>(waited).count()
      << " s for a loop of readers";
}

// Issue 11, defect 7: freeing a file's store (slow for a big file) happens
// outside the exclusive ns_mu_ that every lookup needs, but before the
// request answers. And as on tmpfs, a file's memory comes back when it has
// neither a name nor an open file: at that unlink or release, not at the
// kernel's FORGET, which comes later (a write right after the unlink met a
// full mount).
TEST(FilesystemTest, AClosedFileFreesItsDataBeforeItsUnlinkAnswers) {
  Fixture fx;
  fx.fs.start(nullptr);
  auto f = fx.create("big", 64);
  const uint64_t ino = f->inode->ino;
  const int fd = f->inode->store->fd();
  fx.fs.release(*f, {});
  EXPECT_NE(fcntl(fd, F_GETFD), -1) << "a file with a name keeps its store";
  ASSERT_TRUE(fx.fs.unlink(kRootIno, "big").ok());
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "the store is freed before unlink returns";
  EXPECT_EQ(fx.fs.stats().files, 0u);
  EXPECT_EQ(fx.fs.stats().resident_pages, 0u);
  EXPECT_EQ(fx.fs.stats().charged_pages, 0u);
  EXPECT_EQ(fx.fs.statfs().f_bfree, 1024u);
  // The kernel may still send requests for it that resolved its path before
  // the unlink: they come after it, as if they had looked it up later.
  EXPECT_EQ(fx.fs.open(ino, O_RDWR).err(), ENOENT);
  EXPECT_EQ(fx.fs.open(ino, O_RDWR | O_TRUNC).err(), ENOENT);
  SetAttr grow;
  grow.set_size = true;
  grow.size = 1;
  EXPECT_EQ(fx.fs.setattr(ino, grow).err(), ENOENT);
  EXPECT_TRUE(fx.fs.getattr(ino).ok());
  fx.fs.forget(ino, 1);
  EXPECT_EQ(fx.fs.getattr(ino).err(), ENOENT);
  EXPECT_EQ(fx.fs.stats().charged_pages, 0u);
}

// The same by a rename over the file's last name.
TEST(FilesystemTest, AClosedFileRenamedOverFreesItsData) {
  Fixture fx;
  auto f = fx.create("old", 32);
  auto g = fx.create("new", 1);
  const int fd = f->inode->store->fd();
  fx.fs.release(*f, {});
  fx.fs.release(*g, {});
  ASSERT_TRUE(fx.fs.rename(kRootIno, "new", kRootIno, "old", 0).ok());
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(fx.fs.stats().files, 1u);
  EXPECT_EQ(fx.fs.stats().resident_pages, 1u);
}

// Issue 11, defect 6: an error after the page state was committed left the
// pages resident and charged. A write whose store cannot grow (here: past
// RLIMIT_FSIZE, EFBIG) must leave the accounting as it was.
TEST(FilesystemTest, AWriteWhoseStoreCannotGrowChangesNothing) {
  Fixture fx;
  auto f = fx.create("a", 1);
  const AccountingSnapshot before = fx.fs.stats();
  struct sigaction ign {
  }, old_sa{};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ign, &old_sa), 0);
  rlimit old_lim{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_lim), 0);
  rlimit lim = old_lim;
  lim.rlim_cur = 16 * kPage;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string data(2 * kPage, 'w');
  Result<size_t> w = fx.fs.write(*f, data.data(), data.size(), 32 * kPage);
  setrlimit(RLIMIT_FSIZE, &old_lim);
  sigaction(SIGXFSZ, &old_sa, nullptr);
  EXPECT_EQ(w.err(), EFBIG);
  const AccountingSnapshot after = fx.fs.stats();
  EXPECT_EQ(after.resident_pages, before.resident_pages);
  EXPECT_EQ(after.charged_pages, before.charged_pages);
  EXPECT_EQ(fx.fs.getattr(f->inode->ino)->st_size, static_cast<off_t>(kPage));
  EXPECT_EQ(fx.fs.getattr(f->inode->ino)->st_blocks, static_cast<blkcnt_t>(kPage / 512));
}

// Threads race writers of non-volatile pages, mark/unmark cycles and purges
// over one file. Every INTACT answer must be true and no non-volatile page
// may change. Meant for the TSan build as much as for the logic.
TEST(FilesystemTest, ConcurrentMarkUnmarkPurgeKeepsThePromise) {
  Fixture fx(options(4096));
  KernelLikeInvalidator inval(fx.fs);
  fx.fs.start(&inval);
  constexpr uint64_t kRegions = 4, kRegionPages = 8;
  auto f = fx.create("a", kRegions * kRegionPages, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> false_intact{0}, intact{0}, purged_answers{0};
  std::vector<std::thread> threads;
  for (uint64_t r = 0; r < kRegions; ++r) {
    threads.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(r));
      uint64_t off = r * kRegionPages * kPage, len = kRegionPages * kPage;
      for (int gen = 1; !stop; ++gen) {
        std::string data(len, static_cast<char>('A' + gen % 26));
        ASSERT_TRUE(fx.fs.write(*f, data.data(), len, off).ok());
        ASSERT_TRUE(
            mark(fx.fs, *f, off, len, test::priority(static_cast<uint8_t>(rng() % 8))).ok());
        std::this_thread::yield();
        std::atomic<int> answer{-EINPROGRESS};
        fx.fs.unmark(*f, ByteRange{off, len}, [&](Result<bool> res) { answer = int{*res}; });
        while (answer == -EINPROGRESS) std::this_thread::yield();
        std::string now = read_all(fx.fs, *f, off, len);
        if (answer == 0) {
          ++intact;
          if (now != data) ++false_intact;
        } else {
          ++purged_answers;
        }
        // Non-volatile now: a write must stick whatever purges run.
        ASSERT_TRUE(fx.fs.write(*f, data.data(), len, off).ok());
        ASSERT_EQ(read_all(fx.fs, *f, off, len), data);
      }
    });
  }
  threads.emplace_back([&] {
    while (!stop) (void)purge(fx.fs, kPage * 3);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  stop = true;
  for (auto& t : threads) t.join();
  fx.fs.stop();
  EXPECT_EQ(false_intact.load(), 0);
  EXPECT_GT(intact.load() + purged_answers.load(), 0);
  AccountingSnapshot s = fx.fs.stats();
  EXPECT_EQ(s.volatile_pages, 0u);
  EXPECT_EQ(s.resident_pages, kRegions * kRegionPages);
  EXPECT_EQ(s.charged_pages, s.resident_pages);
  std::printf("intact %d, purged %d\n", intact.load(), purged_answers.load());
}

// Mark, unmark, purge (explicit and for space), write and truncate through
// the Filesystem, each made to fail at its 1st, 2nd, ... allocation until it
// succeeds. After each failure the maps are valid, the counters equal a
// recount, no page is left PURGING, and at the end a full purge takes every
// volatile resident page (the queue lost no mark).
TEST(FilesystemTest, AllocationFailuresLeaveTheCoreConsistent) {
  Fixture fx(options(64));
  std::vector<std::unique_ptr<OpenFile>> files;
  files.reserve(3);
  for (int k = 0; k < 3; ++k) files.push_back(fx.create("f" + std::to_string(k), 16));
  std::mt19937_64 rng(1234);
  auto check = [&](const std::string& what) {
    uint64_t resident = 0, vol = 0, vol_res = 0, purged = 0;
    for (auto& f : files) {
      const FileState& st = *f->inode->state;
      ASSERT_TRUE(st.map().valid()) << what;
      ASSERT_FALSE(st.has_purging(PageRange{0, FileState::kEndOfFile})) << what;
      ASSERT_EQ(f->inode->settling, 0) << what;
      st.map().for_each_run([&](PageRange r, const PageFlags& pf) {
        resident += pf.resident ? r.pages() : 0;
        vol += pf.is_volatile ? r.pages() : 0;
        vol_res += pf.is_volatile && pf.resident ? r.pages() : 0;
        purged += pf.is_volatile && pf.purged ? r.pages() : 0;
      });
    }
    AccountingSnapshot s = fx.fs.stats();
    ASSERT_EQ(s.resident_pages, resident) << what;
    ASSERT_EQ(s.charged_pages, resident) << what;
    ASSERT_EQ(s.volatile_pages, vol) << what;
    ASSERT_EQ(s.volatile_resident_pages, vol_res) << what;
    ASSERT_EQ(s.purged_pages, purged) << what;
  };
  static const char* const kNames[] = {"mark", "unmark", "purge", "write", "truncate", "status"};
  long failures = 0;
  for (int step = 0; step < 300; ++step) {
    OpenFile& f = *files[rng() % files.size()];
    uint64_t a = rng() % 16, b = rng() % 17;
    if (a > b) std::swap(a, b);
    const int op = static_cast<int>(rng() % 6);
    const MarkOptions flags = (rng() & 1) ? test::kStrict : MarkOptions{};
    const uint64_t bytes = (1 + rng() % 8) * kPage;
    std::string data(((b - a) ? b - a : 1) * kPage, 'x');
    for (long n = 1;; ++n) {
      auto answered = std::make_shared<int>(0);
      g_fail_countdown = n;
      bool threw = false;
      try {
        switch (op) {
          case 0:
            fx.fs.mark(f, ByteRange{a * kPage, (b - a) * kPage}, flags,
                       [answered](Status) { ++*answered; });
            break;
          case 1:
            fx.fs.unmark(f, ByteRange{a * kPage, (b - a) * kPage},
                         [answered](Result<bool>) { ++*answered; });
            break;
          case 2:
            fx.fs.purge(bytes, [answered](uint64_t) { ++*answered; });
            break;
          case 3:  // may need room: purges for space when the mount is full
            (void)fx.fs.write(f, data.data(), data.size(), a * kPage);
            ++*answered;
            break;
          case 4: {
            SetAttr sa;
            sa.set_size = true;
            sa.size = b * kPage;
            (void)fx.fs.setattr(f.inode->ino, sa);
            ++*answered;
            break;
          }
          case 5:
            fx.fs.range_status(f, ByteRange{a * kPage, (b - a) * kPage},
                               [answered](Result<RangeStatus>) { ++*answered; });
            break;
        }
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      g_fail_countdown = 0;
      // Exactly one of: an answer, or an exception (the adapter's ENOMEM).
      ASSERT_EQ(*answered + int{threw}, 1) << kNames[op] << " at allocation " << n;
      check(std::string(kNames[op]) + " failing at allocation " + std::to_string(n) + ", step " +
            std::to_string(step));
      if (::testing::Test::HasFatalFailure()) return;
      if (!threw) break;
      ++failures;
    }
  }
  EXPECT_GT(failures, 100);
  purge(fx.fs, VOLFS_PURGE_ALL);
  EXPECT_EQ(fx.fs.stats().volatile_resident_pages, 0u);
}

}  // namespace
}  // namespace volfs::core
