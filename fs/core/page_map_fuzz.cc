// libFuzzer target: PageMap against a plain per-page array, driven by the input as a list of
// operations on a window of kPages pages, at page 0 or at the top of the 64-bit page space.
// After every operation the map must be valid(), equal the array page by page and hold nothing
// outside the window; update() must hand fn the old pieces in order and tell the observer
// exactly the pieces that changed. Build and run: docs/fuzzing.md.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/page_map.h"

namespace volfs::core {
namespace {

constexpr uint64_t kPages = 64;

// Not assert(): this must hold in every build of the target.
#define FUZZ_CHECK(cond, page)                                              \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "page_map_fuzz: %s failed (page %llu)\n", #cond, \
                   static_cast<unsigned long long>(page));                  \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

// Few distinct values per field, so that neighbours often hold equal flags and runs merge.
PageFlags consume_flags(FuzzedDataProvider& in) {
  PageFlags f;
  uint8_t bits = in.ConsumeIntegral<uint8_t>();
  f.resident = bits & 1;
  f.is_volatile = bits & 2;
  f.strict = bits & 4;
  f.purged = bits & 8;
  f.purge_id = (bits >> 4) & 1;
  f.prio = (bits >> 5) & 1;
  f.seq = bits >> 6;
  return f;
}

// Rewrites one field of a page's flags, keeping the others: the result depends on the old
// state, so pieces with different old flags get different new ones.
void set_field(PageFlags& f, uint8_t field, const PageFlags& v) {
  switch (field % 7) {
    case 0:
      f.resident = v.resident;
      break;
    case 1:
      f.is_volatile = v.is_volatile;
      break;
    case 2:
      f.strict = v.strict;
      break;
    case 3:
      f.purged = v.purged;
      break;
    case 4:
      f.purge_id = v.purge_id;
      break;
    case 5:
      f.prio = v.prio;
      break;
    default:
      f.seq = v.seq;
      break;
  }
}

class Harness {
 public:
  explicit Harness(uint64_t base) : base_(base), model_(kPages) {}

  // update() of [first, end) (window offsets), by `whole` (replace the flags) or by one field.
  void update(uint64_t first, uint64_t end, bool whole, uint8_t field, const PageFlags& v) {
    std::vector<PageFlags> want = model_;
    for (uint64_t p = first; p < end; ++p) {
      if (whole) {
        want[p] = v;
      } else {
        set_field(want[p], field, v);
      }
    }
    uint64_t next = first;  // the first page fn has not seen yet
    const PageFlags* prev_old = nullptr;
    PageFlags prev_old_copy;
    uint64_t observed_next = first;
    std::vector<bool> reported(kPages);
    map_.update(
        base_ + first, base_ + end,
        [&](PageRange r, PageFlags& f) {
          FUZZ_CHECK(r.first == base_ + next && r.end > r.first && r.end <= base_ + end, r.first);
          // Maximal pieces: neighbours differ (a hole next to a hole would be one piece).
          FUZZ_CHECK(!prev_old || !(*prev_old == f), r.first);
          for (uint64_t p = r.first - base_; p < r.end - base_; ++p) {
            FUZZ_CHECK(model_[p] == f, p);
          }
          prev_old_copy = f;
          prev_old = &prev_old_copy;
          if (whole) {
            f = v;
          } else {
            set_field(f, field, v);
          }
          next = r.end - base_;
        },
        [&](PageRange r, const PageFlags& old, const PageFlags& now) {
          FUZZ_CHECK(r.first >= base_ + observed_next && r.end <= base_ + next, r.first);
          FUZZ_CHECK(!(old == now), r.first);
          for (uint64_t p = r.first - base_; p < r.end - base_; ++p) {
            FUZZ_CHECK(model_[p] == old && want[p] == now, p);
            reported[p] = true;
          }
          observed_next = r.end - base_;
        });
    FUZZ_CHECK(first >= end || next == end, base_ + next);
    // The observer heard of every page that changed, and of no other.
    for (uint64_t p = 0; p < kPages; ++p) FUZZ_CHECK(reported[p] == !(model_[p] == want[p]), p);
    model_ = std::move(want);
  }

  // for_each() over [first, end) (absolute pages) against the model; pages outside the window
  // must be holes.
  void check_for_each(uint64_t first, uint64_t end) const {
    uint64_t pos = first;
    const PageFlags* prev = nullptr;
    PageFlags prev_copy;
    map_.for_each(first, end, [&](PageRange r, const PageFlags& f) {
      FUZZ_CHECK(r.first == pos && r.end > r.first && r.end <= end, r.first);
      FUZZ_CHECK(!prev || !(*prev == f), r.first);
      for (uint64_t p = r.first; p < r.end; ++p) FUZZ_CHECK(at(p) == f, p);
      prev_copy = f;
      prev = &prev_copy;
      pos = r.end;
    });
    FUZZ_CHECK(first >= end || pos == end, pos);
  }

  // The invariants, the whole window, the holes around it and the run count.
  void check_all() const {
    FUZZ_CHECK(map_.valid(), base_);
    check_for_each(base_, base_ + kPages);
    if (base_ > 0) check_for_each(base_ - 1, base_ + 1);
    size_t runs = 0;
    map_.for_each_run([&](PageRange r, const PageFlags& f) {
      FUZZ_CHECK(r.first >= base_ && r.end <= base_ + kPages && !(f == PageMap::kHole), r.first);
      ++runs;
    });
    size_t want_runs = 0;
    for (uint64_t p = 0; p < kPages; ++p) {
      bool starts = !(model_[p] == PageMap::kHole) && (p == 0 || !(model_[p - 1] == model_[p]));
      want_runs += starts;
    }
    FUZZ_CHECK(runs == map_.run_count() && runs == want_runs, base_);
  }

  uint64_t base() const { return base_; }

 private:
  const PageFlags& at(uint64_t page) const {
    if (page < base_ || page - base_ >= kPages) return PageMap::kHole;
    return model_[page - base_];
  }

  uint64_t base_;
  std::vector<PageFlags> model_;
  PageMap map_;
};

}  // namespace
}  // namespace volfs::core

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace volfs::core;
  FuzzedDataProvider in(data, size);
  // At page 0, or ending at UINT64_MAX: the top page numbers, where end arithmetic could wrap.
  Harness h(in.ConsumeBool() ? UINT64_MAX - kPages : 0);
  while (in.remaining_bytes() > 0) {
    uint8_t op = in.ConsumeIntegral<uint8_t>();
    // Offsets up to kPages, in either order: first >= end is an empty range.
    uint64_t first = in.ConsumeIntegralInRange<uint64_t>(0, kPages);
    uint64_t end = in.ConsumeIntegralInRange<uint64_t>(0, kPages);
    switch (op % 3) {
      case 0:
      case 1: {
        PageFlags v = consume_flags(in);
        h.update(first, end, op % 3 == 0, op >> 2, v);
        break;
      }
      default:
        h.check_for_each(h.base() + first, h.base() + end);
        break;
    }
    h.check_all();
  }
  return 0;
}
