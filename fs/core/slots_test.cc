// Unit tests of slots in the core, without FUSE: the test plays the kernel
// and the clients. It maps the store through the fd the core hands to its
// register callback (the pages a client's passthrough mapping would map) and
// pins and unpins with the client library's own volfs_slot_pin/unpin.
// Needs a private tmpfs (root).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core_test_util.h"
#include "filesystem.h"
#include "word_pages.h"

namespace volfs::core {
namespace {

const uint64_t kPage = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
constexpr uint64_t kWord = sizeof(volfs_slot_word);

uint64_t purge_all(Filesystem& fs) { return test::purge(fs, VOLFS_PURGE_ALL); }

class SlotsTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSlots = 8;
  static constexpr uint64_t kSlotPages = 2;
  // Page 0: the words; then kSlots slots of kSlotPages pages.
  static constexpr uint64_t kFilePages = 1 + kSlots * kSlotPages;

  void SetUp() override {
    MountOptions o;
    o.size_bytes = 1024 * kPage;
    o.nr_inodes = 100;
    Backing b = Backing::make(o.size_bytes, o.nr_inodes);
    if (!b.private_tmpfs()) GTEST_SKIP() << "no private tmpfs: " << b.fallback_reason();
    fs_ = std::make_unique<Filesystem>(o, kPage, std::move(b));
    fs_->start(nullptr);
    fs_->set_passthrough(true);
    Result<Entry> e = fs_->create(kRootIno, "seg", 0644, Caller{});
    ASSERT_TRUE(e.ok());
    ino_ = e->ino;
    file_ = open();
    SetAttr a;
    a.set_size = true;
    a.size = kFilePages * kPage;
    ASSERT_TRUE(fs_->setattr(ino_, a).ok());
    map_ = static_cast<char*>(
        mmap(nullptr, kFilePages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, store_fd_, 0));
    ASSERT_NE(map_, MAP_FAILED);
  }
  void TearDown() override {
    if (map_ && map_ != MAP_FAILED) munmap(map_, kFilePages * kPage);
  }

  std::unique_ptr<OpenFile> open() {
    auto f = fs_->open(ino_, O_RDWR);
    EXPECT_TRUE(f.ok() && (*f)->passthrough);
    Result<int> id = fs_->backing_id(**f, [&](int fd) {
      store_fd_ = fd;
      return 7;
    });
    EXPECT_TRUE(id.ok());
    return std::move(*f);
  }

  // Creates another file and opens it in passthrough; its store in *store.
  std::unique_ptr<OpenFile> create_other(const char* name, int* store) {
    Result<Entry> e = fs_->create(kRootIno, name, 0644, Caller{});
    EXPECT_TRUE(e.ok());
    if (!e.ok()) return nullptr;
    auto f = fs_->open(e->ino, O_RDWR);
    EXPECT_TRUE(f.ok());
    if (!f.ok()) return nullptr;
    EXPECT_TRUE(fs_->backing_id(**f,
                                [&](int fd) {
                                  *store = fd;
                                  return 8;
                                })
                    .ok());
    return std::move(*f);
  }

  // Registers all slots through f; returns its holder bit.
  uint32_t register_all(OpenFile& f, bool expect_created = true) {
    SlotRequest r{.data = ByteRange{kPage, kSlotPages * kPage},
                  .word_offset = 0,
                  .count = kSlots,
                  .prio = kDefaultPriority};
    Result<SlotRegistration> reg = fs_->register_slots(f, r);
    EXPECT_TRUE(reg.ok()) << reg.err();
    EXPECT_EQ(reg->created, expect_created);
    return reg->holder;
  }

  volfs_slot_word* word(uint64_t k) { return reinterpret_cast<volfs_slot_word*>(map_) + k; }
  char* data(uint64_t k) { return map_ + (1 + k * kSlotPages) * kPage; }
  uint32_t state(uint64_t k) {
    return VOLFS_SLOT_STATE(__atomic_load_n(&word(k)->word, __ATOMIC_ACQUIRE));
  }
  RangeStatus status() {
    RangeStatus st;
    fs_->range_status(*file_, ByteRange{0, 0}, [&](Result<RangeStatus> r) {
      ASSERT_TRUE(r.ok());
      st = *r;
    });
    return st;
  }

  std::unique_ptr<Filesystem> fs_;
  uint64_t ino_ = 0;
  int store_fd_ = -1;
  std::unique_ptr<OpenFile> file_;
  char* map_ = nullptr;
};

TEST_F(SlotsTest, RegisteredSlotsStartPinnedAndPurgeOnlyOnceUnpinned) {
  const uint32_t h = register_all(*file_);
  std::vector<volfs_slot> slots(kSlots);
  for (uint64_t k = 0; k < kSlots; ++k) {
    EXPECT_EQ(word(k)->word, VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | (uint64_t{1} << h));
    volfs_slot_init(&slots[k], word(k), h, 1);
    std::memset(data(k), 'a' + static_cast<int>(k), kSlotPages * kPage);
  }
  EXPECT_EQ(purge_all(*fs_), 0u) << "pinned slots are not purgeable";
  ASSERT_EQ(volfs_slot_unpin(&slots[3]), 0);
  RangeStatus st = status();
  EXPECT_EQ(st.slots, kSlots);
  EXPECT_EQ(st.pinned_slots, kSlots - 1);
  EXPECT_EQ(st.volatile_pages, kSlotPages);
  EXPECT_EQ(purge_all(*fs_), kSlotPages * kPage);
  EXPECT_EQ(state(3), VOLFS_SLOT_PURGED);
  EXPECT_EQ(status().purged_slots, 1u);
  for (uint64_t k = 0; k < kSlots; ++k) {
    if (k != 3) {
      EXPECT_EQ(data(k)[0], 'a' + static_cast<int>(k)) << "slot " << k;
    }
  }
  EXPECT_EQ(volfs_slot_pin(&slots[3]), static_cast<int>(VOLFS_PURGED));
  EXPECT_EQ(data(3)[0], 0);
  std::memset(data(3), 'z', kSlotPages * kPage);
  ASSERT_EQ(volfs_slot_unpin(&slots[3]), 0);
  EXPECT_EQ(volfs_slot_pin(&slots[3]), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(data(3)[kPage], 'z');
  st = status();
  EXPECT_EQ(st.volatile_pages, 0u);
  EXPECT_EQ(st.purged_slots, 0u);
}

TEST_F(SlotsTest, ASecondOpenAttachesWithItsOwnBit) {
  const uint32_t h1 = register_all(*file_);
  auto other = open();
  const uint32_t h2 = register_all(*other, /*expect_created=*/false);
  EXPECT_NE(h1, h2);
  EXPECT_EQ(word(0)->word, VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | (uint64_t{1} << h1));
  // A mix of new and existing slots is refused whole.
  SlotRequest mixed{.data = ByteRange{kPage, kSlotPages * kPage},
                    .word_offset = 0,
                    .count = kSlots + 1,
                    .prio = kDefaultPriority};
  EXPECT_EQ(fs_->register_slots(*other, mixed).err(), EINVAL) << "past the end of the file";
  mixed.count = kSlots - 1;
  mixed.data.length = kPage;
  EXPECT_EQ(fs_->register_slots(*other, mixed).err(), EBUSY) << "another geometry";
}

TEST_F(SlotsTest, BadRegistrationsAreRefusedAndChangeNothing) {
  auto reg = [&](uint64_t off, uint64_t len, uint64_t word, uint32_t count = 1,
                 uint8_t prio = kDefaultPriority) {
    return fs_->register_slots(*file_, SlotRequest{ByteRange{off, len}, word, count, prio}).err();
  };
  EXPECT_EQ(reg(kPage, 0, 0), EINVAL);
  EXPECT_EQ(reg(kPage + 1, kPage, 0), EINVAL);
  EXPECT_EQ(reg(kPage, kPage, 8), EINVAL) << "word not 16-aligned";
  EXPECT_EQ(reg(kPage, kPage * kFilePages, 0), EINVAL) << "past the end";
  EXPECT_EQ(reg(kPage, kPage, kFilePages * kPage), EINVAL) << "word past the end";
  EXPECT_EQ(reg(kPage, kPage, 0, 1, kMaxPriority + 1), EINVAL);
  EXPECT_EQ(reg(kPage, kPage, 0, VOLFS_SLOT_REGISTER_MAX + 1), EINVAL);
  EXPECT_EQ(reg(kPage, kPage, kPage + 16), EBUSY) << "word inside its own data";
  ASSERT_EQ(test::mark(*fs_, *file_, 4 * kPage, kPage).err(), 0);
  EXPECT_EQ(reg(4 * kPage, kPage, 0), EBUSY) << "volatile data";
  ASSERT_EQ(reg(kPage, kPage, 0), 0);
  EXPECT_EQ(reg(kPage, 2 * kPage, 16), EBUSY) << "overlaps a slot";
  EXPECT_EQ(reg(2 * kPage, kPage, kPage), EBUSY) << "word inside a slot";
  EXPECT_EQ(test::mark(*fs_, *file_, kPage, kPage).err(), EBUSY);
  EXPECT_EQ(test::mark(*fs_, *file_, 0, kPage).err(), EBUSY) << "a page of words";
  EXPECT_EQ(test::unmark(*fs_, *file_, 0, 0), -EBUSY);

  auto ro = fs_->open(ino_, O_RDONLY);
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(fs_->slot_holder(**ro).err(), EBADF);
}

TEST_F(SlotsTest, ReleasingAHolderDropsItsPins) {
  register_all(*file_);
  auto other = open();
  Result<uint32_t> h2 = fs_->slot_holder(*other);
  ASSERT_TRUE(h2.ok());
  // The registrant unpins slot 0; the other holder pins it.
  volfs_slot mine{}, theirs{};
  volfs_slot_init(&mine, word(0), 0, 1);
  volfs_slot_init(&theirs, word(0), *h2, 0);
  std::memset(data(0), 'q', kPage);
  ASSERT_EQ(volfs_slot_pin(&theirs), static_cast<int>(VOLFS_INTACT));
  ASSERT_EQ(volfs_slot_unpin(&mine), 0);
  EXPECT_EQ(purge_all(*fs_), 0u);
  // Its process dies: the kernel releases its open file.
  fs_->release(*other, {});
  EXPECT_EQ(word(0)->word, VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE)) << "no pin bits left";
  EXPECT_GT(purge_all(*fs_), 0u);
  EXPECT_EQ(state(0), VOLFS_SLOT_PURGED);
}

TEST_F(SlotsTest, ADeletedFilesSlotTableGoesWithItsData) {
  // The slot table maps the store's word page: if it stayed when the file
  // is dropped, it would keep all of the store's pages.
  register_all(*file_);
  for (uint64_t k = 0; k < kSlots; ++k) std::memset(data(k), 's', kSlotPages * kPage);
  ASSERT_EQ(munmap(map_, kFilePages * kPage), 0);  // the client's mapping goes first
  map_ = nullptr;
  fs_->release(*file_, {});
  EXPECT_LT(fs_->statfs().f_bfree, 1024u);
  ASSERT_TRUE(fs_->unlink(kRootIno, "seg").ok());
  EXPECT_EQ(fs_->statfs().f_bfree, 1024u);
  EXPECT_EQ(fs_->stats().files, 0u);
}

TEST_F(SlotsTest, TruncateAndPunchNeverLeaveAnIntactAnswerForLostData) {
  const uint32_t h = register_all(*file_);
  std::vector<volfs_slot> s(kSlots);
  for (uint64_t k = 0; k < kSlots; ++k) volfs_slot_init(&s[k], word(k), h, 1);
  for (uint64_t k = 0; k < kSlots; ++k) std::memset(data(k), 'x', kSlotPages * kPage);
  ASSERT_EQ(volfs_slot_unpin(&s[1]), 0);
  ASSERT_EQ(volfs_slot_unpin(&s[2]), 0);
  // Punch into unpinned slot 1 and pinned slot 0: 1 turns PURGED, 0 stays.
  ASSERT_TRUE(
      fs_->fallocate(*file_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kPage, 2 * kPage)
          .ok());
  EXPECT_EQ(state(1), VOLFS_SLOT_PURGED);
  EXPECT_EQ(state(0), VOLFS_SLOT_LIVE);
  EXPECT_EQ(volfs_slot_pin(&s[1]), static_cast<int>(VOLFS_PURGED));
  // Punching a word ends its slot (the zeroed word says NONE).
  ASSERT_TRUE(
      fs_->fallocate(*file_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kWord, kWord).ok());
  EXPECT_EQ(volfs_slot_pin(&s[2]), -1);
  EXPECT_EQ(errno, ESTALE);
  EXPECT_EQ(test::mark(*fs_, *file_, 5 * kPage, 2 * kPage).err(), 0) << "no slot there now";
  // Truncating into the last slot's data unregisters it.
  SetAttr a;
  a.set_size = true;
  a.size = (kFilePages - 1) * kPage;
  ASSERT_TRUE(fs_->setattr(ino_, a).ok());
  EXPECT_EQ(state(kSlots - 1), VOLFS_SLOT_NONE);
  EXPECT_EQ(status().slots, kSlots - 2);
}

TEST_F(SlotsTest, UnregisterAnswersAsUnmarkAndRefusesWhileOthersPin) {
  const uint32_t h = register_all(*file_);
  volfs_slot s{};
  volfs_slot_init(&s, word(0), h, 1);
  ASSERT_EQ(volfs_slot_unpin(&s), 0);
  std::memset(data(0), 'x', kPage);  // unpinned store: fine for the test, the purge takes it
  ASSERT_GT(purge_all(*fs_), 0u);
  auto other = open();
  Result<uint32_t> h2 = fs_->slot_holder(*other);
  ASSERT_TRUE(h2.ok());
  volfs_slot theirs{};
  volfs_slot_init(&theirs, word(1), *h2, 0);
  ASSERT_EQ(volfs_slot_pin(&theirs), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(fs_->unregister_slot(*file_, 1 * kWord).err(), EBUSY);
  Result<bool> purged = fs_->unregister_slot(*file_, 0);
  ASSERT_TRUE(purged.ok());
  EXPECT_TRUE(*purged);
  EXPECT_EQ(state(0), VOLFS_SLOT_NONE);
  EXPECT_EQ(fs_->unregister_slot(*file_, 0).err(), EINVAL);
}

// A client takes the page of words out of the store (MADV_REMOVE on its own
// mapping) and fills the private tmpfs: the daemon's next look at the words
// would fault the page in and fail (SIGBUS). It must see the slots end, as
// if their words were zeroed, and go on.
TEST_F(SlotsTest, WordsTakenAwayOnAFullTmpfsEndTheirSlotsWithoutACrash) {
  const uint32_t h = register_all(*file_);
  volfs_slot s{};
  volfs_slot_init(&s, word(0), h, 1);
  ASSERT_EQ(volfs_slot_unpin(&s), 0);
  ASSERT_EQ(madvise(map_, kPage, MADV_REMOVE), 0) << strerror(errno);
  // Fill the private tmpfs through another file's store, page by page.
  int filler_fd = -1;
  std::unique_ptr<OpenFile> filler = create_other("filler", &filler_fd);
  ASSERT_TRUE(filler && filler_fd >= 0);
  const std::string page(kPage, 'f');
  uint64_t pages = 0;
  while (pwrite(filler_fd, page.data(), kPage, static_cast<off_t>(pages * kPage)) ==
         static_cast<ssize_t>(kPage)) {
    ASSERT_LT(++pages, 4096u) << "the private tmpfs never filled";
  }
  const uint64_t before = WordPages::faults_absorbed();
  (void)fs_->stats();  // looks at the words
  EXPECT_GT(WordPages::faults_absorbed(), before) << "the daemon's look did not fault";
  RangeStatus st = status();
  EXPECT_EQ(st.slots, 0u) << "the slots whose words went are gone";
  EXPECT_EQ(st.volatile_pages, 0u);
  // (The client's own mapping of the page would fault too, on a full tmpfs:
  // its doing, and its process's SIGBUS.)
}

// Threads pin, check and refill slots while another purges everything in a
// loop and reads the accounting. Each slot belongs to one thread, which pins
// it through either holder at random: an INTACT pin must find exactly the
// bytes it last wrote, a PURGED one zeros (never the reverse).
TEST_F(SlotsTest, PinsRacingPurgesNeverSeeLostDataAsIntact) {
  const uint32_t h = register_all(*file_);
  auto other = open();
  Result<uint32_t> h2 = fs_->slot_holder(*other);
  ASSERT_TRUE(h2.ok());
  std::vector<volfs_slot> a(kSlots), b(kSlots);
  for (uint64_t k = 0; k < kSlots; ++k) {
    volfs_slot_init(&a[k], word(k), h, 1);
    volfs_slot_init(&b[k], word(k), *h2, 0);
    std::memset(data(k), 1, kSlotPages * kPage);
    ASSERT_EQ(volfs_slot_unpin(&a[k]), 0);
  }
  constexpr unsigned kThreads = 4;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> intact{0}, purged{0}, bad{0}, rounds{0};
  auto worker = [&](unsigned tid) {
    std::mt19937 rng(tid);
    std::vector<char> version(kSlots, 1);  // of the slots this thread owns
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t k = tid + kThreads * (rng() % (kSlots / kThreads));
      volfs_slot& s = (rng() & 1) ? a[k] : b[k];
      const int r = volfs_slot_pin(&s);
      const char want = r == static_cast<int>(VOLFS_INTACT) ? version[k] : 0;
      if (r < 0) {
        bad.fetch_add(1);
        continue;
      }
      for (uint64_t j = 0; j < kSlotPages * kPage; j += 256) {
        if (data(k)[j] != want) {
          bad.fetch_add(1);
          break;
        }
      }
      if (r == static_cast<int>(VOLFS_PURGED)) {
        purged.fetch_add(1);
        version[k] = static_cast<char>(1 + rng() % 100);
        std::memset(data(k), version[k], kSlotPages * kPage);
      } else {
        intact.fetch_add(1);
      }
      ASSERT_EQ(volfs_slot_unpin(&s), 0);
      rounds.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  std::thread purger([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      purge_all(*fs_);
      (void)fs_->stats();
    }
  });
  // Bounded by work, not time: enough pins and purges, or give up at a cap.
  for (int i = 0; i < 4000 && (rounds.load() < 20000 || purged.load() < 100); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  for (auto& t : threads) t.join();
  purger.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(purged.load(), 0u);
  EXPECT_GT(intact.load(), 0u);
  RecordProperty("pins", std::to_string(rounds.load()));
}

// Clients write the unpin times while the daemon sorts the newly unpinned
// slots by them. Each time is read once: a sort whose order changed under
// it ran off the end of its array and crashed the daemon (seen under load
// in SharedCacheTest.ManyProcessesWithPurgesNeverSeeBadData).
TEST_F(SlotsTest, UnpinTimesChangingDuringTheSortAreHarmless) {
  constexpr uint64_t kMany = 200;  // beyond std::sort's insertion-sort size
  int fd = -1;
  std::unique_ptr<OpenFile> f = create_other("many", &fd);
  ASSERT_TRUE(f && fd >= 0);
  SetAttr a;
  a.set_size = true;
  a.size = (1 + kMany) * kPage;
  ASSERT_TRUE(fs_->setattr(f->inode->ino, a).ok());
  SlotRequest r{
      .data = ByteRange{kPage, kPage}, .word_offset = 0, .count = kMany, .prio = kDefaultPriority};
  Result<SlotRegistration> reg = fs_->register_slots(*f, r);
  ASSERT_TRUE(reg.ok()) << reg.err();
  auto* words = static_cast<volfs_slot_word*>(
      mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(words, MAP_FAILED);
  std::vector<volfs_slot> slots(kMany);
  for (uint64_t k = 0; k < kMany; ++k) volfs_slot_init(&slots[k], &words[k], reg->holder, 1);
  std::atomic<bool> stop{false};
  std::thread client([&] {
    std::mt19937_64 rng(1);
    while (!stop.load(std::memory_order_relaxed)) {
      for (volfs_slot& s : slots) (void)volfs_slot_unpin(&s);
      for (int n = 0; n < 20; ++n) {
        for (uint64_t k = 0; k < kMany; ++k) {
          __atomic_store_n(&words[k].unpinned_ns, rng(), __ATOMIC_RELAXED);
        }
      }
      for (volfs_slot& s : slots) (void)volfs_slot_pin(&s);
    }
  });
  for (int round = 0; round < 3000; ++round) (void)fs_->stats();  // each sorts what it finds
  stop.store(true);
  client.join();
  for (uint64_t k = 0; k < kMany; ++k) ASSERT_EQ(volfs_slot_unpin(&slots[k]), 0);
  EXPECT_EQ(fs_->stats().volatile_pages, kMany);
  munmap(words, kPage);
  fs_->release(*f, {});
}

}  // namespace
}  // namespace volfs::core
