// workloads_volatile.cc: the volatile-range workloads - MARK/UNMARK latency
// against native one-page anchors, its scaling with the number of ranges in a
// file, and purges (explicit, clean and with dirty mapped pages, and the delay
// of a watermark purge on a second, small instance).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <volfs/file.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "bench.h"
#include "mount.h"

namespace volbench {
namespace {

volfs::MarkOptions first_in_line() {
  volfs::MarkOptions o;
  o.priority = 0;  // purged before anything else on a shared mount
  return o;
}

double micros(double seconds) { return seconds * 1e6; }

void punch(int fd, uint64_t off, uint64_t len) {
  check(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                    static_cast<off_t>(len)) == 0,
        "fallocate(PUNCH_HOLE)");
}

// Nanoseconds of CLOCK_MONOTONIC (vDSO: no system call on this VM's tsc
// clocksource), as an integer: the slot rows time operations of a few ns.
int64_t now_ns() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// FUSE requests the daemon has served (volfs_stats.requests), this STATS included.
uint64_t requests_served(const volfs::File& f) { return f.stats().requests; }

// One slot of a file of the mount, as volbench's only holder pins it: page 0
// is the data, the word sits at the start of page 1. Empty (why() says why
// not) where the daemon has no slots or the file is not in passthrough.
class BenchSlot {
 public:
  explicit BenchSlot(const std::string& path) {
    const uint64_t ps = page_size();
    create_written(path, ps);  // the data page; the word's page stays a hole
    Fd fd = open_file(path, O_RDWR);
    check(::ftruncate(fd.get(), static_cast<off_t>(2 * ps)) == 0, "ftruncate");
    file_.emplace(volfs::File::open(path, O_RDWR));
    try {
      volfs::SlotRegistration reg = file_->register_slot({0, ps}, ps);
      map_ = file_->map(0, 2 * ps);
      slot_.emplace(reinterpret_cast<volfs_slot_word*>(map_.data<char>() + ps), reg.holder,
                    reg.created);
      if (reg.created) slot_->unpin();  // the loops start unpinned
    } catch (const std::system_error& e) {
      why_ = e.what();
    }
  }
  bool ok() const { return slot_.has_value(); }
  const std::string& why() const { return why_; }
  volfs::File& file() { return *file_; }
  volfs::Slot& slot() { return *slot_; }

 private:
  std::optional<volfs::File> file_;
  volfs::Mapping map_;
  std::optional<volfs::Slot> slot_;
  std::string why_;
};

std::string pow10_name(uint64_t n) {
  int e = static_cast<int>(std::lround(std::log10(static_cast<double>(n))));
  uint64_t p = 1;
  for (int i = 0; i < e; ++i) p *= 10;
  return p == n ? "10^" + std::to_string(e) : std::to_string(n);
}

}  // namespace

// ----------------------------------------------------------------------------
// mark_unmark

void run_mark_unmark(Env& env) {
  const uint64_t ps = page_size();
  constexpr uint64_t kPages = 256;
  const uint64_t iters = env.cfg.latency_ops;
  Buffer buf = pattern_buffer(ps);

  std::string vpath = env.vdir + "/mark_unmark";
  std::string bpath = env.bdir + "/mark_unmark";
  create_written(vpath, kPages * ps);
  {
    volfs::File vf = volfs::File::open(vpath, O_RDWR);
    Fd bfd = create_written(bpath, kPages * ps);
    void* anon_p =
        ::mmap(nullptr, kPages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(anon_p != MAP_FAILED, "mmap anonymous");
    char* anon = static_cast<char*>(anon_p);

    const std::string w = "mark_unmark";
    const Target at_most_15{Target::kVolfsAtMost, 15};
    Row mark_med = make_row(w, "MARK 1 page, median", "us", Better::kLower, at_most_15);
    Row mark_p99 = make_row(w, "MARK 1 page, p99", "us", Better::kLower);
    Row unmark_med = make_row(w, "UNMARK 1 page, median", "us", Better::kLower, at_most_15);
    Row unmark_p99 = make_row(w, "UNMARK 1 page, p99", "us", Better::kLower);
    Row status_med = make_row(w, "GET_STATUS 1 page, median", "us", Better::kLower);
    Row bmark_med = make_row(w, "MARK x64 batch, per range", "us", Better::kLower);
    Row bunmark_med = make_row(w, "UNMARK x64 batch, per rng", "us", Better::kLower);
    Row dontneed_med = make_row(w, "MADV_DONTNEED 1 page, med", "us", Better::kLower);
    Row dontneed_p99 = make_row(w, "MADV_DONTNEED 1 page, p99", "us", Better::kLower);
    Row free_med = make_row(w, "MADV_FREE 1 page, median", "us", Better::kLower);
    Row free_p99 = make_row(w, "MADV_FREE 1 page, p99", "us", Better::kLower);
    // Slots: pin and unpin are a compare-and-swap on a word of the mapped
    // file, no system call; the anchor is the same CAS on private memory.
    BenchSlot bslot(env.vdir + "/mark_unmark_slot");
    Row pin_med = make_row(w, "slot pin, median", "ns", Better::kLower);
    Row pin_p99 = make_row(w, "slot pin, p99", "ns", Better::kLower);
    Row unpin_med = make_row(w, "slot unpin, median", "ns", Better::kLower);
    Row unpin_p99 = make_row(w, "slot unpin, p99", "ns", Better::kLower);
    Row pair_mean = make_row(w, "slot pin+unpin, untimed", "ns", Better::kLower);
    Row clock_pair = make_row(w, "clock pair alone, median", "ns", Better::kLower);
    clock_pair.baseline_label = "empty interval";
    Row slot_requests = make_row(w, "FUSE requests, slot loop", "count", Better::kLower,
                                 Target{Target::kVolfsAtMost, 0});
    for (Row* r : {&pin_med, &pin_p99, &unpin_med, &unpin_p99, &pair_mean}) {
      r->baseline_label = "CAS, private memory";
    }
    uint64_t private_word = 0;
    for (Row* r : {&mark_med, &mark_p99, &unmark_med, &unmark_p99, &bmark_med, &bunmark_med}) {
      r->baseline_label = "punch 1 page (tmpfs)";
    }
    for (Row* r : {&dontneed_med, &dontneed_p99, &free_med, &free_p99}) {
      r->baseline_label = "anonymous page";
    }

    for (int rep = 0; rep < env.cfg.reps; ++rep) {
      std::vector<double> mk, um, st, pu, dn, fr, bmk, bum;
      for (uint64_t i = 0; i < iters; ++i) {
        volfs::Range r{(i % kPages) * ps, ps};
        double t0 = now_sec();
        vf.mark_volatile(r);
        double t1 = now_sec();
        volfs::UnmarkResult res = vf.unmark(r);
        double t2 = now_sec();
        if (res.purged()) throw std::runtime_error("mark_unmark: a page was purged meanwhile");
        mk.push_back(micros(t1 - t0));
        um.push_back(micros(t2 - t1));
      }
      for (uint64_t i = 0; i < iters / 4; ++i) {
        volfs::Range r{(i % kPages) * ps, ps};
        double t0 = now_sec();
        (void)vf.status(r);
        st.push_back(micros(now_sec() - t0));
      }
      // Every other page of the first half, in one call each way.
      std::vector<volfs::Range> batch;
      for (uint64_t k = 0; k < VOLFS_BATCH_MAX; ++k) batch.push_back({2 * k * ps, ps});
      for (uint64_t i = 0; i < iters / 16; ++i) {
        double t0 = now_sec();
        vf.mark_volatile_ranges(batch);
        double t1 = now_sec();
        std::vector<volfs::UnmarkResult> res = vf.unmark_ranges(batch);
        double t2 = now_sec();
        for (const volfs::UnmarkResult& x : res) {
          if (x.purged()) throw std::runtime_error("mark_unmark: a page was purged meanwhile");
        }
        bmk.push_back(micros(t1 - t0) / VOLFS_BATCH_MAX);
        bum.push_back(micros(t2 - t1) / VOLFS_BATCH_MAX);
      }
      for (uint64_t i = 0; i < iters; ++i) {
        uint64_t off = (i % kPages) * ps;
        check(
            ::pwrite(bfd.get(), buf.get(), ps, static_cast<off_t>(off)) == static_cast<ssize_t>(ps),
            "pwrite");
        double t0 = now_sec();
        punch(bfd.get(), off, ps);
        pu.push_back(micros(now_sec() - t0));
      }
      for (int advice : {MADV_DONTNEED, MADV_FREE}) {
        auto& out = advice == MADV_DONTNEED ? dn : fr;
        for (uint64_t i = 0; i < iters; ++i) {
          char* page = anon + (i % kPages) * ps;
          page[0] = static_cast<char>(i | 1);  // populate (and dirty) it again
          double t0 = now_sec();
          check(::madvise(page, ps, advice) == 0, "madvise");
          out.push_back(micros(now_sec() - t0));
        }
      }
      if (bslot.ok()) {
        std::vector<double> pn, upn, cas_set, cas_clear;
        volfs::Slot& slot = bslot.slot();
        const uint64_t before = requests_served(bslot.file());
        for (uint64_t i = 0; i < iters; ++i) {
          int64_t t0 = now_ns();
          volfs::UnmarkResult res = slot.pin();
          int64_t t1 = now_ns();
          slot.unpin();
          int64_t t2 = now_ns();
          if (res.purged()) throw std::runtime_error("mark_unmark: the slot was purged meanwhile");
          pn.push_back(static_cast<double>(t1 - t0));
          upn.push_back(static_cast<double>(t2 - t1));
        }
        // Back to back, one clock read around the lot: the per-op clock
        // reads above (~20 ns a pair here) are in every timed figure.
        int64_t t0 = now_ns();
        for (uint64_t i = 0; i < iters; ++i) {
          (void)slot.pin();
          slot.unpin();
        }
        const double pair_ns = static_cast<double>(now_ns() - t0) / static_cast<double>(iters);
        // Minus the two STATS calls themselves: `before` counts its own.
        const uint64_t after = requests_served(bslot.file());
        if (before > 0) {  // 0: a daemon that does not count its requests
          slot_requests.volfs.v.push_back(static_cast<double>(after - before - 1));
        }
        // The anchor: set, then clear, a bit of a private word by CAS.
        auto cas = [&](uint64_t want_bit, bool set) {
          uint64_t w = __atomic_load_n(&private_word, __ATOMIC_ACQUIRE);
          while (!__atomic_compare_exchange_n(&private_word, &w, set ? w | want_bit : w & ~want_bit,
                                              false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
          }
        };
        for (uint64_t i = 0; i < iters; ++i) {
          int64_t c0 = now_ns();
          cas(1, true);
          int64_t c1 = now_ns();
          cas(1, false);
          int64_t c2 = now_ns();
          cas_set.push_back(static_cast<double>(c1 - c0));
          cas_clear.push_back(static_cast<double>(c2 - c1));
        }
        int64_t c0 = now_ns();
        for (uint64_t i = 0; i < iters; ++i) {
          cas(1, true);
          cas(1, false);
        }
        const double cas_pair_ns = static_cast<double>(now_ns() - c0) / static_cast<double>(iters);
        std::vector<double> empty;
        for (uint64_t i = 0; i < iters; ++i) {
          int64_t e0 = now_ns();
          empty.push_back(static_cast<double>(now_ns() - e0));
        }
        clock_pair.baseline.v.push_back(percentile(empty, 0.5));
        pin_med.volfs.v.push_back(percentile(pn, 0.5));
        pin_p99.volfs.v.push_back(percentile(pn, 0.99));
        unpin_med.volfs.v.push_back(percentile(upn, 0.5));
        unpin_p99.volfs.v.push_back(percentile(upn, 0.99));
        pair_mean.volfs.v.push_back(pair_ns);
        pin_med.baseline.v.push_back(percentile(cas_set, 0.5));
        pin_p99.baseline.v.push_back(percentile(cas_set, 0.99));
        unpin_med.baseline.v.push_back(percentile(cas_clear, 0.5));
        unpin_p99.baseline.v.push_back(percentile(cas_clear, 0.99));
        pair_mean.baseline.v.push_back(cas_pair_ns);
      }
      mark_med.volfs.v.push_back(percentile(mk, 0.5));
      mark_p99.volfs.v.push_back(percentile(mk, 0.99));
      unmark_med.volfs.v.push_back(percentile(um, 0.5));
      unmark_p99.volfs.v.push_back(percentile(um, 0.99));
      status_med.volfs.v.push_back(percentile(st, 0.5));
      bmark_med.volfs.v.push_back(percentile(bmk, 0.5));
      bunmark_med.volfs.v.push_back(percentile(bum, 0.5));
      for (Row* r : {&mark_med, &unmark_med, &bmark_med, &bunmark_med}) {
        r->baseline.v.push_back(percentile(pu, 0.5));
      }
      for (Row* r : {&mark_p99, &unmark_p99}) r->baseline.v.push_back(percentile(pu, 0.99));
      dontneed_med.baseline.v.push_back(percentile(dn, 0.5));
      dontneed_p99.baseline.v.push_back(percentile(dn, 0.99));
      free_med.baseline.v.push_back(percentile(fr, 0.5));
      free_p99.baseline.v.push_back(percentile(fr, 0.99));
    }
    ::munmap(anon, kPages * ps);
    mark_med.note = std::to_string(iters) +
                    " MARK+UNMARK pairs of one resident page per rep (file of 256 pages); the "
                    "tmpfs anchor re-writes the page (untimed) before each punch";
    status_med.note = "a read-only ioctl of the same size: the FUSE round trip under MARK/UNMARK";
    bmark_med.note =
        "VOLFS_IOC_MARK_BATCH / _UNMARK_BATCH of 64 one-page ranges (every other "
        "page), one call each; the call's time divided by 64";
    dontneed_med.note = "native anchors: the page is re-dirtied (untimed) before each madvise";
    for (Row* r : {&mark_med, &mark_p99, &unmark_med, &unmark_p99, &status_med, &bmark_med,
                   &bunmark_med, &dontneed_med, &dontneed_p99, &free_med, &free_p99}) {
      env.report.add(*r);
    }
    if (bslot.ok()) {
      pin_med.note = std::to_string(iters) +
                     " pin+unpin pairs of one slot (one page, its word in the next page) per "
                     "rep, one thread, no contention, each op timed by a CLOCK_MONOTONIC pair; "
                     "the anchor is a CAS setting and clearing a bit of a private word, timed "
                     "the same way";
      pair_mean.note = "the same pairs back to back, one clock pair around all: per pair";
      clock_pair.note =
          "two clock reads with nothing between: the floor under every timed op above";
      slot_requests.note =
          "FUSE requests the daemon served during the slot loops (STATS.requests after - "
          "before - 1, the STATS calls themselves not counted)";
      for (Row* r :
           {&pin_med, &pin_p99, &unpin_med, &unpin_p99, &pair_mean, &clock_pair, &slot_requests}) {
        env.report.add(*r);
      }
    } else {
      env.report.skipped("mark_unmark slots", bslot.why());
    }
  }  // files closed
  unlink_if_exists(vpath);
  unlink_if_exists(bpath);
  unlink_if_exists(env.vdir + "/mark_unmark_slot");
}

// ----------------------------------------------------------------------------
// range_scaling

void run_range_scaling(Env& env) {
  const uint64_t ps = page_size();
  std::vector<uint64_t> ns;
  for (uint64_t n = 1000; n <= env.cfg.ranges_max; n *= 10) ns.push_back(n);
  const uint64_t nmax = ns.back();
  const uint64_t iters =
      std::max<uint64_t>(200, std::min<uint64_t>(env.cfg.latency_ops / 10, 2000));
  Buffer buf = pattern_buffer(ps);

  std::string path = env.vdir + "/range_scaling";
  Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  check(::ftruncate(fd.get(), static_cast<off_t>((2 * nmax + 2) * ps)) == 0, "ftruncate");
  volfs::File f = volfs::File::open(path, O_RDWR);
  // A one-page file beside it: GET_STATUS on it is the bare FUSE round trip,
  // timed between the pairs so that a change of machine load between the
  // steps shows up there rather than as "scaling".
  const std::string ref_path = env.vdir + "/range_scaling_ref";
  create_written(ref_path, ps);
  volfs::File ref = volfs::File::open(ref_path, O_RDWR);
  const uint64_t rss0 = env.daemon_pid > 0 ? vm_rss_bytes(env.daemon_pid) : 0;

  std::vector<Row> mark_rows, unmark_rows, trip_rows;
  std::string build_note;
  uint64_t marked = 0;
  auto write_page = [&](uint64_t page) {
    check(::pwrite(fd.get(), buf.get(), ps, static_cast<off_t>(page * ps)) ==
              static_cast<ssize_t>(ps),
          "pwrite");
  };
  for (uint64_t n : ns) {
    // Ranges are pages 0, 2, 4, ...: each written (resident, so it has a
    // purge-queue entry) and marked on its own, so no two merge.
    double t_write = 0, t_mark = 0;
    const uint64_t before = marked;
    for (; marked < n; ++marked) {
      double t0 = now_sec();
      write_page(2 * marked);
      double t1 = now_sec();
      f.mark_volatile({2 * marked * ps, ps});
      double t2 = now_sec();
      t_write += t1 - t0;
      t_mark += t2 - t1;
      if (marked % 8192 == 8191) drop_page_cache(fd.get());  // keep the FUSE copies small
    }
    const double added = static_cast<double>(n - before);
    drop_page_cache(fd.get());
    volfs::RangeStatus st = f.status({0, 0});
    if (st.volatile_pages != n) {
      throw std::runtime_error("range_scaling: " + std::to_string(st.volatile_pages) +
                               " volatile pages, expected " + std::to_string(n));
    }
    build_note += (build_note.empty() ? "" : "; ") + pow10_name(n) + ": pwrite " +
                  fmt(micros(t_write / added), 3) + " us + MARK " + fmt(micros(t_mark / added), 3) +
                  " us per range";
    // The timed page: an unmarked, written page in the middle of the ranges.
    const uint64_t mid = 2 * (n / 2) + 1;
    write_page(mid);
    Row mk = make_row("range_scaling", "MARK @" + pow10_name(n) + " ranges", "us", Better::kLower);
    Row um =
        make_row("range_scaling", "UNMARK @" + pow10_name(n) + " ranges", "us", Better::kLower);
    Row rt =
        make_row("range_scaling", "round trip @" + pow10_name(n) + " ranges", "us", Better::kLower);
    for (int rep = 0; rep < env.cfg.reps; ++rep) {
      std::vector<double> a, b, c;
      for (uint64_t i = 0; i < iters; ++i) {
        double t1 = now_sec();
        f.mark_volatile({mid * ps, ps});
        double t2 = now_sec();
        volfs::UnmarkResult res = f.unmark({mid * ps, ps});
        double t3 = now_sec();
        (void)ref.status({0, ps});
        double t4 = now_sec();
        if (res.purged()) throw std::runtime_error("range_scaling: page purged meanwhile");
        a.push_back(micros(t2 - t1));
        b.push_back(micros(t3 - t2));
        c.push_back(micros(t4 - t3));
      }
      mk.volfs.v.push_back(percentile(a, 0.5));
      um.volfs.v.push_back(percentile(b, 0.5));
      rt.volfs.v.push_back(percentile(c, 0.5));
    }
    mark_rows.push_back(mk);
    unmark_rows.push_back(um);
    trip_rows.push_back(rt);
  }
  const uint64_t rss1 = env.daemon_pid > 0 ? vm_rss_bytes(env.daemon_pid) : 0;

  mark_rows.front().note = std::to_string(iters) +
                           " MARK+UNMARK pairs of one page per rep, medians; ranges built by "
                           "pwrite+MARK of every other page of a sparse file: " +
                           build_note;
  trip_rows.front().note =
      "GET_STATUS of a one-page file, timed between the pairs: the FUSE "
      "round trip at the time of each step";
  for (auto* rows : {&mark_rows, &unmark_rows, &trip_rows}) {
    for (const Row& r : *rows) env.report.add(r);
  }
  if (ns.size() > 1) {
    for (auto* rows : {&mark_rows, &unmark_rows}) {
      const Row& lo = rows->front();
      const Row& hi = rows->back();
      std::string op = rows == &mark_rows ? "MARK" : "UNMARK";
      Row g = make_row("range_scaling",
                       op + " " + pow10_name(ns.back()) + " / " + pow10_name(ns.front()), "x",
                       Better::kLower, {Target::kVolfsAtMost, 2.0});
      // The same growth with each step's cost taken net of its round trip.
      Row net = make_row("range_scaling",
                         op + " " + pow10_name(ns.back()) + " / " + pow10_name(ns.front()) + " net",
                         "x", Better::kLower);
      for (size_t i = 0; i < lo.volfs.v.size(); ++i) {
        g.volfs.v.push_back(hi.volfs.v[i] / lo.volfs.v[i]);
        net.volfs.v.push_back(hi.volfs.v[i] / trip_rows.back().volfs.v[i] /
                              (lo.volfs.v[i] / trip_rows.front().volfs.v[i]));
      }
      g.note = "per-rep ratio of the medians; lower is better";
      net.note = "the same, each step divided by its own round trip (removes load drift)";
      env.report.add(g);
      env.report.add(net);
    }
  }
  if (env.daemon_pid > 0) {
    Row mem = make_row("range_scaling", "daemon RSS per range", "bytes", Better::kLower);
    mem.volfs.v.push_back(static_cast<double>(rss1 - std::min(rss0, rss1)) /
                          static_cast<double>(nmax));
    mem.note = "growth of the daemon's VmRSS over " + pow10_name(nmax) +
               " ranges (page map, marks, purge queue), one sample";
    env.report.add(mem);
  }
  unlink_if_exists(path);
  unlink_if_exists(ref_path);
}

// ----------------------------------------------------------------------------
// purge

namespace {

// A child process that maps a file MAP_SHARED and dirties every page, then
// keeps the mapping until destroyed, so a purge meets dirty mapped pages.
class Dirtier {
 public:
  Dirtier(const std::string& path, uint64_t size) {
    int ready[2], go[2];
    check(::pipe2(ready, O_CLOEXEC) == 0 && ::pipe2(go, O_CLOEXEC) == 0, "pipe");
    const char* p = path.c_str();
    const uint64_t ps = page_size();
    pid_t parent = ::getpid();
    pid_ = ::fork();
    check(pid_ >= 0, "fork");
    if (pid_ == 0) {
      // Only async-signal-safe calls: the parent has other threads.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::close(ready[0]);
      ::close(go[1]);
      int fd = ::open(p, O_RDWR);
      if (fd < 0) ::_exit(2);
      void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) ::_exit(3);
      char* c = static_cast<char*>(m);
      for (uint64_t off = 0; off < size; off += ps) c[off] = static_cast<char>(off / ps + 1);
      char x = 'r';
      if (::write(ready[1], &x, 1) != 1) ::_exit(4);
      (void)!::read(go[0], &x, 1);
      ::munmap(m, size);
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(go[0]);
    go_ = go[1];
    char x = 0;
    ssize_t n = ::read(ready[0], &x, 1);
    ::close(ready[0]);
    if (n != 1) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      throw std::runtime_error("dirtying child failed, status " + std::to_string(status));
    }
  }
  ~Dirtier() {
    if (go_ >= 0) ::close(go_);  // EOF: the child unmaps and exits
    if (pid_ > 0) {
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }
  Dirtier(const Dirtier&) = delete;
  Dirtier& operator=(const Dirtier&) = delete;

 private:
  pid_t pid_ = -1;
  int go_ = -1;
};

// Waits (up to 5 s) until the daemon's store no longer holds more than
// `bytes`: a deleted file is freed after the kernel's FORGET, asynchronously.
void wait_store_at_most(const Env& env, uint64_t bytes) {
  if (env.daemon_pid <= 0) return;
  double deadline = now_sec() + 5;
  while (store_bytes(env.daemon_pid) > bytes && now_sec() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void purge_explicit(Env& env, bool dirty) {
  const uint64_t size = env.cfg.size;
  Row row = make_row("purge", dirty ? "1 range, dirty mapped" : "1 range, clean", "GB/s",
                     Better::kHigher);
  if (!dirty) row.target = {Target::kRatioAtLeast, 0.8};
  row.baseline_label = "punch file (tmpfs)";
  uint64_t short_purges = 0, max_dirty = 0, min_dirty = UINT64_MAX, store_left = 0;
  double dirty_setup = 0;
  alternate(env.cfg.reps, [&](int side, int) {
    std::string path = (side == 0 ? env.vdir : env.bdir) + "/purge";
    const uint64_t store0 = side == 0 && env.daemon_pid > 0 ? store_bytes(env.daemon_pid) : 0;
    Fd fd = create_written(path, size);
    std::unique_ptr<Dirtier> dirtier;
    if (side == 0) {
      volfs::File f = volfs::File::open(path, O_RDWR);
      f.mark_volatile({0, 0}, first_in_line());
      if (dirty) {
        double t = now_sec();
        dirtier = std::make_unique<Dirtier>(path, size);
        dirty_setup = std::max(dirty_setup, now_sec() - t);
        uint64_t d = cache_state(fd.get(), size).dirty;
        max_dirty = std::max(max_dirty, d);
        min_dirty = std::min(min_dirty, d);
      }
      double t0 = now_sec();
      uint64_t purged = f.purge(size);
      double t1 = now_sec();
      if (purged < size) ++short_purges;
      if (env.daemon_pid > 0) {
        uint64_t now = store_bytes(env.daemon_pid);
        store_left = std::max(store_left, now - std::min(now, store0));
      }
      row.volfs.v.push_back(static_cast<double>(purged) / (t1 - t0) / 1e9);
    } else {
      if (dirty) dirtier = std::make_unique<Dirtier>(path, size);
      double t0 = now_sec();
      punch(fd.get(), 0, size);
      double t1 = now_sec();
      row.baseline.v.push_back(static_cast<double>(size) / (t1 - t0) / 1e9);
    }
    dirtier.reset();
    fd = Fd();
    unlink_if_exists(path);
    if (side == 0) wait_store_at_most(env, store0);
  });
  std::string note = "VOLFS_IOC_PURGE of " + human_bytes(size) +
                     " marked volatile in one MARK (answers once every mapping sees it) vs "
                     "fallocate(PUNCH_HOLE) of the whole tmpfs file";
  if (dirty) {
    note += "; a child mapped the file and wrote every page first; FUSE pages dirty at purge: " +
            std::to_string(min_dirty) + "-" + std::to_string(max_dirty) + " of " +
            std::to_string(size / page_size()) + " (dirtying through the FUSE mapping took up to " +
            fmt(dirty_setup, 3) + " s, untimed)";
  } else {
    note +=
        "; passthrough: the store holds the only copy; cached io mode: the FUSE page cache "
        "also holds clean copies from the write; the baseline frees pages its own CPU wrote, "
        "the daemon's purge may run on another CPU, which costs a punch 15-25% here "
        "(docs/benchmarks.md)";
  }
  if (env.daemon_pid > 0) note += "; store left after purge: " + human_bytes(store_left);
  if (short_purges) note += "; WARNING: " + std::to_string(short_purges) + " purges came up short";
  row.note = note;
  env.report.add(row);
}

// A second, small instance with watermarks: how long from the write that
// crosses purge_high until the memory is back.
void purge_pressure(Env& env) {
  const uint64_t ps = page_size();
  const uint64_t limit = env.cfg.size;
  const uint64_t high = limit / 100 * 80, low = limit / 100 * 50;
  const uint64_t vsize = limit / 100 * 70 / kMiB * kMiB;
  std::string dir = make_temp_dir(env.scratch, "pressure");
  std::string opts = "size=" + std::to_string(limit / kMiB) + "m,purge_high=80,purge_low=50";
  PrivateMount m(env.daemon_bin, dir, opts);
  Buffer buf = pattern_buffer(kChunk);

  Row r_stats = make_row("purge", "pressure->stats at low wm", "ms", Better::kLower);
  Row r_store = make_row("purge", "pressure->store freed", "ms", Better::kLower);
  Row r_cache = make_row("purge", "pressure->page cache freed", "ms", Better::kLower);
  int64_t avail_back_kib = 0;
  uint64_t purged_pages = 0;
  int timeouts = 0;
  for (int rep = 0; rep < env.cfg.reps; ++rep) {
    std::string vpath = m.mountpoint() + "/volatile", npath = m.mountpoint() + "/filler";
    {
      Fd vfd = create_written(vpath, vsize);
      volfs::File vf = volfs::File::open(vpath, O_RDWR);
      vf.mark_volatile({0, 0}, first_in_line());
      volfs_stats s0 = vf.stats();
      uint64_t stored = s0.resident_pages * ps;
      uint64_t avail0 = meminfo_kib("MemAvailable");
      Fd nfd = open_file(npath, O_RDWR | O_CREAT | O_TRUNC);
      double t0 = 0;
      for (uint64_t off = 0;; off += kChunk) {
        double t = now_sec();
        check(::pwrite(nfd.get(), buf.get(), kChunk, static_cast<off_t>(off)) ==
                  static_cast<ssize_t>(kChunk),
              "pwrite filler");
        stored += kChunk;
        if (stored > high) {
          t0 = t;  // the write that crossed purge_high
          break;
        }
      }
      const uint64_t settle = low + kMiB;
      double t_stats = -1, t_store = -1, t_cache = -1;
      const double deadline = t0 + 10;
      uint64_t purged = 0;
      while ((t_stats < 0 || t_store < 0 || t_cache < 0) && now_sec() < deadline) {
        volfs_stats s = vf.stats();
        double t = now_sec();
        purged = s.pages_purged_total - s0.pages_purged_total;
        if (t_stats < 0 && s.resident_pages * ps <= settle) t_stats = t - t0;
        if (t_store < 0 && store_bytes(m.pid()) <= settle) t_store = now_sec() - t0;
        if (t_cache < 0 && purged > 0 &&
            cache_state(vfd.get(), vsize).cached <= vsize / ps - std::min(vsize / ps, purged)) {
          t_cache = now_sec() - t0;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (t_stats < 0 || t_store < 0 || t_cache < 0) ++timeouts;
      avail_back_kib =
          static_cast<int64_t>(meminfo_kib("MemAvailable")) - static_cast<int64_t>(avail0);
      purged_pages = purged;
      if (t_stats >= 0) r_stats.volfs.v.push_back(t_stats * 1e3);
      if (t_store >= 0) r_store.volfs.v.push_back(t_store * 1e3);
      if (t_cache >= 0) r_cache.volfs.v.push_back(t_cache * 1e3);
    }  // files closed
    unlink_if_exists(vpath);
    unlink_if_exists(npath);
    double wait_until = now_sec() + 5;
    while (store_bytes(m.pid()) > 0 && now_sec() < wait_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  m.stop();
  r_stats.note = "second instance -o " + opts + ": " + human_bytes(vsize) +
                 " volatile, then 1 MiB writes past 80%; time from the crossing write until "
                 "VOLFS_IOC_STATS shows <= 50%, the daemon's stores hold <= 50%, and the "
                 "FUSE page cache of the purged pages is gone; last rep purged " +
                 human_bytes(purged_pages * ps) + ", MemAvailable then " +
                 (avail_back_kib >= 0 ? "+" : "") + std::to_string(avail_back_kib / 1024) +
                 " MiB vs before the filler (system-wide, noisy)";
  if (timeouts) r_stats.note += "; WARNING: " + std::to_string(timeouts) + " reps timed out (10 s)";
  env.report.add(r_stats);
  env.report.add(r_store);
  env.report.add(r_cache);
}

}  // namespace

void run_purge(Env& env) {
  purge_explicit(env, /*dirty=*/false);
  purge_explicit(env, /*dirty=*/true);
  if (::access(env.daemon_bin.c_str(), X_OK) != 0) {
    env.report.skipped("purge pressure", "needs the volfs daemon next to volbench (" +
                                             env.daemon_bin + ") for a second instance");
    return;
  }
  purge_pressure(env);
}

}  // namespace volbench
