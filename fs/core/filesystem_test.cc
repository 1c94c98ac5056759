// Unit tests of the Filesystem core without FUSE: namespace and inode
// lifetime, data and accounting, and the purge protocol, with a
// CacheInvalidator that behaves like the kernel (it writes dirty pages back
// into the filesystem from inside the invalidation).
#include "filesystem.h"

#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <random>
#include <set>
#include <thread>

namespace volfs {
namespace {

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

// Synchronous wrappers around the callback API: they wait for the answer,
// which comes from the purge worker when a purge is involved.
template <class T>
T wait_for(const std::shared_ptr<std::atomic<T>>& v, T pending) {
  while (v->load() == pending) std::this_thread::yield();
  return v->load();
}

Status mark(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len, uint32_t flags = 0) {
  auto out = std::make_shared<std::atomic<int>>(-1);
  fs.mark(f, ByteRange{off, len}, flags, [out](Status s) { *out = s.err(); });
  int err = wait_for(out, -1);
  return err ? Status::error(err) : Status();
}

// Returns 1 purged, 0 intact, -errno on error.
int unmark(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len) {
  auto out = std::make_shared<std::atomic<int>>(-EINPROGRESS);
  fs.unmark(f, ByteRange{off, len}, [out](Result<bool> r) { *out = r.ok() ? int{*r} : -r.err(); });
  return wait_for(out, -EINPROGRESS);
}

uint64_t purge(Filesystem& fs, uint64_t bytes) {
  auto out = std::make_shared<std::atomic<uint64_t>>(UINT64_MAX);
  fs.purge(bytes, [out](uint64_t b) { *out = b; });
  return wait_for(out, UINT64_MAX);
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

TEST(FilesystemTest, UnlinkedOpenFileLivesUntilForget) {
  Fixture fx;
  auto f = fx.create("a", 4);
  uint64_t ino = f->inode->ino;
  EXPECT_EQ(fx.fs.stats().files, 1u);
  EXPECT_TRUE(fx.fs.unlink(kRootIno, "a").ok());
  EXPECT_EQ(fx.fs.lookup(kRootIno, "a").err(), ENOENT);
  EXPECT_EQ(read_all(fx.fs, *f, 0, kPage), std::string(kPage, 'a'));
  EXPECT_EQ(fx.fs.stats().resident_pages, 4u);
  fx.fs.forget(ino, 1);
  EXPECT_EQ(fx.fs.stats().files, 0u);
  EXPECT_EQ(fx.fs.stats().resident_pages, 0u);
  EXPECT_EQ(fx.fs.statfs().f_bfree, 1024u);
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
  EXPECT_EQ(mark(fx.fs, *f, 0, kPage, 0x80000000u).err(), EINVAL);
  EXPECT_EQ(mark(fx.fs, *f, 0, 5 * kPage).err(), EINVAL);  // past EOF
  EXPECT_EQ(mark(fx.fs, *f, UINT64_MAX - kPage + 1, 2 * kPage).err(), EINVAL);
  EXPECT_EQ(unmark(fx.fs, *f, 0, 100 * kPage), 0);  // past EOF is harmless
  EXPECT_TRUE(fx.fs.range_status(**ro, ByteRange{0, 0}).ok());
  EXPECT_EQ(fx.fs.fallocate(**ro, 0, 0, kPage).err(), EBADF);
}

TEST(FilesystemTest, TruncateAndPunchKeepAccountingExact) {
  Fixture fx;
  auto f = fx.create("a", 8);
  ASSERT_TRUE(mark(fx.fs, *f, 0, 8 * kPage, VOLFS_MARK_PRIORITY(1)).ok());
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
                   {{ByteRange{0, kPage}, 0},
                    {ByteRange{kPage, kPage}, VOLFS_MARK_STRICT},
                    {ByteRange{3 * kPage, 2 * kPage}, 0}},
                   [err](Status st) { *err = st.err(); });
  EXPECT_EQ(wait_for(err, -1), EINVAL);
  EXPECT_EQ(fx.fs.stats().volatile_pages, 0u);
  *err = -1;
  fx.fs.mark_batch(*f, {{ByteRange{0, kPage}, 0}, {ByteRange{kPage, kPage}, 0x80000000u}},
                   [err](Status st) { *err = st.err(); });
  EXPECT_EQ(wait_for(err, -1), EINVAL) << "an unknown flag in any range";
  EXPECT_EQ(fx.fs.stats().volatile_pages, 0u);
  *err = -1;
  fx.fs.mark_batch(*f, {{ByteRange{0, kPage}, 0}, {ByteRange{2 * kPage, 2 * kPage}, 0}},
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
  ASSERT_TRUE(mark(fx.fs, *f, 2 * kPage, kPage, VOLFS_MARK_PRIORITY(0)).ok());
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
    Result<RangeStatus> st = fx.fs.range_status(*f, ByteRange{0, kPage});
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
  ASSERT_TRUE(mark(fx.fs, *f, kPage, kPage, VOLFS_MARK_STRICT).ok());
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
        ASSERT_TRUE(mark(fx.fs, *f, off, len, VOLFS_MARK_PRIORITY(rng() % 8)).ok());
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

}  // namespace
}  // namespace volfs
