// Unit tests of the core's passthrough io mode without FUSE: the test plays
// the kernel, writing and punching the store directly through the fd the
// core hands to its register callback, as passthrough writes and stores
// reach the store without the daemon. Needs a private tmpfs (root).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>

#include "core_test_util.h"
#include "filesystem.h"

namespace volfs::core {
namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

MountOptions options(uint64_t size_pages = 1024) {
  MountOptions o;
  o.size_bytes = size_pages * kPage;
  o.nr_inodes = 100;
  return o;
}

int mark(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len, MarkOptions o = {}) {
  return test::mark(fs, f, off, len, o).err();
}
using test::unmark;
uint64_t purge_all(Filesystem& fs) { return test::purge(fs, VOLFS_PURGE_ALL); }

class PassthroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Backing b = Backing::make(options().size_bytes, options().nr_inodes);
    if (!b.private_tmpfs()) GTEST_SKIP() << "no private tmpfs: " << b.fallback_reason();
    fs_ = std::make_unique<Filesystem>(options(), kPage, std::move(b));
    fs_->start(nullptr);
    fs_->set_passthrough(true);
  }

  // Opens ino; a passthrough open registers its store, whose fd comes back.
  std::unique_ptr<OpenFile> open(uint64_t ino, int* store_fd = nullptr) {
    auto f = fs_->open(ino, O_RDWR);
    EXPECT_TRUE(f.ok());
    if ((*f)->passthrough) {
      Result<int> id = fs_->backing_id(**f, [&](int fd) {
        if (store_fd) *store_fd = fd;
        return 7;
      });
      EXPECT_TRUE(id.ok() && *id == 7);
    }
    return std::move(*f);
  }

  // Releases f as the kernel does at its last close; returns the backing id
  // it unregistered, if any.
  std::optional<int> release(OpenFile& f) {
    std::optional<int> id;
    fs_->release(f, [&](int i) { id = i; });
    return id;
  }

  uint64_t create(const std::string& name) {
    Result<Entry> e = fs_->create(kRootIno, name, 0644, Caller{});
    EXPECT_TRUE(e.ok());
    return e->ino;
  }

  std::unique_ptr<Filesystem> fs_;
};

void store(int fd, uint64_t off, const std::string& s) {
  ASSERT_EQ(pwrite(fd, s.data(), s.size(), static_cast<off_t>(off)),
            static_cast<ssize_t>(s.size()));
}

// Maps `pages` of the store as a passthrough mmap does: through a file of
// the kernel's own, opened on the store for the FUSE open, that the mapping
// keeps when the FUSE file is released. MAP_FAILED on failure.
void* kernel_map(int store_fd, uint64_t pages, int prot) {
  int kernel_fd = ::open(("/proc/self/fd/" + std::to_string(store_fd)).c_str(), O_RDWR);
  if (kernel_fd < 0) return MAP_FAILED;
  void* m = mmap(nullptr, pages * kPage, prot, MAP_SHARED, kernel_fd, 0);
  ::close(kernel_fd);
  return m;
}

std::string load(int fd, uint64_t off, size_t n) {
  std::string s(n, '?');
  EXPECT_EQ(pread(fd, s.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
  return s;
}

TEST_F(PassthroughTest, PurgePunchesTheStoreAndUnmarkSaysPurged) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  ASSERT_TRUE(f->passthrough);
  store(fd, 0, std::string(4 * kPage, 'x'));
  // Size, blocks and resident pages follow the store, not what the daemon saw.
  Result<struct stat> st = fs_->getattr(ino);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(static_cast<uint64_t>(st->st_size), 4 * kPage);
  EXPECT_EQ(static_cast<uint64_t>(st->st_blocks), 4 * kPage / 512);
  EXPECT_EQ(fs_->stats().resident_pages, 4u);

  ASSERT_EQ(mark(*fs_, *f, kPage, 2 * kPage), 0);
  EXPECT_EQ(fs_->stats().volatile_resident_pages, 2u);
  EXPECT_EQ(purge_all(*fs_), 2 * kPage);
  EXPECT_EQ(load(fd, kPage, 2 * kPage), std::string(2 * kPage, '\0'));
  EXPECT_EQ(load(fd, 0, kPage), std::string(kPage, 'x'));
  EXPECT_EQ(fs_->stats().resident_pages, 2u);
  EXPECT_EQ(unmark(*fs_, *f, kPage, 2 * kPage), 1);
  EXPECT_EQ(release(*f), std::optional<int>(7));
}

TEST_F(PassthroughTest, StoresAfterTheMarkArePurgedAndHolesStayIntact) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  ASSERT_EQ(ftruncate(fd, 8 * kPage), 0);
  ASSERT_EQ(mark(*fs_, *f, 0, 4 * kPage), 0);  // holes only when marked
  ASSERT_EQ(mark(*fs_, *f, 4 * kPage, 4 * kPage), 0);
  EXPECT_EQ(fs_->stats().volatile_resident_pages, 0u);
  store(fd, 1 * kPage, "late");  // a store behind the daemon's back
  EXPECT_EQ(purge_all(*fs_), kPage);
  EXPECT_EQ(load(fd, kPage, 4), std::string(4, '\0'));
  EXPECT_EQ(unmark(*fs_, *f, 0, 4 * kPage), 1);
  EXPECT_EQ(unmark(*fs_, *f, 4 * kPage, 4 * kPage), 0);  // nothing was there to lose
  (void)release(*f);
}

TEST_F(PassthroughTest, NonVolatileDataSurvivesAPurge) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  store(fd, 0, std::string(8 * kPage, 'k'));
  ASSERT_EQ(mark(*fs_, *f, 0, 8 * kPage), 0);
  EXPECT_EQ(unmark(*fs_, *f, 2 * kPage, 2 * kPage), 0);
  EXPECT_EQ(purge_all(*fs_), 6 * kPage);
  EXPECT_EQ(load(fd, 2 * kPage, 2 * kPage), std::string(2 * kPage, 'k'));
  (void)release(*f);
}

TEST_F(PassthroughTest, StrictNeedsTheCachedMode) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  store(fd, 0, std::string(2 * kPage, 's'));
  EXPECT_EQ(mark(*fs_, *f, 0, kPage, test::kStrict), EOPNOTSUPP);
  // Every open of it is in passthrough, and the last release hands the
  // backing id back.
  auto g = open(ino);
  EXPECT_TRUE(g->passthrough);
  EXPECT_EQ(release(*g), std::nullopt);
  EXPECT_EQ(release(*f), std::optional<int>(7));
  // The mode was fixed by the first open: a later preference changes nothing.
  ASSERT_TRUE(fs_->setxattr(ino, "user.volfs.iomode", "cached", 0).ok());
  EXPECT_EQ(fs_->setxattr(ino, "user.volfs.iomode", "fast", 0).err(), EINVAL);
  auto h = open(ino);
  EXPECT_TRUE(h->passthrough);
  (void)release(*h);
  // A file that prefers the cached mode before its first open gets it.
  Result<Entry> n = fs_->mknod(kRootIno, "n", S_IFREG | 0644, 0, Caller{});
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(fs_->setxattr(n->ino, "user.volfs.iomode", "cached", 0).ok());
  auto c = open(n->ino);
  EXPECT_FALSE(c->passthrough);
  EXPECT_EQ(release(*c), std::nullopt);
}

TEST_F(PassthroughTest, StoresAfterTheLastReleaseAreStillFound) {
  // A passthrough mapping outlives its open file: the kernel maps the store
  // and releases the FUSE file at close(2).
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  ASSERT_EQ(release(*f), std::optional<int>(7));
  store(fd, 0, std::string(3 * kPage, 'm'));
  EXPECT_EQ(fs_->stats().resident_pages, 3u);
  EXPECT_EQ(static_cast<uint64_t>(fs_->getattr(ino)->st_size), 3 * kPage);
}

TEST_F(PassthroughTest, ADeletedFileStaysUntilTheKernelForgetsIt) {
  // A passthrough mapping holds the store's file and outlives the open file,
  // unseen by the daemon: a file deleted after its close may still be
  // mapped. It keeps its store, accounting and volatile ranges until the
  // kernel forgets the inode, which it does only once no mapping is left.
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  store(fd, 0, std::string(8 * kPage, 'm'));
  ASSERT_EQ(mark(*fs_, *f, 0, 4 * kPage), 0);
  void* m = kernel_map(fd, 8, PROT_READ | PROT_WRITE);
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(release(*f), std::optional<int>(7));
  ASSERT_TRUE(fs_->unlink(kRootIno, "f").ok());
  EXPECT_NE(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(fs_->stats().files, 1u);
  EXPECT_EQ(fs_->stats().resident_pages, 8u);
  EXPECT_EQ(purge_all(*fs_), 4 * kPage) << "its volatile pages can still be purged";
  EXPECT_EQ(std::string(static_cast<const char*>(m) + 4 * kPage, 4 * kPage),
            std::string(4 * kPage, 'm'));
  fs_->forget(ino, 1);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "forgotten: the daemon's reference is gone";
  EXPECT_EQ(fs_->stats().files, 0u);
  ASSERT_EQ(munmap(m, 8 * kPage), 0);
  EXPECT_EQ(fs_->statfs().f_bfree, 1024u);
}

TEST_F(PassthroughTest, ADeletedFileNobodyMapsIsFreedAtItsUnlink) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  store(fd, 0, std::string(8 * kPage, 'u'));
  ASSERT_EQ(release(*f), std::optional<int>(7));
  ASSERT_TRUE(fs_->unlink(kRootIno, "f").ok());
  EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "freed before the unlink answers, not at the FORGET";
  EXPECT_EQ(fs_->statfs().f_bfree, 1024u);
  EXPECT_EQ(fs_->stats().files, 0u);
  EXPECT_EQ(fs_->open(ino, O_RDWR).err(), ENOENT);
  fs_->forget(ino, 1);
}

// Review finding: a write through the daemon that found the mount full
// took any release under way for the room it needed, and did not purge:
// ENOSPC with volatile pages left. Here a deleted file that the kernel still
// maps is opened and released all the time, and each release looks for the
// mapping for a while.
TEST_F(PassthroughTest, AFullMountPurgesWhileFilesAreReleased) {
  uint64_t held = create("held");
  int held_fd = -1;
  auto h = open(held, &held_fd);
  store(held_fd, 0, std::string(8 * kPage, 'h'));
  void* m = kernel_map(held_fd, 8, PROT_READ);
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(release(*h), std::optional<int>(7));
  ASSERT_TRUE(fs_->unlink(kRootIno, "held").ok());

  uint64_t v = create("v");
  int v_fd = -1;
  auto vf = open(v, &v_fd);
  store(v_fd, 0, std::string(900 * kPage, 'v'));
  ASSERT_EQ(mark(*fs_, *vf, 0, 900 * kPage), 0);

  std::atomic<bool> stop{false};
  auto churn = [&] {
    while (!stop.load()) {
      auto g = fs_->open(held, O_RDONLY);
      if (g.ok()) release(**g);
    }
  };
  std::thread churn1(churn), churn2(churn);
  uint64_t w = create("w");
  ASSERT_TRUE(fs_->setxattr(w, "user.volfs.iomode", "cached", 0).ok());
  auto wf = open(w);  // cached: its writes come through the daemon
  const std::string chunk(50 * kPage, 'w');
  int failed = 0;
  for (uint64_t k = 0; k < 10; ++k) {
    failed += !fs_->write(*wf, chunk.data(), chunk.size(), k * chunk.size()).ok();
  }
  stop = true;
  churn1.join();
  churn2.join();
  EXPECT_EQ(failed, 0);
  release(*wf);
  release(*vf);
  munmap(m, 8 * kPage);
}

TEST_F(PassthroughTest, DirectoriesPassTheirIoModeOn) {
  Result<Entry> dir = fs_->mkdir(kRootIno, "d", 0755, Caller{});
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(fs_->setxattr(dir->ino, "user.volfs.iomode", "cached", 0).ok());
  Result<Entry> e = fs_->create(dir->ino, "f", 0644, Caller{});
  ASSERT_TRUE(e.ok());
  auto f = open(e->ino);
  EXPECT_FALSE(f->passthrough);
  EXPECT_EQ(*fs_->getxattr(e->ino, "user.volfs.iomode"), "cached");
  auto f2 = open(e->ino);
  EXPECT_EQ(mark(*fs_, *f2, 0, 0, test::kStrict), 0);
  (void)release(*f);
  (void)release(*f2);
}

TEST_F(PassthroughTest, AFailedRegistrationFallsBackToCached) {
  uint64_t ino = create("f");
  auto f = fs_->open(ino, O_RDWR);
  ASSERT_TRUE(f.ok() && (*f)->passthrough);
  Result<int> id = fs_->backing_id(**f, [](int) { return 0; });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 0);
  EXPECT_FALSE((*f)->passthrough);
  auto g = open(ino);  // the file stays cached
  EXPECT_FALSE(g->passthrough);
  EXPECT_FALSE(fs_->passthrough());  // and so do files made from now on
  (void)release(**f);
  (void)release(*g);
}

TEST_F(PassthroughTest, TheSizeLimitIsTheKernels) {
  uint64_t ino = create("f");
  int fd = -1;
  auto f = open(ino, &fd);
  std::string big(2048 * kPage, 'b');  // twice the mount's size
  ssize_t n = pwrite(fd, big.data(), big.size(), 0);
  EXPECT_TRUE(n < 0 ? errno == ENOSPC : static_cast<size_t>(n) < big.size());
  struct statvfs s = fs_->statfs();
  EXPECT_LE(s.f_bfree, 1u);
  (void)release(*f);
}

}  // namespace
}  // namespace volfs::core
