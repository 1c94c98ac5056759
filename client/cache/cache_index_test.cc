// cache_index_test.cc: the shared index on its own (on /dev/shm or TMPDIR,
// no volfs needed): checksum vectors, creation and header checks, two
// mappings, a model-based random test, recovery from crashes at every commit
// point, and a robust lock taken over from a killed process.
#include "cache_index.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "checksum.h"
#include "fault_point.h"

namespace volfs::cache_detail {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string base = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string tmpl = base + "/volfs-cache-index-test.XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Publishes key -> (value_id, size) into idx, as SharedCache::put does.
uint32_t publish(CacheIndex& idx, const std::string& key, uint64_t value_id, uint64_t size) {
  uint32_t e = idx.allocate_entry();
  if (e == kNil) return kNil;
  Entry& en = idx.entry(e);
  std::memcpy(en.key, key.data(), key.size());
  en.key_size = static_cast<uint32_t>(key.size());
  en.key_hash = checksum64(key.data(), key.size());
  en.value_id = value_id;
  en.size = size;
  en.checksum = 0;
  idx.publish_entry(e);
  return e;
}

uint32_t find(CacheIndex& idx, const std::string& key) {
  return idx.find(key, checksum64(key.data(), key.size()));
}

TEST(Checksum, MatchesXxh64ReferenceVectors) {
  // From the reference implementation (libxxhash 0.8.1, XXH64).
  struct Vector {
    const char* input;
    uint64_t seed;
    uint64_t want;
  };
  const Vector vectors[] = {
      {"", 0, 0xef46db3751d8e999ULL},
      {"a", 0, 0xd24ec4f1a98c6e5bULL},
      {"abc", 0, 0x44bc2cf5ad770999ULL},
      {"Nobody inspects the spammish repetition", 0, 0xfbcea83c8a378bf1ULL},
      {"0123456789abcdef0123456789abcdef0123456789", 0, 0xa76190c3acf08a1cULL},
      {"", 12345, 10761433736200290445ULL},
      {"abc", 12345, 103598618232108297ULL},
      {"0123456789abcdef0123456789abcdef0123456789", 12345, 10149823167589010125ULL},
  };
  for (const Vector& v : vectors) {
    EXPECT_EQ(checksum64(v.input, std::strlen(v.input), v.seed), v.want) << '"' << v.input << '"';
  }
}

TEST(Checksum, DetectsEveryBitFlipAndZeroedPages) {
  std::string data(3 * 4096 + 17, '\0');
  std::mt19937_64 rng(1);
  for (char& c : data) c = static_cast<char>(rng());
  uint64_t sum = checksum64(data.data(), data.size(), 7);
  for (size_t bit = 0; bit < data.size() * 8; bit += 97) {
    data[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_NE(checksum64(data.data(), data.size(), 7), sum) << "bit " << bit;
    data[bit / 8] ^= static_cast<char>(1 << (bit % 8));
  }
  std::string zeroed = data;
  std::memset(zeroed.data() + 4096, 0, 4096);
  EXPECT_NE(checksum64(zeroed.data(), zeroed.size(), 7), sum);
  EXPECT_NE(checksum64(data.data(), data.size(), 8), sum) << "the seed (key hash) counts";
}

TEST(CacheIndex, CreatesOnceAndTwoMappingsShareIt) {
  TempDir dir;
  fs::path p = dir.path() / "c.index";
  auto a = CacheIndex::open(p, {64, 16}, true, 0600);
  auto b = CacheIndex::open(p, {999, 999}, true, 0600);  // existing geometry wins
  EXPECT_NE(a->mapping_base(), b->mapping_base());
  EXPECT_EQ(b->max_entries(), 64u);
  EXPECT_EQ(b->max_leases(), 16u);
  EXPECT_EQ(fs::file_size(p), index_file_size({64, 16}));
  {
    IndexLock lock(*a, std::chrono::seconds(5));
    ASSERT_NE(publish(*a, "k", 1, 10), kNil);
    a->header().next_value_id = 2;
  }
  {
    IndexLock lock(*b, std::chrono::seconds(5));
    uint32_t e = find(*b, "k");
    ASSERT_NE(e, kNil);
    EXPECT_EQ(b->entry(e).size, 10u);
    EXPECT_EQ(b->check(), "");
  }
  // No temporaries left behind.
  size_t files = 0;
  for ([[maybe_unused]] auto& f : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1u);
}

TEST(CacheIndex, OpenWithoutCreateFailsWithEnoent) {
  TempDir dir;
  try {
    CacheIndex::open(dir.path() / "none.index", {}, false, 0600);
    FAIL() << "opened a missing index";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
  }
}

// Opens p and expects EPROTO with `want` in the message.
void expect_refused(const fs::path& p, const std::string& want) {
  try {
    CacheIndex::open(p, {}, true, 0600);
    ADD_FAILURE() << "opened a bad index, wanted: " << want;
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EPROTO) << e.what();
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

template <class T>
void poke(const fs::path& p, size_t offset, T value) {
  FILE* f = std::fopen(p.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  std::fseek(f, static_cast<long>(offset), SEEK_SET);
  std::fwrite(&value, sizeof value, 1, f);
  std::fclose(f);
}

TEST(CacheIndex, RefusesHeadersOfOtherLayouts) {
  TempDir dir;
  fs::path p = dir.path() / "c.index";
  CacheIndex::open(p, {32, 8}, true, 0600);
  const fs::path good = dir.path() / "good";
  fs::copy_file(p, good);
  auto reset = [&] { fs::copy_file(good, p, fs::copy_options::overwrite_existing); };

  poke<char>(p, offsetof(IndexHeader, magic), 'X');
  expect_refused(p, "bad magic");
  reset();
  poke<uint32_t>(p, offsetof(IndexHeader, layout_version), kLayoutVersion + 1);
  expect_refused(p, "layout version 2, this build reads version 1");
  reset();
  poke<uint32_t>(p, offsetof(IndexHeader, abi) + offsetof(AbiFingerprint, entry_size),
                 sizeof(Entry) + 8);
  expect_refused(p, "ABI mismatch: sizeof(Entry) is " + std::to_string(sizeof(Entry) + 8));
  reset();
  poke<uint32_t>(p, offsetof(IndexHeader, abi) + offsetof(AbiFingerprint, boost_version), 107000);
  expect_refused(p, "BOOST_VERSION is 107000");
  reset();
  poke<uint32_t>(p, offsetof(IndexHeader, ready), 0);
  expect_refused(p, "not completely built");
  reset();
  fs::resize_file(p, fs::file_size(p) - 4096);
  expect_refused(p, "inconsistent geometry");
  fs::resize_file(p, 100);
  expect_refused(p, "too small");
  reset();
  CacheIndex::open(p, {}, false, 0600);  // and the original is fine
}

// The model: key -> value id; pins per value id.
struct Model {
  std::map<std::string, uint64_t> live;
};

TEST(CacheIndex, RandomOperationsAgreeWithAModel) {
  TempDir dir;
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto idx = CacheIndex::open(dir.path() / "c.index", {48, 64}, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  Model model;
  std::map<uint32_t, uint64_t> pins;  // lease -> value id
  ProcessIdentity me = self_identity();
  uint64_t next_id = 1;
  for (int step = 0; step < 20000; ++step) {
    std::string key = "key" + std::to_string(rng() % 80);
    switch (rng() % 6) {
      case 0:
      case 1: {  // put (replacing, evicting the LRU released entry if full)
        uint32_t old = find(*idx, key);
        uint32_t e = idx->allocate_entry();
        if (e == kNil) {
          uint32_t victim = idx->lru_victim();
          if (victim == kNil) break;
          std::string vk(idx->entry(victim).key, idx->entry(victim).key_size);
          ASSERT_EQ(idx->entry(victim).pins, 0u);
          idx->remove_entry(victim);
          model.live.erase(vk);
          if (victim == old) old = kNil;
          e = idx->allocate_entry();
        }
        Entry& en = idx->entry(e);
        std::memcpy(en.key, key.data(), key.size());
        en.key_size = static_cast<uint32_t>(key.size());
        en.key_hash = checksum64(key.data(), key.size());
        en.value_id = next_id++;
        en.size = rng() % 10000;
        idx->publish_entry(e);
        if (old != kNil) idx->remove_entry(old);
        idx->header().next_value_id = next_id;
        model.live[key] = en.value_id;
        break;
      }
      case 2: {  // get
        uint32_t e = find(*idx, key);
        auto it = model.live.find(key);
        ASSERT_EQ(e != kNil, it != model.live.end()) << key;
        if (e == kNil) break;
        ASSERT_EQ(idx->entry(e).value_id, it->second);
        idx->touch(e);
        if (rng() % 2) {
          uint32_t l = idx->add_pin(e, me);
          if (l != kNil) pins[l] = it->second;
        }
        break;
      }
      case 3: {  // erase
        uint32_t e = find(*idx, key);
        ASSERT_EQ(e != kNil, model.live.count(key) == 1);
        if (e != kNil) idx->remove_entry(e);
        model.live.erase(key);
        break;
      }
      case 4: {  // release a pin
        if (pins.empty()) break;
        auto it = pins.begin();
        std::advance(it, static_cast<long>(rng() % pins.size()));
        uint32_t e = idx->release_pin(it->first);
        if (e != kNil) {
          EXPECT_EQ(idx->entry(e).value_id, it->second);
          EXPECT_EQ(idx->entry(e).pins, 0u);
        }
        pins.erase(it);
        break;
      }
      case 5:  // a crash: derived state rebuilt from scratch
        if (rng() % 50 == 0) idx->rebuild();
        break;
    }
    std::string problem = idx->check();
    ASSERT_EQ(problem, "") << "after step " << step;
    ASSERT_EQ(idx->header().live_entries, model.live.size());
  }
}

TEST(CacheIndex, RebuildFinishesEveryInterruptedCommit) {
  TempDir dir;
  auto idx = CacheIndex::open(dir.path() / "c.index", {16, 8}, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  publish(*idx, "a", 1, 1);
  publish(*idx, "b", 2, 2);
  uint32_t c = publish(*idx, "c", 3, 3);
  idx->header().next_value_id = 10;

  // A publish killed after its commit point: live, but on no chain or list.
  uint32_t d = idx->allocate_entry();
  Entry& en = idx->entry(d);
  std::memcpy(en.key, "d", 1);
  en.key_size = 1;
  en.key_hash = checksum64("d", 1);
  en.value_id = 4;
  en.size = 4;
  en.state = kEntryLive;
  // A put killed between publishing the new value of "a" and removing the
  // old one: "a" twice; the newer value (5) must win.
  uint32_t a2 = idx->allocate_entry();
  Entry& ea = idx->entry(a2);
  std::memcpy(ea.key, "a", 1);
  ea.key_size = 1;
  ea.key_hash = checksum64("a", 1);
  ea.value_id = 5;
  ea.size = 5;
  ea.state = kEntryLive;
  // A removal killed after its commit point: free, still chained.
  idx->entry(c).state = kEntryFree;
  // An allocation killed before its commit point: off the free list, free.
  ASSERT_NE(idx->allocate_entry(), kNil);
  EXPECT_NE(idx->check(), "");

  idx->rebuild();
  EXPECT_EQ(idx->check(), "");
  EXPECT_EQ(idx->header().live_entries, 3u);
  EXPECT_EQ(idx->entry(find(*idx, "a")).value_id, 5u);
  EXPECT_NE(find(*idx, "b"), kNil);
  EXPECT_EQ(find(*idx, "c"), kNil);
  EXPECT_EQ(idx->entry(find(*idx, "d")).value_id, 4u);
  EXPECT_EQ(idx->header().live_bytes, 5u + 2 + 4);
}

TEST(CacheIndex, ReclaimsLeasesOfDeadOwnersOnly) {
  TempDir dir;
  auto idx = CacheIndex::open(dir.path() / "c.index", {16, 8}, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  uint32_t e = publish(*idx, "k", 1, 100);
  idx->header().next_value_id = 2;
  ProcessIdentity me = self_identity();
  ProcessIdentity ghost{me.pid, me.start_time + 1};  // our pid, another start: reused
  ASSERT_NE(idx->add_pin(e, me), kNil);
  ASSERT_NE(idx->add_pin(e, ghost), kNil);
  uint64_t unpublished = 0;
  ASSERT_NE(idx->add_write_lease(ghost, &unpublished), kNil);
  EXPECT_EQ(idx->entry(e).pins, 2u);

  CacheIndex::Reclaimed r = idx->reclaim_leases(process_alive);
  EXPECT_EQ(r.leases, 2u);
  EXPECT_TRUE(r.unpinned.empty()) << "our own pin still holds it";
  ASSERT_EQ(r.abandoned_values.size(), 1u);
  EXPECT_EQ(r.abandoned_values[0], unpublished);
  EXPECT_EQ(idx->entry(e).pins, 1u);
  EXPECT_EQ(idx->check(), "");
}

TEST(ProcessIdentity, ZombiesAndExitedProcessesAreDead) {
  EXPECT_TRUE(process_alive(self_identity()));
  pid_t child = fork();
  if (child == 0) _exit(0);
  ProcessIdentity who{child, 0};
  // A zombie until reaped.
  for (int i = 0; i < 200 && process_alive(who); ++i) usleep(10000);
  EXPECT_FALSE(process_alive(who));
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(process_alive(who));
}

// A child killed at each commit point while holding the lock: the parent's
// next lock recovers, and the index is consistent again.
TEST(CacheIndex, LockOfAKilledHolderIsRecovered) {
  TempDir dir;
  fs::path p = dir.path() / "c.index";
  auto idx = CacheIndex::open(p, {16, 8}, true, 0600);
  for (const char* point : {"publish.after_commit", "remove.after_commit", ""}) {
    SCOPED_TRACE(point);
    pid_t child = fork();
    if (child == 0) {
      static std::string kill_at;
      kill_at = point;
      fault_hook().store(+[](const char* at) {
        if (kill_at == at) raise(SIGKILL);
      });
      auto mine = CacheIndex::open(p, {}, false, 0600);
      IndexLock lock(*mine, std::chrono::seconds(5));
      uint32_t e = find(*mine, "k");
      if (e != kNil) mine->remove_entry(e);
      publish(*mine, "k", mine->header().next_value_id++, 1);
      if (kill_at.empty()) raise(SIGKILL);  // holding the lock, consistent
      _exit(3);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    uint64_t before = idx->header().counters.lock_recoveries;
    IndexLock lock(*idx, std::chrono::seconds(5));
    EXPECT_TRUE(lock.recovered());
    EXPECT_EQ(idx->header().counters.lock_recoveries, before + 1);
    EXPECT_EQ(idx->check(), "");
  }
}

TEST(CacheIndex, ALiveHolderMakesOthersTimeOut) {
  TempDir dir;
  fs::path p = dir.path() / "c.index";
  auto idx = CacheIndex::open(p, {16, 8}, true, 0600);
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t child = fork();
  if (child == 0) {
    auto mine = CacheIndex::open(p, {}, false, 0600);
    IndexLock lock(*mine, std::chrono::seconds(5));
    char c = 1;
    (void)!write(go[1], &c, 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(go[0], &c, 1), 1);
  try {
    IndexLock lock(*idx, std::chrono::milliseconds(200));
    ADD_FAILURE() << "took a lock held by a live process";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ETIMEDOUT);
    EXPECT_NE(std::string(e.what()).find("held by pid " + std::to_string(child)), std::string::npos)
        << e.what();
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  IndexLock lock(*idx, std::chrono::seconds(5));
  EXPECT_TRUE(lock.recovered());
  close(go[0]);
  close(go[1]);
}

}  // namespace
}  // namespace volfs::cache_detail
