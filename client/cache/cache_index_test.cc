// cache_index_test.cc: the shared index on its own (on /dev/shm or TMPDIR,
// no volfs needed): checksum vectors, creation and header checks, two
// mappings, a model-based random test, recovery from crashes at every commit
// point, and a robust lock taken over from a killed process.
#include "cache_index.h"

#include <fcntl.h>
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
#include "segment_map.h"

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

bool never_busy(uint32_t, uint32_t) { return false; }

// A slot of the class of `size` bytes, made kSlotWriting, as SharedCache::put
// takes one (a segment record is published without a file if none is free:
// the index does not look at files). kNil if no slot can be had.
uint32_t take_slot(CacheIndex& idx, uint64_t size, const SlotBusy& busy = never_busy) {
  uint32_t c = idx.size_class_for(size);
  uint32_t g = idx.take_free_slot(c, busy);
  if (g != kNil) return g;
  SegmentRecord plan{};
  uint32_t s = idx.plan_segment(c, &plan);
  if (s == kNil) return kNil;
  idx.publish_segment(s, plan);
  return idx.take_free_slot(c, busy);
}

// Publishes key -> (value_id, size) into idx, in a slot of its own, as
// SharedCache::put does.
uint32_t publish(CacheIndex& idx, const std::string& key, uint64_t value_id, uint64_t size) {
  uint32_t g = size == 0 ? kNil : take_slot(idx, size);
  if (size != 0 && g == kNil) return kNil;
  uint32_t e = idx.allocate_entry();
  if (e == kNil) {
    if (g != kNil) idx.free_slot(g);
    return kNil;
  }
  Entry& en = idx.entry(e);
  en.segment = g == kNil ? kNil : idx.slot_record(g).segment;
  en.slot = g == kNil ? 0 : g - idx.segment(en.segment).first_slot;
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

// value_checksum restated word by word from its description in checksum.h,
// sharing no code with it: both the dispatched (AVX2 here) and the scalar
// loop must agree with it.
uint64_t value_checksum_restated(const std::string& v, uint64_t seed) {
  const uint64_t init[8] = {0x9C2B9D9F2AE75E2FULL, 0x02FF349D4F876AA3ULL, 0xE06C85AFBAEC4EF7ULL,
                            0xE7158A8021F64545ULL, 0x3C95AD20819ED6B7ULL, 0x3C7BA9E38BE9794DULL,
                            0x4D317C68022DD18DULL, 0x8ECA73657965C0FFULL};
  const uint64_t key0[8] = {0xDAB4FCB8093F36EBULL, 0xA71DBA495552DA89ULL, 0x27CD95A026AF91D1ULL,
                            0x8FDE5639132A29CFULL, 0xAFA2D07C1121A14DULL, 0x4F7B56BF55724A8BULL,
                            0xAC84EB6AAA32241DULL, 0x7F8EB3335F062FE3ULL};
  const uint64_t step[8] = {0x3974497269842A23ULL, 0xAD1885A37130F0C5ULL, 0x4A35DEC1881F60DDULL,
                            0x1CFAC13B6D1E96F1ULL, 0x8BCA49D9622DE24DULL, 0xA4726041AC374EEDULL,
                            0xD8D12F2491DF3DBFULL, 0x607FA71722A44C6FULL};
  const uint64_t p1 = 0x9E3779B185EBCA87ULL, p2 = 0xC2B2AE3D27D4EB4FULL, p3 = 0x165667B19E3779F9ULL,
                 p4 = 0x85EBCA77C2B2AE63ULL, p5 = 0x27D4EB2F165667C5ULL;
  std::string padded = v;
  padded.resize((v.size() + 63) / 64 * 64, '\0');
  uint64_t acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = init[i] + seed;
  for (size_t s = 0; s < padded.size() / 64; ++s) {
    for (int i = 0; i < 8; ++i) {
      uint64_t d = 0;
      for (int b = 7; b >= 0; --b) {
        d = d << 8 | static_cast<unsigned char>(
                         padded[s * 64 + static_cast<size_t>(i) * 8 + static_cast<size_t>(b)]);
      }
      const uint64_t k = (key0[i] ^ seed) + s * step[i];
      const uint64_t x = d ^ k;
      acc[i] += (x & 0xFFFFFFFFu) * (x >> 32);
      acc[i ^ 1] += d;
    }
  }
  auto rotl = [](uint64_t x, int r) { return (x << r) | (x >> (64 - r)); };
  uint64_t h = seed + p5 + v.size() * p1;
  for (uint64_t a : acc) {
    h ^= rotl(a * p2, 31) * p1;
    h = h * p1 + p4;
  }
  h ^= h >> 33;
  h *= p2;
  h ^= h >> 29;
  h *= p3;
  h ^= h >> 32;
  return h;
}

TEST(Checksum, ValueChecksumAgreesWithItsDescriptionOnEveryPath) {
  std::mt19937_64 rng(3);
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 200; ++n) sizes.push_back(n);
  for (size_t n : {4095, 4096, 4097, 65536 + 8}) sizes.push_back(n);
  for (size_t n : sizes) {
    std::string v(n, '\0');
    for (char& c : v) c = static_cast<char>(rng());
    const uint64_t seed = rng();
    const uint64_t want = value_checksum_restated(v, seed);
    EXPECT_EQ(value_checksum(v.data(), v.size(), seed), want) << n << " bytes";
    EXPECT_EQ(value_checksum_scalar(v.data(), v.size(), seed), want) << n << " bytes";
  }
  // Pinned: a change of these values changes what the index stores, which
  // needs a new kLayoutVersion.
  EXPECT_EQ(value_checksum("", 0, 0), 0xaae0eb0864386b61ULL);
  EXPECT_EQ(value_checksum("abc", 3, 12345), 0x64180a6568a3b6a0ULL);
  std::string page(4096, '\0');
  for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<char>(i * 7 + 1);
  EXPECT_EQ(value_checksum(page.data(), page.size(), 7), 0x398793affaad85fbULL);
}

TEST(Checksum, ValueChecksumDetectsFlipsSwapsZeroesAndPadding) {
  std::string data(3 * 4096 + 17, '\0');
  std::mt19937_64 rng(1);
  for (char& c : data) c = static_cast<char>(rng());
  const uint64_t sum = value_checksum(data.data(), data.size(), 7);
  for (size_t bit = 0; bit < data.size() * 8; ++bit) {  // every single bit
    data[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    ASSERT_NE(value_checksum(data.data(), data.size(), 7), sum) << "bit " << bit;
    data[bit / 8] ^= static_cast<char>(1 << (bit % 8));
  }
  auto differs = [&](const std::string& changed, const char* what) {
    EXPECT_NE(value_checksum(changed.data(), changed.size(), 7), sum) << what;
  };
  std::string swapped = data;  // two stripes swapped (same lanes)
  std::swap_ranges(swapped.begin() + 64, swapped.begin() + 128, swapped.begin() + 4096);
  differs(swapped, "stripes 1 and 64 swapped");
  swapped = data;  // two neighbouring words swapped (lanes 0 and 1)
  std::swap_ranges(swapped.begin(), swapped.begin() + 8, swapped.begin() + 8);
  differs(swapped, "words 0 and 1 swapped");
  std::string zeroed = data;
  std::memset(zeroed.data() + 4096, 0, 4096);
  differs(zeroed, "a page zeroed");
  differs(data + std::string(1, '\0'), "a zero byte appended");
  EXPECT_NE(value_checksum(data.data(), data.size(), 8), sum) << "the seed (key hash) counts";
  const std::string zeros(8192, '\0');
  EXPECT_NE(value_checksum(zeros.data(), 4096, 7), value_checksum(zeros.data(), 8192, 7))
      << "zero pages of another count";
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
  poke<uint32_t>(p, offsetof(IndexHeader, layout_version), 1);
  expect_refused(p, "layout version 1, this build reads version " + std::to_string(kLayoutVersion));
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

// The model: key -> (value id, slot); pins per slot, as the words would
// hold them (the index never sees words: busy() asks the model).
struct Model {
  std::map<std::string, std::pair<uint64_t, uint32_t>> live;
  std::multiset<uint32_t> pinned;  // global slot indices, one per pin
};

TEST(CacheIndex, RandomOperationsAgreeWithAModel) {
  TempDir dir;
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  IndexGeometry geo{48, 64};
  geo.max_segments = 12;
  geo.max_slots = 200;
  geo.segment_bytes = uint64_t{64} * 1024;  // 16 one-page slots, 1 slot of 16 pages or more
  auto idx = CacheIndex::open(dir.path() / "c.index", geo, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  Model model;
  const SlotBusy busy = [&](uint32_t s, uint32_t k) {
    return model.pinned.count(idx->slot_index(s, k)) > 0;
  };
  ProcessIdentity me = self_identity();
  auto slot_of = [&](uint32_t e) {
    const Entry& en = idx->entry(e);
    return en.segment == kNil ? kNil : idx->slot_index(en.segment, en.slot);
  };
  for (int step = 0; step < 20000; ++step) {
    std::string key = "key" + std::to_string(rng() % 80);
    switch (rng() % 6) {
      case 0:
      case 1: {  // put: a slot nobody pins, then publish (replacing, evicting)
        uint64_t size = rng() % 3 == 0 ? 0 : 1 + rng() % (uint64_t{80} * 1024);
        uint32_t g = kNil;
        if (size > 0) {
          g = take_slot(*idx, size, busy);
          if (g == kNil) {
            uint32_t victim = idx->lru_victim(busy, idx->size_class_for(size));
            if (victim == kNil) break;
            ASSERT_FALSE(model.pinned.count(slot_of(victim)));
            model.live.erase(std::string(idx->entry(victim).key, idx->entry(victim).key_size));
            idx->remove_entry(victim);
            g = take_slot(*idx, size, busy);
            ASSERT_NE(g, kNil) << "the victim's slot is free and unpinned";
          }
          ASSERT_EQ(model.pinned.count(g), 0u) << "a pinned slot was handed to a put";
          for (auto& [k, v] : model.live) ASSERT_NE(v.second, g) << "a live slot was reused";
          ASSERT_EQ(idx->slot_record(g).user, kSlotWriting);
          ASSERT_LE(size, idx->segment(idx->slot_record(g).segment).slot_bytes);
        }
        uint64_t id = idx->header().next_value_id++;
        uint32_t l = kNil;
        if (g != kNil) {
          l = idx->add_write_lease(me, g, &id);
          ASSERT_NE(l, kNil);
        }
        uint32_t old = find(*idx, key);
        uint32_t e = idx->allocate_entry();
        if (e == kNil) {
          uint32_t victim = old != kNil ? old : idx->lru_victim(busy);
          if (victim == kNil) {
            if (l != kNil) idx->release_write_lease(l);
            if (g != kNil) idx->free_slot(g);
            break;
          }
          model.live.erase(std::string(idx->entry(victim).key, idx->entry(victim).key_size));
          idx->remove_entry(victim);
          if (victim == old) old = kNil;
          e = idx->allocate_entry();
        }
        Entry& en = idx->entry(e);
        std::memcpy(en.key, key.data(), key.size());
        en.key_size = static_cast<uint32_t>(key.size());
        en.key_hash = checksum64(key.data(), key.size());
        en.value_id = id;
        en.size = size;
        en.segment = g == kNil ? kNil : idx->slot_record(g).segment;
        en.slot = g == kNil ? 0 : g - idx->segment(en.segment).first_slot;
        idx->publish_entry(e);
        if (old != kNil) idx->remove_entry(old);
        if (l != kNil) idx->release_write_lease(l);
        model.live[key] = {id, g};
        break;
      }
      case 2: {  // get, pinning half the time
        uint32_t e = find(*idx, key);
        auto it = model.live.find(key);
        ASSERT_EQ(e != kNil, it != model.live.end()) << key;
        if (e == kNil) break;
        ASSERT_EQ(idx->entry(e).value_id, it->second.first);
        ASSERT_EQ(slot_of(e), it->second.second);
        idx->touch(e);
        if (slot_of(e) != kNil && rng() % 2) model.pinned.insert(slot_of(e));
        break;
      }
      case 3: {  // erase
        uint32_t e = find(*idx, key);
        ASSERT_EQ(e != kNil, model.live.count(key) == 1);
        if (e != kNil) idx->remove_entry(e);
        model.live.erase(key);
        break;
      }
      case 4: {  // unpin (no lock needed in real life; the index never knows)
        if (model.pinned.empty()) break;
        auto it = model.pinned.begin();
        std::advance(it, static_cast<long>(rng() % model.pinned.size()));
        model.pinned.erase(it);
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
  EXPECT_GT(idx->header().counters.segments_created, 1u);
}

TEST(CacheIndex, SizeClassesAndSegmentGeometry) {
  TempDir dir;
  IndexGeometry geo{16, 8};
  geo.segment_bytes = uint64_t{64} * 1024;
  geo.max_segments = 3;
  geo.max_slots = 20;
  auto idx = CacheIndex::open(dir.path() / "c.index", geo, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  EXPECT_EQ(idx->size_class_for(1), 0u);
  EXPECT_EQ(idx->size_class_for(4096), 0u);
  EXPECT_EQ(idx->size_class_for(4097), 1u);
  EXPECT_EQ(idx->size_class_for(uint64_t{3} * 4096), 2u);
  EXPECT_EQ(idx->size_class_for(idx->max_value_size()), kSizeClasses - 1);
  EXPECT_EQ(idx->size_class_for(idx->max_value_size() + 1), kSizeClasses);
  SegmentRecord a{};
  uint32_t s = idx->plan_segment(0, &a);
  ASSERT_NE(s, kNil);
  EXPECT_EQ(a.slot_count, 16u);
  EXPECT_EQ(a.data_offset, 4096u) << "16 words of 16 bytes, rounded to a page";
  EXPECT_EQ(a.file_size, 4096u + 16 * 4096);
  idx->publish_segment(s, a);
  SegmentRecord b{};
  s = idx->plan_segment(5, &b);  // 128 KiB slots: more than segment_bytes, so one
  ASSERT_NE(s, kNil);
  EXPECT_EQ(b.slot_count, 1u);
  EXPECT_NE(b.file_id, a.file_id);
  idx->publish_segment(s, b);
  SegmentRecord c{};
  s = idx->plan_segment(0, &c);
  ASSERT_NE(s, kNil);
  EXPECT_EQ(c.slot_count, 3u) << "what is left of the slot table";
  idx->publish_segment(s, c);
  EXPECT_EQ(idx->plan_segment(0, &c), kNil) << "tables full";
  EXPECT_EQ(idx->free_slots(), 20u);
  EXPECT_EQ(idx->check(), "");
  idx->rebuild();
  EXPECT_EQ(idx->free_slots(), 20u);
  EXPECT_EQ(idx->check(), "");
}

// A free slot that a reader still pins (the value was replaced under it) is
// not handed out until the pin is gone; the oldest freed slot goes first.
TEST(CacheIndex, PinnedFreeSlotsAreSkipped) {
  TempDir dir;
  IndexGeometry geo{16, 8};
  geo.segment_bytes = uint64_t{3} * 4096;
  geo.max_segments = 1;
  auto idx = CacheIndex::open(dir.path() / "c.index", geo, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  uint32_t a = publish(*idx, "a", 1, 10);
  uint32_t b = publish(*idx, "b", 2, 10);
  uint32_t c = publish(*idx, "c", 3, 10);
  idx->header().next_value_id = 4;
  ASSERT_NE(c, kNil);
  EXPECT_EQ(publish(*idx, "d", 4, 10), kNil) << "three slots, all used";
  uint32_t ga = idx->slot_index(idx->entry(a).segment, idx->entry(a).slot);
  uint32_t gb = idx->slot_index(idx->entry(b).segment, idx->entry(b).slot);
  idx->remove_entry(a);  // freed first, but still pinned by a reader
  idx->remove_entry(b);
  const SlotBusy a_pinned = [&](uint32_t s, uint32_t k) { return idx->slot_index(s, k) == ga; };
  EXPECT_EQ(idx->take_free_slot(0, a_pinned), gb);
  EXPECT_EQ(idx->take_free_slot(0, a_pinned), kNil) << "only the pinned one is left";
  EXPECT_EQ(idx->take_free_slot(0, never_busy), ga) << "unpinned: usable again";
  idx->free_slot(ga);
  idx->free_slot(gb);
  EXPECT_EQ(idx->check(), "");
}

TEST(CacheIndex, RebuildFinishesEveryInterruptedCommit) {
  TempDir dir;
  auto idx = CacheIndex::open(dir.path() / "c.index", {16, 8}, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  publish(*idx, "a", 1, 1);
  publish(*idx, "b", 2, 2);
  uint32_t c = publish(*idx, "c", 3, 3);
  idx->header().next_value_id = 10;
  auto fill = [&](uint32_t e, const char* key, uint64_t id) {
    Entry& en = idx->entry(e);
    std::memcpy(en.key, key, 1);
    en.key_size = 1;
    en.key_hash = checksum64(key, 1);
    en.value_id = id;
    en.size = id;
    uint32_t g = take_slot(*idx, id);
    en.segment = idx->slot_record(g).segment;
    en.slot = g - idx->segment(en.segment).first_slot;
    return g;
  };

  // A publish killed after its commit point: live, but on no chain or list,
  // its slot still kSlotWriting.
  uint32_t d = idx->allocate_entry();
  fill(d, "d", 4);
  idx->entry(d).state = kEntryLive;
  // A put killed between publishing the new value of "a" and removing the
  // old one: "a" twice; the newer value (5) must win.
  uint32_t a2 = idx->allocate_entry();
  fill(a2, "a", 5);
  idx->entry(a2).state = kEntryLive;
  // A removal killed after its commit point: free, still chained, its slot
  // not yet freed.
  idx->entry(c).state = kEntryFree;
  // An allocation killed before its commit point: off the free list, free.
  ASSERT_NE(idx->allocate_entry(), kNil);
  // A put killed with a slot taken but no lease yet: the slot is lost
  // until the rebuild.
  ASSERT_NE(take_slot(*idx, 1), kNil);
  // A put killed while writing: its lease keeps its slot.
  uint32_t gw = take_slot(*idx, 1);
  uint64_t wid = 0;
  ASSERT_NE(idx->add_write_lease(self_identity(), gw, &wid), kNil);
  EXPECT_NE(idx->check(), "");

  idx->rebuild();
  EXPECT_EQ(idx->check(), "");
  EXPECT_EQ(idx->header().live_entries, 3u);
  EXPECT_EQ(idx->entry(find(*idx, "a")).value_id, 5u);
  EXPECT_NE(find(*idx, "b"), kNil);
  EXPECT_EQ(find(*idx, "c"), kNil);
  EXPECT_EQ(idx->entry(find(*idx, "d")).value_id, 4u);
  EXPECT_EQ(idx->header().live_bytes, 5u + 2 + 4);
  EXPECT_EQ(idx->slot_record(gw).user, kSlotWriting);
  EXPECT_EQ(idx->free_slots(), idx->header().slots_used - 4) << "a, b, d and the lease's";
}

TEST(CacheIndex, ReclaimsLeasesOfDeadOwnersOnly) {
  TempDir dir;
  auto idx = CacheIndex::open(dir.path() / "c.index", {16, 8}, true, 0600);
  IndexLock lock(*idx, std::chrono::seconds(5));
  publish(*idx, "k", 1, 100);
  idx->header().next_value_id = 2;
  ProcessIdentity me = self_identity();
  ProcessIdentity ghost{me.pid, me.start_time + 1};  // our pid, another start: reused
  uint64_t id = 0;
  uint32_t mine = take_slot(*idx, 1), theirs = take_slot(*idx, 1);
  ASSERT_NE(idx->add_write_lease(me, mine, &id), kNil);
  ASSERT_NE(idx->add_write_lease(ghost, theirs, &id), kNil);
  const uint64_t free_before = idx->free_slots();

  EXPECT_EQ(idx->reclaim_leases(process_alive), 1u);
  EXPECT_EQ(idx->slot_record(theirs).user, kNil) << "the dead writer's slot is free";
  EXPECT_EQ(idx->slot_record(mine).user, kSlotWriting);
  EXPECT_EQ(idx->free_slots(), free_before + 1);
  EXPECT_EQ(idx->header().counters.leases_reclaimed, 1u);
  EXPECT_EQ(idx->check(), "");
}

// Slots on plain shared memory: the words are made LIVE by hand (the daemon
// registers them on volfs), and pin/unpin are compare-and-swaps on them. Two
// open files of one segment are two holders with two bits.
TEST(SegmentMap, PinsAreHolderBitsInTheWords) {
  TempDir dir;
  SegmentRecord r{};
  r.state = kSegmentReady;
  r.slot_count = 3;
  r.slot_bytes = 4096;
  r.data_offset = 4096;
  r.file_size = 4096 + 3 * 4096;
  r.file_id = 7;
  fs::path p = dir.path() / "seg";
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(r.file_size)), 0);
  int fd2 = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  SegmentMap a(fd, p, r, 0, false);
  SegmentMap b(fd2, p, r, 5, false);
  for (uint32_t k = 0; k < 3; ++k) a.word(k)->word = VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE);
  EXPECT_FALSE(a.busy(1));
  EXPECT_EQ(a.pin(1), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(a.pin(1), static_cast<int>(VOLFS_INTACT));  // nested: the bit once
  EXPECT_EQ(b.pin(1), static_cast<int>(VOLFS_INTACT));
  EXPECT_EQ(b.load_word(1), VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | 1u | (1u << 5));
  EXPECT_EQ(a.pins(), 2u);
  a.unpin(1);
  EXPECT_TRUE(b.busy(1));
  a.unpin(1);
  b.unpin(1);
  EXPECT_FALSE(a.busy(1));
  EXPECT_EQ(a.load_word(1), VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE));
  // What a purge leaves: PURGED; the next pin makes it LIVE and says so.
  a.word(2)->word = VOLFS_SLOT_WORD(VOLFS_SLOT_PURGED);
  EXPECT_EQ(b.pin(2), static_cast<int>(VOLFS_PURGED));
  EXPECT_EQ(a.load_word(2), VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | (1u << 5));
  b.unpin(2);
  // Data and words of one file, seen through both mappings.
  std::memcpy(a.data(0), "hello", 5);
  EXPECT_EQ(std::memcmp(b.data(0), "hello", 5), 0);
  EXPECT_EQ(a.data_offset(2), 4096u + 2 * 4096);
  // A word that is no slot: the pin fails (ESTALE), nothing changes.
  a.word(0)->word = 0;
  errno = 0;
  EXPECT_EQ(a.pin(0), -1);
  EXPECT_EQ(errno, ESTALE);
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
