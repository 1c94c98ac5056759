// Model-based tests of FileState, Accounting and PurgeQueue: the same seeded
// random operations drive the real structures and a per-page array, and the
// page states, the global counters and the purge order are compared after
// every step.
#include "file_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <set>

#include "alloc_failure_injection.h"

namespace volfs::core {
namespace {

PageRange pr(uint64_t a, uint64_t b) { return PageRange{a, b}; }

class FileStateTest : public ::testing::Test {
 protected:
  Accounting acc_{4096, 1 << 20};
  PurgeQueue queue_;
};

TEST_F(FileStateTest, MarkPurgeUnmarkReportsPurgedOnlyForCoveredPages) {
  FileState fs(1, acc_, queue_);
  fs.commit_write(fs.plan_write(pr(0, 8), false));
  fs.mark(pr(0, 8), 4, false, 1);
  EXPECT_EQ(acc_.snapshot().volatile_resident_pages, 8u);
  auto front = queue_.front();
  ASSERT_TRUE(front);
  auto victims = fs.purge(front->range, front->seq, 2, 7);
  ASSERT_EQ(victims.size(), 1u);
  EXPECT_EQ(victims[0], pr(0, 2));
  EXPECT_EQ(fs.unmark(pr(0, 4)), UnmarkResult::kBusy);
  fs.finish_purge(pr(0, 8), 7);
  EXPECT_EQ(fs.unmark(pr(4, 8)), UnmarkResult::kIntact);
  EXPECT_EQ(fs.unmark(pr(0, 4)), UnmarkResult::kPurged);
  auto s = acc_.snapshot();
  EXPECT_EQ(s.resident_pages, 6u);
  EXPECT_EQ(s.volatile_pages, 0u);
  EXPECT_EQ(s.purged_pages, 0u);
  EXPECT_EQ(queue_.size(), 0u);
}

TEST_F(FileStateTest, WritesIntoPurgingPagesAreDroppedAndStrictPurgedFail) {
  FileState fs(1, acc_, queue_);
  fs.commit_write(fs.plan_write(pr(0, 4), false));
  fs.mark(pr(0, 4), 0, true, 1);
  (void)fs.purge(pr(0, 4), 1, 1, 3);
  // Write-back of cached pages into the page being purged is dropped; a
  // write(2) into it fails, as for any strict purged page.
  WritePlan during = fs.plan_write(pr(0, 2), true);
  EXPECT_FALSE(during.eio);
  ASSERT_EQ(during.keep.size(), 1u);
  EXPECT_EQ(during.keep[0], pr(1, 2));
  EXPECT_TRUE(fs.plan_write(pr(0, 1), false).eio);
  fs.finish_purge(pr(0, 4), 3);
  EXPECT_TRUE(fs.plan_write(pr(0, 1), false).eio);
  EXPECT_FALSE(fs.plan_write(pr(1, 2), false).eio);
  EXPECT_TRUE(fs.has_strict_purged(pr(0, 4)));
  EXPECT_EQ(fs.unmark(pr(0, 4)), UnmarkResult::kPurged);
  EXPECT_FALSE(fs.plan_write(pr(0, 1), false).eio);
}

TEST_F(FileStateTest, PurgeOrderIsPriorityThenAge) {
  FileState a(1, acc_, queue_), b(2, acc_, queue_);
  a.commit_write(a.plan_write(pr(0, 4), false));
  b.commit_write(b.plan_write(pr(0, 4), false));
  a.mark(pr(0, 1), 4, false, 1);
  b.mark(pr(0, 1), 4, false, 2);
  a.mark(pr(1, 2), 7, false, 3);
  b.mark(pr(1, 2), 0, false, 4);
  std::vector<std::pair<uint64_t, uint64_t>> order;  // (ino, seq)
  while (auto e = queue_.front()) {
    FileState& f = e->ino == 1 ? a : b;
    ASSERT_EQ(f.purge(e->range, e->seq, 100, 1).size(), 1u);
    order.push_back({e->ino, e->seq});
  }
  std::vector<std::pair<uint64_t, uint64_t>> want = {{2, 4}, {1, 1}, {2, 2}, {1, 3}};
  EXPECT_EQ(order, want);
}

TEST_F(FileStateTest, RandomOperationsMatchPerPageModel) {
  const uint64_t seed = std::getenv("VOLFS_SEED")
                            ? std::strtoull(std::getenv("VOLFS_SEED"), nullptr, 0)
                            : std::random_device{}();
  const long steps =
      std::getenv("VOLFS_MODEL_STEPS") ? std::atol(std::getenv("VOLFS_MODEL_STEPS")) : 1000000;
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with VOLFS_SEED=" + std::to_string(seed) +
               ")");
  std::mt19937_64 rng(seed);
  constexpr uint64_t kPages = 48;
  constexpr int kFiles = 3;
  std::vector<std::unique_ptr<FileState>> files;
  files.reserve(kFiles);
  std::vector<std::vector<PageFlags>> model(kFiles, std::vector<PageFlags>(kPages));
  for (int i = 0; i < kFiles; ++i)
    files.push_back(std::make_unique<FileState>(i + 1, acc_, queue_));
  uint64_t next_seq = 1;
  uint32_t next_purge = 1;
  // Outstanding purges: (file, purge_id).
  std::vector<std::pair<int, uint32_t>> purging;

  auto range = [&] {
    uint64_t a = rng() % kPages, b = rng() % (kPages + 1);
    if (a > b) std::swap(a, b);
    return pr(a, b);
  };

  for (long step = 0; step < steps; ++step) {
    int fi = static_cast<int>(rng() % kFiles);
    FileState& fs = *files[fi];
    auto& m = model[fi];
    PageRange r = range();
    switch (rng() % 8) {
      case 0:
      case 1: {  // write
        bool writeback = rng() & 1;
        WritePlan plan = fs.plan_write(r, writeback);
        bool eio = false;
        uint64_t fresh = 0;
        for (uint64_t p = r.first; p < r.end; ++p) {
          const PageFlags& f = m[p];
          if (f.purge_id && writeback) continue;
          // Write-back into a strict purged page: dropped, not an error.
          if (writeback && f.is_volatile && f.strict && f.purged) continue;
          eio = eio || (f.is_volatile && f.strict && f.purged);
          fresh += !f.resident;
        }
        ASSERT_EQ(plan.eio, eio);
        ASSERT_EQ(plan.new_pages, fresh);
        if (eio) break;
        ASSERT_TRUE(acc_.try_charge(plan.new_pages));
        fs.commit_write(plan);
        for (uint64_t p = r.first; p < r.end; ++p) {
          const PageFlags& f = m[p];
          if (writeback && (f.purge_id || (f.is_volatile && f.strict && f.purged))) continue;
          m[p].resident = true;
        }
        break;
      }
      case 2: {  // mark
        uint8_t prio = rng() % 8;
        bool strict = rng() & 1;
        uint64_t seq = next_seq++;
        fs.mark(r, prio, strict, seq);
        for (uint64_t p = r.first; p < r.end; ++p) {
          PageFlags& f = m[p];
          f.purged = f.is_volatile && f.purged;
          f.is_volatile = true;
          f.strict = strict;
          f.prio = prio;
          f.seq = seq;
        }
        break;
      }
      case 3: {  // unmark
        bool busy = false, purged = false;
        for (uint64_t p = r.first; p < r.end; ++p) {
          busy = busy || m[p].purge_id;
          purged = purged || (m[p].is_volatile && m[p].purged);
        }
        UnmarkResult res = fs.unmark(r);
        if (busy) {
          ASSERT_EQ(res, UnmarkResult::kBusy);
          break;
        }
        ASSERT_EQ(res, purged ? UnmarkResult::kPurged : UnmarkResult::kIntact);
        for (uint64_t p = r.first; p < r.end; ++p) m[p] = PageFlags{.resident = m[p].resident};
        break;
      }
      case 4: {  // purge from the global queue front
        auto e = queue_.front();
        if (!e) break;
        // The model's view of the front: least (prio, seq) among purgeable pages.
        std::pair<uint8_t, uint64_t> best{255, UINT64_MAX};
        int best_file = -1;
        for (int f = 0; f < kFiles; ++f) {
          for (const PageFlags& pf : model[f]) {
            if (pf.purgeable() && std::make_pair(pf.prio, pf.seq) < best) {
              best = {pf.prio, pf.seq};
              best_file = f;
            }
          }
        }
        ASSERT_EQ(std::make_pair(e->prio, e->seq), best);
        ASSERT_EQ(e->ino, static_cast<uint64_t>(best_file + 1));
        uint64_t budget = 1 + rng() % 8;
        uint32_t id = next_purge++;
        auto victims = files[best_file]->purge(e->range, e->seq, budget, id);
        uint64_t freed = 0;
        for (auto& v : victims) freed += v.pages();
        ASSERT_GT(freed, 0u);
        acc_.uncharge(freed);
        auto& bm = model[best_file];
        for (uint64_t p = 0; p < kPages && budget > 0; ++p) {
          if (bm[p].purgeable() && bm[p].seq == e->seq) {
            bm[p].resident = false;
            bm[p].purged = true;
            bm[p].purge_id = id;
            --budget;
          }
        }
        purging.push_back({best_file, id});
        break;
      }
      case 5: {  // finish an outstanding purge
        if (purging.empty()) break;
        size_t k = rng() % purging.size();
        auto [f, id] = purging[k];
        purging.erase(purging.begin() + static_cast<long>(k));
        files[f]->finish_purge(pr(0, kPages), id);
        for (PageFlags& pf : model[f]) {
          if (pf.purge_id == id) pf.purge_id = 0;
        }
        break;
      }
      case 6: {  // drop (truncate, punch)
        if (rng() % 4) break;
        acc_.uncharge(fs.drop(r.first, r.end));
        for (uint64_t p = r.first; p < r.end; ++p) m[p] = PageFlags{};
        break;
      }
      case 7: {  // status
        RangeStatus s = fs.status(r);
        RangeStatus want;
        for (uint64_t p = r.first; p < r.end; ++p) {
          const PageFlags& f = m[p];
          (f.is_volatile ? want.volatile_pages : want.nonvolatile_pages)++;
          want.purged_pages += f.is_volatile && f.purged;
          want.strict_pages += f.is_volatile && f.strict;
          want.resident_pages += f.resident;
        }
        ASSERT_EQ(s.volatile_pages, want.volatile_pages);
        ASSERT_EQ(s.nonvolatile_pages, want.nonvolatile_pages);
        ASSERT_EQ(s.purged_pages, want.purged_pages);
        ASSERT_EQ(s.strict_pages, want.strict_pages);
        ASSERT_EQ(s.resident_pages, want.resident_pages);
        break;
      }
    }
    // Compare every page and the global counters after every step.
    AccountingSnapshot want{};
    for (int f = 0; f < kFiles; ++f) {
      uint64_t p = 0;
      files[f]->map().for_each(0, kPages, [&](PageRange r2, const PageFlags& pf) {
        for (; p < r2.end; ++p)
          ASSERT_EQ(pf, model[f][p]) << "file " << f << " page " << p << " step " << step;
      });
      for (const PageFlags& pf : model[f]) {
        want.resident_pages += pf.resident;
        want.volatile_pages += pf.is_volatile;
        want.volatile_resident_pages += pf.is_volatile && pf.resident;
        want.purged_pages += pf.is_volatile && pf.purged;
      }
    }
    AccountingSnapshot got = acc_.snapshot();
    ASSERT_EQ(got.resident_pages, want.resident_pages) << "step " << step;
    ASSERT_EQ(got.charged_pages, want.resident_pages) << "step " << step;
    ASSERT_EQ(got.volatile_pages, want.volatile_pages) << "step " << step;
    ASSERT_EQ(got.volatile_resident_pages, want.volatile_resident_pages) << "step " << step;
    ASSERT_EQ(got.purged_pages, want.purged_pages) << "step " << step;
  }
}

// Every operation of FileState, made to fail at its 1st, 2nd, ... allocation
// until it succeeds: after each failure the state is as before the call
// (strong guarantee), the map is valid, the global counters equal a recount
// and the purge queue holds exactly the marks with purgeable pages.
TEST_F(FileStateTest, AllocationFailureLeavesStateUnchanged) {
  const uint64_t seed = std::getenv("VOLFS_SEED")
                            ? std::strtoull(std::getenv("VOLFS_SEED"), nullptr, 0)
                            : std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with VOLFS_SEED=" + std::to_string(seed) +
               ")");
  std::mt19937_64 rng(seed);
  constexpr uint64_t kPages = 64;
  constexpr int kFiles = 2;
  std::vector<std::unique_ptr<FileState>> files;
  files.reserve(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    files.push_back(std::make_unique<FileState>(i + 1, acc_, queue_));
  }
  uint64_t next_seq = 1;
  uint32_t next_purge = 1;
  std::vector<std::pair<int, uint32_t>> purging;

  struct RunCopy {
    PageRange r;
    PageFlags f;
    bool operator==(const RunCopy&) const = default;
  };
  auto dump = [&](const FileState& fs) {
    std::vector<RunCopy> out;
    fs.map().for_each_run([&](PageRange r, const PageFlags& f) { out.push_back({r, f}); });
    return out;
  };
  auto check = [&](const std::string& what) {
    AccountingSnapshot want{};
    std::set<std::pair<uint8_t, uint64_t>> purgeable_marks;
    std::map<uint64_t, uint64_t> ino_of;
    for (int f = 0; f < kFiles; ++f) {
      ASSERT_TRUE(files[f]->map().valid()) << what;
      uint64_t resident = 0;
      files[f]->map().for_each_run([&](PageRange r, const PageFlags& pf) {
        uint64_t n = r.pages();
        resident += pf.resident ? n : 0;
        want.resident_pages += pf.resident ? n : 0;
        want.volatile_pages += pf.is_volatile ? n : 0;
        want.volatile_resident_pages += pf.is_volatile && pf.resident ? n : 0;
        want.purged_pages += pf.is_volatile && pf.purged ? n : 0;
        if (pf.purgeable()) {
          purgeable_marks.insert({pf.prio, pf.seq});
          ino_of[pf.seq] = files[f]->ino();
        }
      });
      ASSERT_EQ(files[f]->resident_pages(), resident) << what;
    }
    AccountingSnapshot got = acc_.snapshot();
    ASSERT_EQ(got.resident_pages, want.resident_pages) << what;
    ASSERT_EQ(got.charged_pages, want.resident_pages) << what;
    ASSERT_EQ(got.volatile_pages, want.volatile_pages) << what;
    ASSERT_EQ(got.volatile_resident_pages, want.volatile_resident_pages) << what;
    ASSERT_EQ(got.purged_pages, want.purged_pages) << what;
    std::set<std::pair<uint8_t, uint64_t>> queued;
    for (const PurgeEntry& e : queue_.entries()) {
      queued.insert({e.prio, e.seq});
      ASSERT_EQ(e.ino, ino_of[e.seq]) << what;
    }
    ASSERT_EQ(queued, purgeable_marks) << what;
  };
  auto range = [&] {
    uint64_t a = rng() % kPages, b = rng() % (kPages + 1);
    if (a > b) std::swap(a, b);
    return pr(a, b);
  };

  long failures = 0;
  for (int step = 0; step < 3000; ++step) {
    int fi = static_cast<int>(rng() % kFiles);
    FileState& fs = *files[fi];
    PageRange r = range();
    int op = static_cast<int>(rng() % 7);
    uint8_t prio = rng() % 4;
    bool strict = rng() & 1;
    bool writeback = rng() & 1;
    uint64_t budget = 1 + rng() % 16;
    size_t which = purging.empty() ? 0 : rng() % purging.size();
    static const char* const kNames[] = {"write",  "mark", "unmark",    "purge",
                                         "finish", "drop", "found_data"};
    // The operation, run with allocation failures armed; true if it ran.
    auto run = [&]() -> bool {
      switch (op) {
        case 0: {  // write, as Filesystem::write: charge, then commit
          WritePlan plan = fs.plan_write(r, writeback);
          if (plan.eio) return true;
          EXPECT_TRUE(acc_.try_charge(plan.new_pages));
          try {
            fs.commit_write(plan);
          } catch (...) {
            acc_.uncharge(plan.new_pages);
            throw;
          }
          return true;
        }
        case 1:
          fs.mark(r, prio, strict, next_seq);
          return true;
        case 2:
          (void)fs.unmark(r);
          return true;
        case 3: {
          auto e = queue_.front();
          if (!e) return true;
          FileState& owner = *files[e->ino - 1];
          auto victims = owner.purge(e->range, e->seq, budget, next_purge);
          g_fail_countdown = 0;  // the test's own bookkeeping
          uint64_t freed = 0;
          for (auto& v : victims) freed += v.pages();
          acc_.uncharge(freed);
          if (freed) purging.push_back({static_cast<int>(e->ino - 1), next_purge});
          return true;
        }
        case 4: {
          if (purging.empty()) return true;
          auto [f, id] = purging[which];
          files[f]->finish_purge(pr(0, kPages), id);
          purging.erase(purging.begin() + static_cast<long>(which));
          return true;
        }
        case 5:
          acc_.uncharge(fs.drop(r.first, r.end));
          return true;
        case 6:
          (void)fs.found_data(
              {pr(r.first, (r.first + r.end) / 2), pr((r.first + r.end) / 2 + 1, r.end)});
          return true;
      }
      return true;
    };
    for (long n = 1;; ++n) {
      auto before = dump(fs);
      auto before_other = dump(*files[1 - fi]);
      g_fail_countdown = n;
      bool threw = false;
      try {
        run();
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      g_fail_countdown = 0;
      check(std::string(kNames[op]) + " failing at allocation " + std::to_string(n) + ", step " +
            std::to_string(step));
      if (HasFatalFailure()) return;
      if (!threw) break;
      ++failures;
      // found_data commits range by range: each range all or nothing.
      if (op != 6) {
        ASSERT_TRUE(dump(fs) == before) << kNames[op] << " changed state, then threw";
        ASSERT_TRUE(dump(*files[1 - fi]) == before_other) << kNames[op];
      }
      if (op == 3)
        purging.erase(std::remove_if(purging.begin(), purging.end(),
                                     [&](auto& p) { return p.second == next_purge; }),
                      purging.end());
    }
    if (op == 1) ++next_seq;
    if (op == 3) ++next_purge;
  }
  EXPECT_GT(failures, 1000);
  for (auto& f : files) acc_.uncharge(f->drop(0, FileState::kEndOfFile));
}

}  // namespace
}  // namespace volfs::core
