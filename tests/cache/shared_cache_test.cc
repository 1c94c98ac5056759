// shared_cache_test.cc: SharedCache on a real volfs mount, from one process,
// several threads, forked and re-executed children, and processes killed
// while holding a pin or the index lock. Invariant checked everywhere: a get
// returns the exact bytes of some put of that key (never corrupted, partial
// or older than what its reader already saw), or a miss.
//
// Run with --cache-child ... this binary is its own child process (as
// Boost's doc_spawn_vector.cpp re-runs argv[0]); see child_main().
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <volfs/file.h>
#include <volfs/shared_cache.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "mount_fixture.h"
#include "shared_cache_testing.h"

namespace volfs {
namespace {

namespace fs = std::filesystem;
using cache_detail::SharedCacheTestPeer;
using std::chrono::milliseconds;
using std::chrono::seconds;
using test::ChildProcess;
using test::SyncPipe;

// ---- Values whose content derives from their key and a version ----

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// 16..max_size bytes: the version, the key's hash, then a stream seeded by
// both. Sizes cross page boundaries on purpose.
std::string make_value(std::string_view key, uint64_t version, size_t max_size = 20000) {
  uint64_t kh = fnv1a(key);
  uint64_t state = kh ^ (version * 0x9E3779B97F4A7C15ULL);
  size_t size = 16 + splitmix(state) % (max_size - 15);
  std::string v(size, '\0');
  std::memcpy(v.data(), &version, 8);
  std::memcpy(v.data() + 8, &kh, 8);
  for (size_t i = 16; i < size; i += 8) {
    uint64_t r = splitmix(state);
    std::memcpy(v.data() + i, &r, std::min<size_t>(8, size - i));
  }
  return v;
}

// The version `got` is a value of, if it is exactly make_value(key, version).
std::optional<uint64_t> version_of(std::string_view key, std::string_view got,
                                   size_t max_size = 20000) {
  if (got.size() < 16) return std::nullopt;
  uint64_t version;
  std::memcpy(&version, got.data(), 8);
  if (make_value(key, version, max_size) != got) return std::nullopt;
  return version;
}

SharedCacheOptions small_options() {
  SharedCacheOptions o;
  o.max_entries = 256;
  o.max_leases = 256;
  o.lock_timeout = seconds(10);
  return o;
}

// ---- The re-executed child (doc_spawn_vector style) ----

// --cache-child DIR NAME GET_KEY GET_VERSION PUT_KEY PUT_VERSION: checks that
// GET_KEY holds exactly that version, then puts PUT_KEY. Exit 0 on success.
int child_main(int argc, char** argv) {
  if (argc != 8) return 100;
  try {
    SharedCache c = SharedCache::open(argv[2], argv[3], small_options());
    std::optional<ValueView> v = c.get(argv[4]);
    if (!v) return 101;
    if (version_of(argv[4], v->str()) != std::strtoull(argv[5], nullptr, 10)) return 102;
    c.put(argv[6], make_value(argv[6], std::strtoull(argv[7], nullptr, 10)));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child: %s\n", e.what());
    return 103;
  }
}

int spawn_self(const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    std::string self = "/proc/self/exe";
    argv.push_back(self.data());
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  int status = -1;
  waitpid(pid, &status, 0);
  return status;
}

// ---- Fixtures ----

class SharedCacheTest : public test::MountTest {
 protected:
  fs::path dir() const { return mount_.mountpoint(); }
  SharedCache open(const SharedCacheOptions& o = small_options(), std::string_view name = "c") {
    return SharedCache::open(dir(), name, o);
  }
  size_t segment_files(std::string_view name = "c") const {
    size_t n = 0;
    for ([[maybe_unused]] auto& f : fs::directory_iterator(dir() / (std::string(name) + ".values")))
      ++n;
    return n;
  }
  // The pin bits in the word of key's slot (0: released, purgeable).
  uint64_t pin_bits(SharedCache& c, std::string_view key) {
    uint64_t w = SharedCacheTestPeer::slot_word(c, key);
    EXPECT_NE(w, 0u) << key << " has no slot";
    return w & VOLFS_SLOT_PIN_BITS;
  }
  // Slots in use (live values and puts in flight).
  uint64_t used_slots(SharedCache& c) {
    SharedCacheStats s = c.stats();
    return s.slots - s.free_slots;
  }
  void purge_all() { volfs::purge(dir(), VOLFS_PURGE_ALL); }
};

TEST_F(SharedCacheTest, PutGetEraseAndStats) {
  SharedCache c = open();
  EXPECT_FALSE(c.get("absent"));
  std::string v = make_value("k", 1);
  c.put("k", v);
  {
    std::optional<ValueView> got = c.get("k");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->str(), v);
    EXPECT_EQ(c.stats().pinned, 1u);
  }
  c.put("empty", std::string_view());
  {
    std::optional<ValueView> got = c.get("empty");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size(), 0u);
  }
  SharedCacheStats s = c.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.puts, 2u);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.bytes, v.size());
  EXPECT_EQ(s.pinned, 0u);
  EXPECT_EQ(s.max_entries, 256u);
  EXPECT_TRUE(c.erase("k"));
  EXPECT_FALSE(c.erase("k"));
  EXPECT_FALSE(c.get("k"));
  EXPECT_EQ(used_slots(c), 0u) << "an erased value's slot is free";
  EXPECT_EQ(segment_files(), 1u) << "one segment (one-page class) so far";
  EXPECT_EQ(c.stats().entries, 1u);
  EXPECT_EQ(c.local_stats().hits, 2u);
  EXPECT_EQ(c.local_stats().misses, 2u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

TEST_F(SharedCacheTest, ValuesArePinnedExactlyWhileViewed) {
  SharedCache c = open();
  c.put("k", make_value("k", 1, size_t{3} * 4096));
  EXPECT_EQ(pin_bits(c, "k"), 0u) << "released after the put";
  EXPECT_EQ(VOLFS_SLOT_STATE(SharedCacheTestPeer::slot_word(c, "k")), VOLFS_SLOT_LIVE);
  {
    std::optional<ValueView> a = c.get("k");
    ASSERT_TRUE(a);
    std::optional<ValueView> b = c.get("k");  // a second pin of the same holder
    ASSERT_TRUE(b);
    const uint64_t bits = pin_bits(c, "k");
    EXPECT_EQ(__builtin_popcountll(bits), 1) << "one holder, one bit";
    a.reset();
    EXPECT_EQ(pin_bits(c, "k"), bits) << "b still pins it";
  }
  EXPECT_EQ(pin_bits(c, "k"), 0u);
  // The index itself is never volatile.
  File index = File::open(c.index_path(), O_RDWR);
  EXPECT_EQ(index.status().volatile_pages, 0u);
}

TEST_F(SharedCacheTest, PurgedValueIsAPurgedMissAndIsDropped) {
  SharedCache c = open();
  c.put("k", make_value("k", 1));
  purge_all();
  EXPECT_FALSE(c.get("k"));
  SharedCacheStats s = c.stats();
  EXPECT_EQ(s.purged_misses, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(used_slots(c), 0u);
  EXPECT_FALSE(c.get("k"));
  EXPECT_EQ(c.stats().purged_misses, 1u) << "dropped: the second miss is a plain one";
  // The caller recomputes.
  c.put("k", make_value("k", 2));
  std::optional<ValueView> got = c.get("k");
  ASSERT_TRUE(got);
  EXPECT_EQ(version_of("k", got->str()), 2u);
}

TEST_F(SharedCacheTest, PinnedValueSurvivesPurges) {
  SharedCache c = open();
  const std::string v = make_value("k", 7, 40000);
  c.put("k", v);
  c.put("other", make_value("other", 1));
  std::optional<ValueView> got = c.get("k");
  ASSERT_TRUE(got);
  purge_all();
  EXPECT_EQ(got->str(), v);
  std::optional<ValueView> again = c.get("k");  // pinned, so intact
  ASSERT_TRUE(again);
  EXPECT_EQ(again->str(), v);
  EXPECT_FALSE(c.get("other")) << "released values were purged";
  got.reset();
  again.reset();
  purge_all();
  EXPECT_FALSE(c.get("k")) << "released, so purgeable again";
  EXPECT_EQ(c.stats().purged_misses, 2u);
}

TEST_F(SharedCacheTest, ReplacingKeepsReadersOnTheirBytes) {
  SharedCache c = open();
  const std::string v1 = make_value("k", 1);
  c.put("k", v1);
  std::optional<ValueView> old = c.get("k");
  ASSERT_TRUE(old);
  c.put("k", make_value("k", 2));
  EXPECT_EQ(old->str(), v1) << "the old value is not overwritten in place";
  {
    std::optional<ValueView> now = c.get("k");
    ASSERT_TRUE(now);
    EXPECT_EQ(version_of("k", now->str()), 2u);
  }
  EXPECT_EQ(used_slots(c), 1u) << "the old slot is free, though still pinned by the reader";
  // Its pin keeps it from reuse: a stream of puts never lands in it.
  for (int i = 0; i < 40; ++i) c.put("other" + std::to_string(i), make_value("o", i));
  EXPECT_EQ(old->str(), v1);
  EXPECT_TRUE(c.erase("k"));
  EXPECT_EQ(old->str(), v1);
  old.reset();
  SharedCacheStats s = c.stats();
  EXPECT_EQ(s.entries, 40u);
  EXPECT_EQ(s.pinned, 0u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

TEST_F(SharedCacheTest, ViewOutlivesItsCacheObject) {
  std::optional<ValueView> v;
  {
    SharedCache c = open();
    c.put("k", make_value("k", 3));
    v = c.get("k");
    ASSERT_TRUE(v);
  }
  EXPECT_EQ(version_of("k", v->str()), 3u);
  v.reset();
  SharedCache c = open();
  EXPECT_EQ(c.stats().pinned, 0u);
  EXPECT_EQ(pin_bits(c, "k"), 0u);
}

TEST_F(SharedCacheTest, FullIndexEvictsTheLeastRecentlyUsedReleasedEntry) {
  SharedCacheOptions o = small_options();
  o.max_entries = 4;
  SharedCache c = open(o);
  for (int i = 0; i < 4; ++i) c.put("k" + std::to_string(i), make_value("k", i, 100));
  EXPECT_TRUE(c.get("k0"));  // k1 is now the least recently used
  c.put("k4", make_value("k", 4, 100));
  EXPECT_FALSE(c.get("k1"));
  EXPECT_TRUE(c.get("k0"));
  EXPECT_EQ(c.stats().evictions, 1u);
  EXPECT_EQ(c.stats().entries, 4u);

  // Pinned entries are never evicted; with all of them pinned, put fails.
  std::vector<ValueView> pins;
  for (const char* k : {"k0", "k2", "k3", "k4"}) {
    std::optional<ValueView> v = c.get(k);
    ASSERT_TRUE(v) << k;
    pins.push_back(std::move(*v));
  }
  try {
    c.put("k5", std::string_view("x"));
    ADD_FAILURE() << "put into an index full of pinned entries";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOSPC);
    EXPECT_NE(std::string(e.what()).find("index full"), std::string::npos) << e.what();
  }
  EXPECT_EQ(used_slots(c), 4u) << "the refused value's slot is free again";
  // A replacement needs no eviction: it frees its own key's entry, even a
  // pinned one (whose reader keeps the old bytes).
  c.put("k2", make_value("k2", 9, 100));
  EXPECT_EQ(c.stats().evictions, 1u);
  {
    std::optional<ValueView> v = c.get("k2");
    ASSERT_TRUE(v);
    EXPECT_EQ(version_of("k2", v->str(), 100), 9u);
  }
  EXPECT_EQ(version_of("k", pins[1].str(), 100), 2u) << "the old k2, still held";
  pins.erase(pins.begin());  // releases k0
  c.put("k5", std::string_view("x"));
  EXPECT_FALSE(c.get("k0"));
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

TEST_F(SharedCacheTest, PinsNeedNoLeases) {
  SharedCacheOptions o = small_options();
  o.max_leases = 1;  // one put in flight at a time; readers take none
  SharedCache c = open(o);
  c.put("k", std::string_view("value"));
  std::vector<ValueView> views;
  for (int i = 0; i < 10; ++i) {
    std::optional<ValueView> v = c.get("k");
    ASSERT_TRUE(v);
    views.push_back(std::move(*v));
  }
  c.put("k2", std::string_view("value2"));
  EXPECT_EQ(c.stats().pinned, 1u) << "one holder bit, however many views";
}

// Each SharedCache object is one holder of each segment file; volfs has 62
// pin bits per file. The 63rd is refused with a message naming the limit.
TEST_F(SharedCacheTest, SixtyThirdHolderOfASegmentIsRefusedClearly) {
  std::vector<SharedCache> caches;
  caches.push_back(open());
  caches[0].put("k", std::string_view("v"));
  for (unsigned i = 1; i < VOLFS_SLOT_HOLDERS; ++i) caches.push_back(open());
  try {
    SharedCache extra = open();
    ADD_FAILURE() << "a 63rd holder of one segment file";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EUSERS) << e.what();
    EXPECT_NE(std::string(e.what()).find("62 holders"), std::string::npos) << e.what();
  }
  caches.pop_back();  // its open file is released: its bit is free again
  SharedCache again = open();
  EXPECT_TRUE(again.get("k"));
}

TEST_F(SharedCacheTest, RejectsBadKeysNamesAndDirectories) {
  SharedCache c = open();
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const std::system_error& e) {
      return e.code().value();
    }
    return 0;
  };
  EXPECT_EQ(code_of([&] { c.put("", std::string_view("x")); }), EINVAL);
  EXPECT_EQ(code_of([&] { c.put(std::string(241, 'k'), std::string_view("x")); }), EINVAL);
  c.put(std::string(240, 'k'), std::string_view("x"));
  EXPECT_TRUE(c.get(std::string(240, 'k')));
  EXPECT_EQ(code_of([&] { SharedCache::open(dir(), "a/b"); }), EINVAL);
  EXPECT_EQ(code_of([&] { SharedCache::open(dir(), ".."); }), EINVAL);
  SharedCacheOptions no_create;
  no_create.create = false;
  EXPECT_EQ(code_of([&] { SharedCache::open(dir(), "none", no_create); }), ENOENT);
  // Not on volfs: refused, never silently non-volatile.
  std::string tmp = fs::temp_directory_path() / "volfs-cache-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmp.data()), nullptr);
  EXPECT_EQ(code_of([&] { SharedCache::open(tmp, "c"); }), ENOTTY);
  fs::remove_all(tmp);
}

TEST_F(SharedCacheTest, HeaderMismatchIsRefused) {
  { SharedCache c = open(); }
  fs::path index = dir() / "c.index";
  auto open_error = [&]() -> std::string {
    try {
      open();
    } catch (const std::system_error& e) {
      EXPECT_EQ(e.code().value(), EPROTO) << e.what();
      return e.what();
    }
    return "(opened)";
  };
  auto poke32 = [&](size_t offset, uint32_t value) {
    int fd = ::open(index.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, &value, 4, static_cast<off_t>(offset)), 4);
    close(fd);
  };
  using cache_detail::AbiFingerprint;
  using cache_detail::IndexHeader;
  const size_t magic = offsetof(IndexHeader, magic);
  const size_t version = offsetof(IndexHeader, layout_version);
  const size_t entry_size = offsetof(IndexHeader, abi) + offsetof(AbiFingerprint, entry_size);

  uint32_t saved = 0;
  {
    int fd = ::open(index.c_str(), O_RDWR);
    ASSERT_EQ(pread(fd, &saved, 4, magic), 4);
    close(fd);
  }
  poke32(magic, 0x6b6e756a);
  EXPECT_NE(open_error().find("not a volfs cache index (bad magic)"), std::string::npos);
  poke32(magic, saved);
  poke32(version, 99);
  EXPECT_NE(open_error().find("layout version 99"), std::string::npos);
  poke32(version, cache_detail::kLayoutVersion);
  poke32(entry_size, 1);
  EXPECT_NE(open_error().find("ABI mismatch: sizeof(Entry) is 1 in the index"), std::string::npos);
  poke32(entry_size, sizeof(cache_detail::Entry));
  EXPECT_NO_THROW(open());

  // Something else entirely where the index should be.
  {
    int fd = ::open((dir() / "junk.index").c_str(), O_CREAT | O_RDWR, 0600);
    std::string text(8192, 'j');
    ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
  }
  try {
    SharedCache::open(dir(), "junk");
    ADD_FAILURE() << "opened a junk index";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EPROTO);
    EXPECT_NE(std::string(e.what()).find("junk.index: not a volfs cache index"), std::string::npos)
        << e.what();
  }
}

TEST_F(SharedCacheTest, TwoMappingsInOneProcess) {
  SharedCache a = open();
  SharedCache b = open();
  EXPECT_NE(SharedCacheTestPeer::index(a).mapping_base(),
            SharedCacheTestPeer::index(b).mapping_base());
  a.put("k", make_value("k", 1));
  std::optional<ValueView> vb = b.get("k");
  ASSERT_TRUE(vb);
  EXPECT_EQ(version_of("k", vb->str()), 1u);
  // A pin through b holds the value for a too.
  purge_all();
  std::optional<ValueView> va = a.get("k");
  ASSERT_TRUE(va);
  EXPECT_EQ(version_of("k", va->str()), 1u);
  EXPECT_EQ(a.stats().pinned, 2u);
  EXPECT_EQ(b.stats().hits, 2u);
  b.erase("k");
  EXPECT_FALSE(a.get("k"));
}

TEST_F(SharedCacheTest, ForkedChildSharesTheIndex) {
  SharedCache c = open();
  c.put("parent", make_value("parent", 1));
  std::optional<ValueView> held = c.get("parent");
  ASSERT_TRUE(held);
  const std::string d = dir();
  int status = test::run_in_child([&] {
    // A view inherited across fork is the parent's pin: dropping it here
    // must not release it.
    held.reset();
    SharedCache mine = SharedCache::open(d, "c", small_options());
    std::optional<ValueView> v = mine.get("parent");
    CHILD_CHECK(v && version_of("parent", v->str()) == 1u);
    CHILD_CHECK(mine.stats().pinned == 2);
    mine.put("child", make_value("child", 2));
    return 0;
  });
  EXPECT_TRUE(test::exited_with(status, 0));
  EXPECT_EQ(c.stats().pinned, 1u) << "the parent's pin survived the child";
  std::optional<ValueView> v = c.get("child");
  ASSERT_TRUE(v);
  EXPECT_EQ(version_of("child", v->str()), 2u);
}

TEST_F(SharedCacheTest, ReexecutedChildSharesTheIndex) {
  SharedCache c = open();
  c.put("from-parent", make_value("from-parent", 11));
  int status = spawn_self({"--cache-child", dir(), "c", "from-parent", "11", "from-child", "12"});
  ASSERT_TRUE(test::exited_with(status, 0));
  std::optional<ValueView> v = c.get("from-child");
  ASSERT_TRUE(v);
  EXPECT_EQ(version_of("from-child", v->str()), 12u);
  // And the child's mismatch is detected (a wrong expected version).
  status = spawn_self({"--cache-child", dir(), "c", "from-parent", "99", "x", "1"});
  EXPECT_TRUE(test::exited_with(status, 102));
}

TEST_F(SharedCacheTest, ConcurrentCreatorsShareOneIndex) {
  constexpr int kProcs = 8;
  SyncPipe go;
  std::vector<std::unique_ptr<ChildProcess>> kids;
  const std::string d = dir();
  for (int i = 0; i < kProcs; ++i) {
    kids.push_back(std::make_unique<ChildProcess>());
    kids.back()->start([&, i] {
      CHILD_CHECK(go.wait());
      SharedCache c = SharedCache::open(d, "race", small_options());
      std::string k = "k" + std::to_string(i);
      c.put(k, make_value(k, 1));
      return 0;
    });
  }
  for (int i = 0; i < kProcs; ++i) go.post();
  for (auto& k : kids) EXPECT_TRUE(test::exited_with(k->wait(), 0));
  SharedCache c = open(small_options(), "race");
  EXPECT_EQ(c.stats().entries, static_cast<uint64_t>(kProcs));
  for (int i = 0; i < kProcs; ++i) EXPECT_TRUE(c.get("k" + std::to_string(i))) << i;
  for (auto& f : fs::directory_iterator(dir())) {
    EXPECT_EQ(f.path().filename().string().find(".tmp."), std::string::npos)
        << "left behind: " << f.path();
  }
}

TEST_F(SharedCacheTest, ManyThreadsOfOneProcess) {
  SharedCache c = open();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0}, hits{0};
  std::thread purger([&] {
    while (!stop.load()) {
      purge_all();
      std::this_thread::sleep_for(milliseconds(2));
    }
  });
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 400; ++i) {
        std::string k = "k" + std::to_string(rng() % 16);
        if (rng() % 3 == 0) {
          c.put(k, make_value(k, rng() % 1000));
        } else if (std::optional<ValueView> v = c.get(k)) {
          ++hits;
          if (!version_of(k, v->str())) ++bad;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  stop = true;
  purger.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(hits.load(), 0u);
  SharedCacheStats s = c.stats();
  EXPECT_EQ(s.corrupt_misses, 0u);
  EXPECT_EQ(s.pinned, 0u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

// ---- Crashes ----

// A killed reader's pin is its holder bit; the daemon clears it when the
// reader's open files are released (at its death). Nothing in the cache
// has to reclaim it.
TEST_F(SharedCacheTest, PinOfAKilledReaderIsReleasedByTheDaemon) {
  SharedCache c = open();
  c.put("k", make_value("k", 5));
  SyncPipe pinned;
  ChildProcess reader;
  const std::string d = dir();
  reader.start([&] {
    SharedCache mine = SharedCache::open(d, "c", small_options());
    std::optional<ValueView> v = mine.get("k");
    CHILD_CHECK(v);
    pinned.post();
    pause();
    return 0;
  });
  ASSERT_TRUE(pinned.wait());
  EXPECT_EQ(c.stats().pinned, 1u);
  EXPECT_NE(pin_bits(c, "k"), 0u);
  purge_all();
  // Others go on meanwhile, and the pinned value survived the purge.
  c.put("other", make_value("other", 1));
  EXPECT_TRUE(c.get("other"));
  {
    std::optional<ValueView> v = c.get("k");
    ASSERT_TRUE(v);
    EXPECT_EQ(version_of("k", v->str()), 5u);
  }

  kill(reader.pid(), SIGKILL);
  EXPECT_TRUE(test::killed_by(reader.wait(), SIGKILL));
  // The release of the reader's open file may trail its death a little (the
  // kernel sends FUSE_RELEASE, the daemon clears the bit): wait, bounded.
  uint64_t bits = ~uint64_t{0};
  for (int i = 0; i < 500 && (bits = pin_bits(c, "k")) != 0; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(bits, 0u) << "the dead reader's bit is still set after 5 s";
  EXPECT_EQ(c.stats().pinned, 0u);
  purge_all();
  EXPECT_FALSE(c.get("k")) << "purgeable again once unpinned";
  EXPECT_EQ(c.stats().purged_misses, 1u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

TEST_F(SharedCacheTest, LockOfAKilledHolderDoesNotWedgeOthers) {
  SharedCache c = open();
  c.put("k", make_value("k", 1));
  SyncPipe locked;
  ChildProcess holder;
  const std::string d = dir();
  holder.start([&] {
    SharedCache mine = SharedCache::open(d, "c", small_options());
    SharedCacheTestPeer::run_locked(mine, [&] {
      locked.post();
      pause();
    });
    return 0;
  });
  ASSERT_TRUE(locked.wait());
  // While a live process holds it, others wait, but only as long as they
  // chose to.
  SharedCacheOptions impatient = small_options();
  impatient.lock_timeout = milliseconds(300);
  int status = test::run_in_child([&] {
    SharedCache mine = SharedCache::open(d, "c", impatient);
    return 0;
  });
  EXPECT_TRUE(test::exited_with(status, 2)) << "an exception (ETIMEDOUT) ended the child";

  kill(holder.pid(), SIGKILL);
  EXPECT_TRUE(test::killed_by(holder.wait(), SIGKILL));
  auto start = std::chrono::steady_clock::now();
  std::optional<ValueView> v = c.get("k");
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));
  ASSERT_TRUE(v);
  EXPECT_EQ(version_of("k", v->str()), 1u);
  c.put("k2", make_value("k2", 1));
  EXPECT_EQ(c.stats().lock_recoveries, 1u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
}

// A writer killed at each point of a put: the key holds the old or the new
// value, whole; the index is consistent; no value file is left behind.
TEST_F(SharedCacheTest, PutKilledAtAnyPointLeavesOldOrNewValue) {
  struct Case {
    const char* point;
    uint64_t want_version;  // what a get must see afterwards
    size_t size;            // pads the killed put's value: 3 pages needs a new segment
  };
  const Case cases[] = {
      {"put.after_write", 1, 0},       // written, unpublished: the old value stays
      {"publish.after_commit", 2, 0},  // both live for a moment: the newer wins
      {"put.after_publish", 2, 0},
      {"remove.after_commit", 2, 0},
      {"put.after_replace", 2, 0},
      {"segment.before_publish", 1, size_t{3} * 4096},  // its file is left to collect
  };
  const std::string d = dir();
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.point);
    SharedCache c = open();
    c.put("k", make_value("k", 1, 100));
    static const char* kill_at;
    kill_at = tc.point;
    int status = test::run_in_child([&] {
      cache_detail::fault_hook().store(+[](const char* at) {
        if (std::strcmp(at, kill_at) == 0) raise(SIGKILL);
      });
      SharedCache mine = SharedCache::open(d, "c", small_options());
      std::string v = make_value("k", 2, 100);
      v.resize(std::max(v.size(), tc.size), 'x');
      mine.put("k", v);
      return 0;
    });
    ASSERT_TRUE(test::killed_by(status, SIGKILL));
    // The killed put may hold a pin on its slot until the kernel's release
    // of its files reaches the daemon, which trails its death a little.
    for (int i = 0; i < 500 && c.stats().pinned != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    c.reclaim_dead_leases();
    {
      std::optional<ValueView> v = c.get("k");
      ASSERT_TRUE(v);
      EXPECT_EQ(version_of("k", v->str(), 100), tc.want_version);
    }
    EXPECT_EQ(SharedCacheTestPeer::check(c), "");
    SharedCacheStats s = c.stats();
    EXPECT_EQ(s.entries, 1u);
    EXPECT_EQ(s.pinned, 0u);
    EXPECT_EQ(used_slots(c), 1u) << "the killed put's slot is free again";
    EXPECT_EQ(segment_files(), 1u);
    EXPECT_TRUE(c.erase("k"));
  }
}

// ---- Real memory pressure: the mount's size limit ----

class SizeLimitTest : public SharedCacheTest {
 protected:
  std::string mount_options() const override { return "size=16m"; }
};

TEST_F(SizeLimitTest, PutsBeyondTheLimitPurgeReleasedValues) {
  SharedCache c = open();
  constexpr int kValues = 64;  // 64 x 512 KiB = twice the mount
  constexpr size_t kSize = size_t{512} * 1024;
  auto value_of = [](const std::string& k) {
    std::string v = make_value(k, 1, kSize);
    v.resize(kSize, 'x');
    return v;
  };
  std::optional<ValueView> held;
  for (int i = 0; i < kValues; ++i) {
    std::string k = "k" + std::to_string(i);
    c.put(k, value_of(k));  // never ENOSPC: released values make room
    if (i == 1) {
      held = c.get(k);  // pinned: must survive all the pressure
      ASSERT_TRUE(held);
    }
  }
  EXPECT_EQ(held->str(), value_of("k1"));
  int hits = 0;
  for (int i = 0; i < kValues; ++i) {
    std::string k = "k" + std::to_string(i);
    if (std::optional<ValueView> v = c.get(k)) {
      ++hits;
      EXPECT_EQ(v->str(), value_of(k));
    }
  }
  SharedCacheStats s = c.stats();
  EXPECT_GT(s.purged_misses, 0u) << "the daemon purged under its size limit";
  EXPECT_GT(hits, 1) << "recent values survive";
  EXPECT_EQ(s.corrupt_misses, 0u);
  EXPECT_EQ(s.hits + s.misses, static_cast<uint64_t>(kValues) + 1);
}

// ---- Many processes, purges in a loop ----

struct WorkerReport {
  uint64_t ops, puts, gets, hits, misses, purged_misses, erases;
  uint64_t bad_content;   // a hit whose bytes are not a value of that key
  uint64_t stale;         // an older version than this reader saw before, or than it put
  uint64_t held_damaged;  // a held view whose bytes changed while held
  uint64_t errors;
};

SharedCacheOptions stress_options() {
  SharedCacheOptions o = small_options();
  o.max_entries = 40;  // fewer than the 84 keys: evictions too
  o.lock_timeout = seconds(20);
  return o;
}

int stress_seconds() {
  const char* s = std::getenv("VOLFS_STRESS_SECONDS");
  int n = s ? std::atoi(s) : 10;
  return n > 0 ? n : 10;
}

// Worker w owns keys "w<w>/k<i>" (only it writes them, with rising
// versions) and writes the shared keys "s<i>"; it reads everything, holds up
// to 4 views across other operations (and across purges), and checks every
// byte it reads.
void stress_worker(const std::string& dir, int w, std::chrono::steady_clock::time_point end,
                   WorkerReport* out) {
  constexpr int kOwnKeys = 12, kSharedKeys = 12, kWorkers = 6;
  SharedCache c = SharedCache::open(dir, "stress", stress_options());
  std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(w));
  std::map<std::string, uint64_t> own;   // key -> last version put, 0 after erase
  std::map<std::string, uint64_t> seen;  // key -> highest version seen (owned by others)
  std::deque<std::pair<std::string, ValueView>> held;
  std::deque<std::string> held_copy;
  uint64_t version = 1;
  auto key_of = [&](int worker, int i) {
    return "w" + std::to_string(worker) + "/k" + std::to_string(i);
  };
  auto check_held = [&] {
    for (size_t i = 0; i < held.size(); ++i) {
      if (held[i].second.str() != held_copy[i]) ++out->held_damaged;
    }
  };
  while (std::chrono::steady_clock::now() < end) {
    ++out->ops;
    try {
      int op = static_cast<int>(rng() % 100);
      if (op < 25) {  // put an own key
        std::string k = key_of(w, static_cast<int>(rng() % kOwnKeys));
        c.put(k, make_value(k, ++version));
        own[k] = version;
        ++out->puts;
      } else if (op < 32) {  // put a shared key
        std::string k = "s" + std::to_string(rng() % kSharedKeys);
        c.put(k, make_value(k, (static_cast<uint64_t>(w) << 40) | ++version));
        ++out->puts;
      } else if (op < 37) {  // erase an own key
        std::string k = key_of(w, static_cast<int>(rng() % kOwnKeys));
        c.erase(k);
        own[k] = 0;
        ++out->erases;
      } else {  // get any key
        int kind = static_cast<int>(rng() % 3);
        std::string k = kind == 0   ? key_of(w, static_cast<int>(rng() % kOwnKeys))
                        : kind == 1 ? key_of(static_cast<int>(rng() % kWorkers),
                                             static_cast<int>(rng() % kOwnKeys))
                                    : "s" + std::to_string(rng() % kSharedKeys);
        ++out->gets;
        std::optional<ValueView> v = c.get(k);
        if (!v) {
          ++out->misses;
        } else {
          ++out->hits;
          std::optional<uint64_t> got = version_of(k, v->str());
          if (!got) {
            ++out->bad_content;
          } else if (k[0] == 'w') {
            if (k.rfind("w" + std::to_string(w) + "/", 0) == 0) {
              // Only we write it: a hit is exactly our last put.
              if (own[k] != *got) ++out->stale;
            } else {
              // Another owner's rising versions: never backwards for us.
              if (*got < seen[k]) ++out->stale;
              seen[k] = std::max(seen[k], *got);
            }
          }
          if (rng() % 4 == 0) {
            held_copy.emplace_back(v->str());
            held.emplace_back(k, std::move(*v));
          }
        }
      }
      if (held.size() > 4 || (!held.empty() && rng() % 8 == 0)) {
        check_held();
        held.pop_front();
        held_copy.pop_front();
      }
    } catch (const std::exception& e) {
      ++out->errors;
      std::fprintf(stderr, "worker %d: %s\n", w, e.what());
    }
  }
  check_held();
  held.clear();
  SharedCacheStats s = c.local_stats();
  out->purged_misses = s.purged_misses;
}

TEST_F(SharedCacheTest, ManyProcessesWithPurgesNeverSeeBadData) {
  constexpr int kWorkers = 6;
  const int secs = stress_seconds();
  const std::string d = dir();
  auto* reports =
      static_cast<WorkerReport*>(mmap(nullptr, sizeof(WorkerReport) * kWorkers,
                                      PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(reports, MAP_FAILED);
  std::memset(reports, 0, sizeof(WorkerReport) * kWorkers);
  auto* purges = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(purges, MAP_FAILED);
  new (purges) std::atomic<uint64_t>(0);
  { SharedCache create = SharedCache::open(d, "stress", stress_options()); }

  const auto end = std::chrono::steady_clock::now() + seconds(secs);
  const auto deadline = milliseconds(1000 * secs + 60000);
  std::vector<std::unique_ptr<ChildProcess>> kids;
  for (int w = 0; w < kWorkers; ++w) {
    kids.push_back(std::make_unique<ChildProcess>());
    kids.back()->start([&, w] {
      stress_worker(d, w, end, &reports[w]);
      return 0;
    });
  }
  ChildProcess purger;
  purger.start([&] {
    std::mt19937 rng(getpid());
    while (std::chrono::steady_clock::now() < end) {
      volfs::purge(d, VOLFS_PURGE_ALL);
      purges->fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    }
    return 0;
  });
  for (auto& k : kids) EXPECT_TRUE(test::exited_with(k->wait(deadline), 0));
  EXPECT_TRUE(test::exited_with(purger.wait(deadline), 0));

  WorkerReport total{};
  for (int w = 0; w < kWorkers; ++w) {
    const WorkerReport& r = reports[w];
    total.ops += r.ops;
    total.puts += r.puts;
    total.gets += r.gets;
    total.hits += r.hits;
    total.misses += r.misses;
    total.purged_misses += r.purged_misses;
    total.erases += r.erases;
    total.bad_content += r.bad_content;
    total.stale += r.stale;
    total.held_damaged += r.held_damaged;
    total.errors += r.errors;
  }
  SharedCache c = open(stress_options(), "stress");
  SharedCacheStats s = c.stats();
  std::printf(
      "stress: %d s, %d processes, %lu purges: %lu ops, %lu puts, %lu gets (%lu hits, %lu misses, "
      "%lu purged), %lu erases, %lu evictions; bad %lu, stale %lu, damaged views %lu, errors "
      "%lu\n",
      secs, kWorkers, static_cast<unsigned long>(purges->load()),
      static_cast<unsigned long>(total.ops), static_cast<unsigned long>(total.puts),
      static_cast<unsigned long>(total.gets), static_cast<unsigned long>(total.hits),
      static_cast<unsigned long>(total.misses), static_cast<unsigned long>(total.purged_misses),
      static_cast<unsigned long>(total.erases), static_cast<unsigned long>(s.evictions),
      static_cast<unsigned long>(total.bad_content), static_cast<unsigned long>(total.stale),
      static_cast<unsigned long>(total.held_damaged), static_cast<unsigned long>(total.errors));
  EXPECT_EQ(total.bad_content, 0u);
  EXPECT_EQ(total.stale, 0u);
  EXPECT_EQ(total.held_damaged, 0u);
  EXPECT_EQ(total.errors, 0u);
  EXPECT_EQ(s.corrupt_misses, 0u);
  EXPECT_GT(total.purged_misses, 0u) << "purges must have happened";
  EXPECT_GT(total.hits, 0u);
  EXPECT_EQ(s.purged_misses, total.purged_misses);
  EXPECT_EQ(s.hits, total.hits);
  EXPECT_EQ(s.pinned, 0u);
  EXPECT_EQ(SharedCacheTestPeer::check(c), "");
  munmap(reports, sizeof(WorkerReport) * kWorkers);
  munmap(purges, 4096);
}

}  // namespace
}  // namespace volfs

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--cache-child") == 0) {
    return volfs::child_main(argc, argv);
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
