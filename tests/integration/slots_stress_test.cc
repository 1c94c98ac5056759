// slots_stress_test.cc: bounded-time stress of slots with real processes,
// hunting for the broken promises that matter: a pin that answers INTACT
// although the slot's data was purged (or changed), a pin that answers
// PURGED over data that is not all zeros, and a purge that touches a page
// outside the slots.
//
// One file holds kSlots one-page slots (words in page 0) and kPlainPages of
// plain data that nobody marks. Workers (separate processes, each with two
// open files of its own, so two pin bits, and a mapping of each) loop: take
// a slot's test lock (shared memory; it only orders the workers' writes, the
// daemon knows nothing of it), pin; on INTACT the page must be exactly the
// pattern last written (slot index and a version, in the page itself); on
// PURGED it must be zeros and gets a new version; sometimes the second bit
// pins too and the first unpins, and the data must stay; unpin. A purger
// process calls VOLFS_IOC_PURGE(ALL) in a loop. In the second test one
// worker also holds pins on a few slots and is SIGKILLed mid-run: its bits
// must be cleared and those slots purged afterwards.
//
// Duration: VOLFS_STRESS_SECONDS in total (default 6), half per test.
// Seed: VOLFS_STRESS_SEED (default: from the clock); printed by every test.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "slot_util.h"
#include "volatile_util.h"

namespace volfs::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const uint64_t kPage = page_size();
constexpr uint32_t kSlots = 64;
constexpr uint64_t kPlainPages = 32;
constexpr uint64_t kFilePages = 1 + kSlots + kPlainPages;
constexpr int kWorkers = 4;
constexpr uint32_t kVictimHolds = 4;  // slots the killed worker pins when it dies
constexpr uint32_t kSlotTag = 0x510;
constexpr uint32_t kPlainTag = 0x9a1;
constexpr size_t kMsgLen = 2048;

uint64_t slot_page(uint32_t k) { return 1 + k; }
uint64_t word_off(uint32_t k) { return uint64_t{k} * sizeof(volfs_slot_word); }
uint64_t plain_page(uint64_t i) { return 1 + kSlots + i; }

// What the processes share: lock-free atomics in an anonymous MAP_SHARED
// mapping inherited across fork().
struct Shared {
  std::atomic<int> stop{0};
  // The pid holding slot k's test lock, 0 if none.
  std::atomic<int32_t> owner[kSlots];
  // The version last written to slot k (under its lock).
  std::atomic<uint64_t> version[kSlots];
  // A holder died while writing slot k: its next INTACT pin may hold anything.
  std::atomic<int> unknown[kSlots];
  // Pinned by the killed worker when it died, not yet seen PURGED since.
  std::atomic<int> victim_held[kSlots];
  std::atomic<int> victim_ready{0};
  std::atomic<uint32_t> victim_holder{0};
  std::atomic<uint32_t> victim_slots[kVictimHolds];
  std::atomic<uint64_t> pins{0}, intact{0}, purged_pins{0}, double_pins{0};
  std::atomic<uint64_t> false_intact{0}, nonzero_purged{0}, lost_while_pinned{0};
  std::atomic<uint64_t> pin_errors{0}, failures{0};
  std::atomic<uint64_t> purge_calls{0}, purged_bytes{0};
  std::atomic<uint64_t> victim_slots_purged_after{0};
  std::atomic<int> msg_taken{0};
  char msg[kMsgLen];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<int32_t>::is_always_lock_free);

void report(Shared& sh, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void report(Shared& sh, const char* fmt, ...) {
  char buf[kMsgLen - 32];  // room for the pid prefix in sh.msg
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (sh.failures.fetch_add(1) < 20) std::fprintf(stderr, "[pid %d] %s\n", getpid(), buf);
  int expected = 0;
  if (sh.msg_taken.compare_exchange_strong(expected, 1)) {
    std::snprintf(sh.msg, sizeof sh.msg, "[pid %d] %s", getpid(), buf);
  }
}

using Rng = std::mt19937_64;
bool chance(Rng& r, int percent) { return static_cast<int>(r() % 100) < percent; }
void jitter(Rng& r, unsigned max_us) {
  if (chance(r, 40)) {
    sched_yield();
    return;
  }
  timespec ts{0, static_cast<long>((r() % (max_us + 1)) * 1000)};
  nanosleep(&ts, nullptr);
}

uint64_t stress_seed() {
  if (const char* s = std::getenv("VOLFS_STRESS_SEED")) return std::strtoull(s, nullptr, 0);
  return static_cast<uint64_t>(Clock::now().time_since_epoch().count());
}

int pin(volfs_slot* s) {
  int r = volfs_slot_pin(s);
  return r < 0 ? -errno : r;
}

// A worker: see the file comment. `hold`: pin kVictimHolds slots first and
// keep them pinned (the worker to be killed). Returns its exit status.
int worker(Shared& sh, const std::string& path, uint64_t seed, bool hold) {
  Rng rng(seed);
  const int32_t me = getpid();
  MappedFile a, b;
  CHILD_CHECK(a.open(path, kFilePages * kPage));
  CHILD_CHECK(b.open(path, kFilePages * kPage));
  uint32_t ha = 0, hb = 0;
  CHILD_CHECK(slot_holder(a.fd(), &ha) == 0);
  CHILD_CHECK(slot_holder(b.fd(), &hb) == 0);
  CHILD_CHECK(ha != hb);
  std::vector<volfs_slot> sa(kSlots), sb(kSlots);
  for (uint32_t k = 0; k < kSlots; ++k) {
    volfs_slot_init(&sa[k], a.word(word_off(k)), ha, 0);
    volfs_slot_init(&sb[k], b.word(word_off(k)), hb, 0);
  }
  const std::string zeros(kPage, '\0');

  // Checks slot k as pin answer r says, refills it if purged (or if its
  // content is unknown), and sometimes writes a new version.
  auto check_and_refill = [&](uint32_t k, int r) {
    char* data = a.data() + slot_page(k) * kPage;
    const uint64_t v = sh.version[k].load();
    bool rewrite = false;
    if (r == VOLFS_INTACT) {
      sh.intact.fetch_add(1);
      if (sh.unknown[k].load()) {
        rewrite = true;
      } else {
        std::string want = page_bytes(kSlotTag, k, v);
        std::string d = describe_page_mismatch(data, want.data());
        if (d.empty() && chance(rng, 10)) {  // and through read(2), once in a while
          std::optional<std::string> got = pread_some(a.fd(), kPage, slot_page(k) * kPage);
          if (!got || got->size() != kPage) {
            report(sh, "pread of slot %u: %s", k, got ? "short" : strerror(errno));
          } else {
            d = describe_page_mismatch(got->data(), want.data());
            if (!d.empty()) d = "read(2): " + d;
          }
        }
        if (!d.empty()) {
          sh.false_intact.fetch_add(1);
          report(sh, "FALSE INTACT: slot %u (version %lu): %s; word now %s", k, (unsigned long)v,
                 d.c_str(), describe_word(a.load(word_off(k))).c_str());
          rewrite = true;
        }
      }
      rewrite = rewrite || chance(rng, 20);
    } else {
      sh.purged_pins.fetch_add(1);
      if (std::memcmp(data, zeros.data(), kPage) != 0) {
        sh.nonzero_purged.fetch_add(1);
        report(sh, "PURGED pin of slot %u but its data is not zeros: %s", k,
               describe_page_mismatch(data, zeros.data()).c_str());
      }
      if (sh.victim_held[k].exchange(0)) sh.victim_slots_purged_after.fetch_add(1);
      rewrite = true;
    }
    if (rewrite) {
      fill_page(data, kSlotTag, k, v + 1);
      sh.version[k].store(v + 1);
      sh.unknown[k].store(0);
    }
  };

  auto try_lock = [&](uint32_t k) {
    int32_t free_ = 0;
    return sh.owner[k].compare_exchange_strong(free_, me);
  };

  if (hold) {
    for (uint32_t n = 0; n < kVictimHolds;) {
      uint32_t k = static_cast<uint32_t>(rng() % kSlots);
      if (!try_lock(k)) continue;
      int r = pin(&sa[k]);
      if (r < 0) {
        report(sh, "holding pin of slot %u: %s", k, strerror(-r));
        return 1;
      }
      sh.pins.fetch_add(1);
      check_and_refill(k, r);
      sh.victim_slots[n++].store(k);  // locked and pinned until this process dies
    }
    sh.victim_holder.store(ha);
    sh.victim_ready.store(1);
  }

  while (!sh.stop.load(std::memory_order_relaxed)) {
    const uint32_t k = static_cast<uint32_t>(rng() % kSlots);
    if (!try_lock(k)) {
      sched_yield();
      continue;
    }
    int r = pin(&sa[k]);
    if (r < 0) {
      sh.pin_errors.fetch_add(1);
      report(sh, "pin of slot %u: %s (word %s)", k, strerror(-r),
             describe_word(a.load(word_off(k))).c_str());
      sh.owner[k].store(0);
      continue;
    }
    sh.pins.fetch_add(1);
    check_and_refill(k, r);
    if (chance(rng, 20)) {
      // The second bit pins, the first lets go: the slot stays pinned, so
      // whatever the purger does, the data must stay.
      sh.double_pins.fetch_add(1);
      int r2 = pin(&sb[k]);
      if (r2 != VOLFS_INTACT) {
        report(sh, "second holder's pin of slot %u (pinned by the first): %s", k,
               r2 < 0 ? strerror(-r2) : "PURGED");
      }
      volfs_slot_unpin(&sa[k]);
      jitter(rng, 200);
      std::string want = page_bytes(kSlotTag, k, sh.version[k].load());
      std::string d = describe_page_mismatch(a.data() + slot_page(k) * kPage, want.data());
      if (!d.empty()) {
        sh.lost_while_pinned.fetch_add(1);
        report(sh, "slot %u changed while pinned by the second holder: %s", k, d.c_str());
      }
      volfs_slot_unpin(&sb[k]);
    } else {
      jitter(rng, 50);
      volfs_slot_unpin(&sa[k]);
    }
    sh.owner[k].store(0);
    if (chance(rng, 30)) jitter(rng, 100);
  }
  return 0;
}

int purger(Shared& sh, const std::string& mountpoint, uint64_t seed) {
  Rng rng(seed);
  UniqueFd root(open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  CHILD_CHECK(root.ok());
  while (!sh.stop.load(std::memory_order_relaxed)) {
    uint64_t purged = 0;
    int e = vol_purge(root.get(), VOLFS_PURGE_ALL, &purged);
    if (e != 0) {
      report(sh, "PURGE: %s", strerror(-e));
      return 1;
    }
    sh.purge_calls.fetch_add(1);
    sh.purged_bytes.fetch_add(purged);
    jitter(rng, 300);
  }
  return 0;
}

class SlotStressTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (HasFatalFailure()) return;
    if (!passthrough()) {
      GTEST_SKIP() << "slots need passthrough io mode; this is the .cached run";
    }
    seed_ = stress_seed();
    std::printf("[ INFO     ] VOLFS_STRESS_SEED=%lu\n", (unsigned long)seed_);
    path_ = mount_.path("slots");
    std::string data(kPage, '\0');
    for (uint32_t k = 0; k < kSlots; ++k) data += page_bytes(kSlotTag, k, 0);
    for (uint64_t i = 0; i < kPlainPages; ++i) data += page_bytes(kPlainTag, plain_page(i), 1);
    ASSERT_TRUE(write_file(path_, data)) << strerror(errno);
    ASSERT_TRUE(f_.open(path_, kFilePages * kPage)) << strerror(errno);
    SlotRegister r{};
    ASSERT_EQ(slot_register(f_.fd(), kPage, kPage, 0, kSlots, 0, &r), 0) << strerror(errno);
    ASSERT_EQ(r.result, VOLFS_SLOT_CREATED);
    holder_ = r.holder;
    ASSERT_TRUE(sh_.ok());
    for (uint32_t k = 0; k < kSlots; ++k) {
      volfs_slot s;
      volfs_slot_init(&s, f_.word(word_off(k)), holder_, 1);
      ASSERT_EQ(volfs_slot_unpin(&s), 0);
    }
  }
  void TearDown() override {
    f_.reset();
    MountTest::TearDown();
  }

  // Runs the workers (worker 0 killed after a third of `seconds` if
  // `kill_one`) and, with `purger`, a process purging in a loop, for
  // `seconds`; then checks everything.
  void run(double seconds, bool kill_one, bool purger = true);

  uint64_t seed_ = 0;
  std::string path_;
  MappedFile f_;
  uint32_t holder_ = 0;
  SharedBlock<Shared> sh_;
};

void SlotStressTest::run(double seconds, bool kill_one, bool with_purger) {
  Shared& sh = *sh_;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(seconds));
  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.push_back(std::make_unique<ChildProcess>());
    const bool hold = kill_one && i == 0;
    workers.back()->start([&, i, hold] { return worker(sh, path_, seed_ + 1 + i, hold); });
  }
  ChildProcess purge;
  if (with_purger) purge.start([&] { return purger(sh, mount_.mountpoint(), seed_ + 100); });

  if (kill_one) {
    ChildProcess& victim = *workers[0];
    const auto at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(seconds / 3));
    EXPECT_TRUE(poll_until([&] { return sh.victim_ready.load() != 0; }, milliseconds(10000)))
        << "the worker to be killed did not pin its slots";
    std::this_thread::sleep_until(at);
    const uint64_t bit = holder_bit(sh.victim_holder.load());
    std::vector<uint32_t> held;
    for (auto& s : sh.victim_slots) held.push_back(s.load());
    for (uint32_t k : held) {
      uint64_t w = f_.load(word_off(k));
      EXPECT_TRUE(word_state(w) == VOLFS_SLOT_LIVE && (w & bit))
          << "slot " << k << ", pinned by the worker to be killed, is " << describe_word(w);
    }
    const pid_t pid = victim.pid();
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_TRUE(killed_by(victim.wait(), SIGKILL));
    std::chrono::microseconds waited;
    bool cleared = poll_for(
        [&] {
          for (uint32_t k = 0; k < kSlots; ++k) {
            if (f_.load(word_off(k)) & bit) return false;
          }
          return true;
        },
        milliseconds(10000), &waited);
    std::printf("[ INFO     ] the killed worker's bit was %s in every word %.1f ms after it died\n",
                cleared ? "cleared" : "STILL SET", waited.count() / 1000.0);
    EXPECT_TRUE(cleared) << "the killed worker's pin bit is still set 10 s after its death";
    // Release its test locks: the slots it held pinned are known (it wrote
    // them before it said ready); one it was working on may be torn.
    for (uint32_t k = 0; k < kSlots; ++k) {
      if (sh.owner[k].load() != pid) continue;
      if (std::find(held.begin(), held.end(), k) != held.end()) {
        sh.victim_held[k].store(1);
      } else {
        sh.unknown[k].store(1);
      }
      sh.owner[k].store(0);
    }
  }

  std::this_thread::sleep_until(deadline);
  sh.stop.store(1);
  for (size_t i = 0; i < workers.size(); ++i) {
    if (!workers[i]->running()) continue;
    int st;
    std::string hang = wait_or_diagnose(*workers[i], mount_.pid(), milliseconds(30000), &st);
    EXPECT_TRUE(hang.empty()) << hang;
    EXPECT_TRUE(exited_with(st, 0)) << "worker " << i;
  }
  if (with_purger) {
    int st;
    std::string hang = wait_or_diagnose(purge, mount_.pid(), milliseconds(30000), &st);
    EXPECT_TRUE(hang.empty()) << hang;
    EXPECT_TRUE(exited_with(st, 0)) << "purger";
  }

  // Nobody pins now: one more purge takes every slot, and every pin after it
  // answers PURGED over zeros. A slot the killed worker held that no worker
  // saw purged since is counted here.
  std::chrono::microseconds waited;
  bool unpinned = poll_for(
      [&] {
        for (uint32_t k = 0; k < kSlots; ++k) {
          if (pin_bits(f_.load(word_off(k)))) return false;
        }
        return true;
      },
      milliseconds(10000), &waited);
  EXPECT_TRUE(unpinned) << "pin bits left 10 s after every worker ended";
  const uint64_t by_workers = sh.victim_slots_purged_after.load();
  EXPECT_GE(purge_via_root(mount_.mountpoint(), VOLFS_PURGE_ALL), 0);
  uint64_t final_intact = 0;
  for (uint32_t k = 0; k < kSlots; ++k) {
    uint64_t w = f_.load(word_off(k));
    EXPECT_EQ(word_state(w), VOLFS_SLOT_PURGED)
        << "slot " << k << " after the final purge: " << describe_word(w);
    volfs_slot s;
    volfs_slot_init(&s, f_.word(word_off(k)), holder_, 0);
    int r = pin(&s);
    if (r == VOLFS_INTACT) ++final_intact;
    EXPECT_EQ(r, static_cast<int>(VOLFS_PURGED))
        << "slot " << k << ": the pin after the final purge";
    if (r == VOLFS_PURGED && sh.victim_held[k].exchange(0))
      sh.victim_slots_purged_after.fetch_add(1);
    EXPECT_TRUE(is_all_zero(f_.data() + slot_page(k) * kPage, kPage)) << "slot " << k;
    if (r >= 0) volfs_slot_unpin(&s);
  }
  // The plain pages: never marked, never lost.
  uint64_t plain_lost = 0;
  std::optional<std::string> plain =
      pread_some(f_.fd(), kPlainPages * kPage, plain_page(0) * kPage);
  ASSERT_TRUE(plain && plain->size() == kPlainPages * kPage) << strerror(errno);
  for (uint64_t i = 0; i < kPlainPages; ++i) {
    std::string want = page_bytes(kPlainTag, plain_page(i), 1);
    std::string d = describe_page_mismatch(plain->data() + i * kPage, want.data());
    std::string dm = describe_page_mismatch(f_.data() + plain_page(i) * kPage, want.data());
    if (!d.empty() || !dm.empty()) {
      ++plain_lost;
      ADD_FAILURE() << "plain page " << plain_page(i) << ": read(2) " << (d.empty() ? "ok" : d)
                    << "; mapping " << (dm.empty() ? "ok" : dm);
    }
  }

  std::printf(
      "[ INFO     ] %.1f s: %lu pins (%lu INTACT, %lu PURGED, %lu with a second holder), "
      "%lu purges (%lu bytes); false INTACT %lu, non-zero PURGED %lu, lost while pinned %lu, "
      "pin errors %lu, plain pages lost %lu\n",
      seconds, (unsigned long)sh.pins.load(), (unsigned long)sh.intact.load(),
      (unsigned long)sh.purged_pins.load(), (unsigned long)sh.double_pins.load(),
      (unsigned long)sh.purge_calls.load(), (unsigned long)sh.purged_bytes.load(),
      (unsigned long)sh.false_intact.load(), (unsigned long)sh.nonzero_purged.load(),
      (unsigned long)sh.lost_while_pinned.load(), (unsigned long)sh.pin_errors.load(),
      (unsigned long)plain_lost);
  if (kill_one) {
    std::printf(
        "[ INFO     ] the killed worker's %u held slots: %lu seen PURGED by the others "
        "after its death, %lu more by the final purge\n",
        kVictimHolds, (unsigned long)by_workers,
        (unsigned long)(sh.victim_slots_purged_after.load() - by_workers));
    EXPECT_GT(by_workers, 0u) << "no other worker got a purge of a slot the killed one held";
    EXPECT_EQ(sh.victim_slots_purged_after.load(), kVictimHolds)
        << "slots the killed worker held were never purged after its death";
  }
  EXPECT_EQ(sh.false_intact.load(), 0u) << sh.msg;
  EXPECT_EQ(sh.nonzero_purged.load(), 0u) << sh.msg;
  EXPECT_EQ(sh.lost_while_pinned.load(), 0u) << sh.msg;
  EXPECT_EQ(sh.pin_errors.load(), 0u) << sh.msg;
  EXPECT_EQ(sh.failures.load(), 0u) << "first failure: " << sh.msg;
  EXPECT_EQ(final_intact, 0u);
  EXPECT_EQ(plain_lost, 0u);
  EXPECT_GT(sh.purged_pins.load(), 0u) << "no pin ever found its slot purged: the stress "
                                          "did not race pins with purges";
  EXPECT_GT(sh.intact.load(), 0u);
}

double test_seconds() { return env_seconds("VOLFS_STRESS_SECONDS", 6) / 2; }

TEST_F(SlotStressTest, PinsRaceThePurgerAndNeverSeeFalseIntact) { run(test_seconds(), false); }

TEST_F(SlotStressTest, AWorkerKilledWhilePinningLeavesItsSlotsToThePurger) {
  run(test_seconds(), true);
}

// No purge ioctl: a pressure source purges. The file's non-volatile pages
// alone stand above the high watermark of this small mount, so every round
// (each 100 ms) of the watermark source purges every slot unpinned then,
// found by the daemon's own look at the words.
class SlotWatermarkStressTest : public SlotStressTest {
 protected:
  std::string mount_options() const override { return "size=1m,purge_high=20,purge_low=10"; }
};

TEST_F(SlotWatermarkStressTest, PinsRaceTheWatermarkSourceAndNeverSeeFalseIntact) {
  run(test_seconds(), false, /*purger=*/false);
}

}  // namespace
}  // namespace volfs::test
