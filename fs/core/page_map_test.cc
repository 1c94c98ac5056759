// Unit tests of PageMap against a plain per-page array: random updates over a
// small file, the run structure checked after every step.
#include "page_map.h"

#include <gtest/gtest.h>

#include <random>

namespace volfs::core {
namespace {

TEST(PageMapTest, HolesAreDefaultAndRunsMerge) {
  PageMap m;
  auto set_resident = [](PageRange, PageFlags& f) { f.resident = true; };
  auto ignore = [](PageRange, const PageFlags&, const PageFlags&) {};
  m.update(10, 20, set_resident, ignore);
  m.update(20, 30, set_resident, ignore);
  EXPECT_EQ(m.run_count(), 1u);
  m.update(
      15, 16, [](PageRange, PageFlags& f) { f.resident = false; }, ignore);
  EXPECT_EQ(m.run_count(), 2u);
  std::vector<std::pair<PageRange, bool>> pieces;
  m.for_each(0, 40, [&](PageRange r, const PageFlags& f) { pieces.push_back({r, f.resident}); });
  std::vector<std::pair<PageRange, bool>> want = {
      {{0, 10}, false}, {{10, 15}, true}, {{15, 16}, false}, {{16, 30}, true}, {{30, 40}, false}};
  EXPECT_EQ(pieces, want);
  EXPECT_TRUE(m.valid());
}

TEST(PageMapTest, ObserverSeesOnlyChanges) {
  PageMap m;
  uint64_t changed = 0;
  auto count = [&](PageRange r, const PageFlags&, const PageFlags&) { changed += r.pages(); };
  m.update(
      0, 8, [](PageRange, PageFlags& f) { f.resident = true; }, count);
  EXPECT_EQ(changed, 8u);
  changed = 0;
  m.update(
      4, 12, [](PageRange, PageFlags& f) { f.resident = true; }, count);
  EXPECT_EQ(changed, 4u);
}

TEST(PageMapTest, RandomUpdatesMatchPerPageModel) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr uint64_t kPages = 96;
  std::vector<PageFlags> model(kPages);
  PageMap m;
  for (int step = 0; step < 100000; ++step) {
    uint64_t a = rng() % kPages, b = rng() % (kPages + 1);
    if (a > b) std::swap(a, b);
    PageFlags value;
    value.resident = rng() & 1;
    value.is_volatile = rng() & 1;
    value.seq = rng() % 3;
    m.update(
        a, b, [&](PageRange, PageFlags& f) { f = value; },
        [](PageRange, const PageFlags&, const PageFlags&) {});
    for (uint64_t p = a; p < b; ++p) model[p] = value;
    ASSERT_TRUE(m.valid()) << "step " << step;
    uint64_t covered = 0;
    m.for_each(0, kPages, [&](PageRange r, const PageFlags& f) {
      ASSERT_EQ(r.first, covered);
      for (uint64_t p = r.first; p < r.end; ++p) ASSERT_EQ(model[p], f) << "page " << p;
      covered = r.end;
    });
    ASSERT_EQ(covered, kPages);
  }
}

}  // namespace
}  // namespace volfs::core
