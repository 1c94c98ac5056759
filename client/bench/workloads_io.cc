// workloads_io.cc: the data-path workloads - sequential and random read and
// write, and mmap first touch and second pass - each timed on volfs and on the
// baseline in the same run, reps alternating between the two.
//
// What "cold" means (see docs/benchmarks.md): on volfs, a read is cold when
// the file's pages are not in the kernel's page cache of the FUSE inode, so
// every page comes from the daemon's memfd through a FUSE READ; we get there
// with posix_fadvise(POSIX_FADV_DONTNEED), per file, and check it with
// cachestat(2). tmpfs has no cold state: its page cache is the store, so
// DONTNEED leaves it in place and a "cold" tmpfs read is a read of pages that
// are in RAM but not in this process - the same as a hot one.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "bench.h"

namespace volbench {
namespace {

std::string dir_of(const Env& env, int side) { return side == 0 ? env.vdir : env.bdir; }

// One file per side, created with `size` bytes and removed when done. The
// two are written in alternating 1 MiB chunks: on this VM a file's read speed
// depends on where its pages landed in physical memory (of two files written
// one after the other, the second reads up to 1.5x faster, on tmpfs and volfs
// alike), so neither side may get all the "later" pages.
struct FilePair {
  std::string path[2];
  Fd fd[2];
  FilePair(const Env& env, const std::string& name, uint64_t size) {
    static Buffer buf = pattern_buffer(kChunk);
    for (int s = 0; s < 2; ++s) {
      path[s] = dir_of(env, s) + "/" + name;
      fd[s] = open_file(path[s], O_RDWR | O_CREAT | O_TRUNC);
    }
    for (uint64_t off = 0; off < size; off += kChunk) {
      for (int s = 0; s < 2; ++s) {
        check(::pwrite(fd[s].get(), buf.get(), kChunk, static_cast<off_t>(off)) ==
                  static_cast<ssize_t>(kChunk),
              "pwrite " + path[s]);
      }
    }
  }
  ~FilePair() {
    for (int s = 0; s < 2; ++s) {
      fd[s] = Fd();
      ::unlink(path[s].c_str());
    }
  }
};

Samples& side_samples(Row& r, int side) { return side == 0 ? r.volfs : r.baseline; }

double gbps(uint64_t bytes, double seconds) { return static_cast<double>(bytes) / seconds / 1e9; }

std::string percent(double part, double whole) {
  return whole > 0 ? fmt(100.0 * part / whole, 3) + "%" : "-";
}

// Random distinct pages, the same order on both sides.
std::vector<uint64_t> random_pages(uint64_t pages, uint64_t count) {
  std::vector<uint64_t> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(1234);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::min(pages, count));
  return order;
}

constexpr int kSecondPasses = 3;

// Keeps a sum of the data from being optimised away.
volatile uint64_t g_sink;

uint64_t sum_words(const char* p, uint64_t size) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t s = 0;
  for (uint64_t i = 0; i < size / 8; ++i) s += w[i];
  return s;
}

}  // namespace

void run_seq_write(Env& env) {
  const uint64_t size = env.cfg.size;
  Buffer buf = pattern_buffer(kChunk);
  Row row =
      make_row("seq_write", "1 MiB writes", "GB/s", Better::kHigher, {Target::kRatioAtLeast, 0.9});
  alternate(env.cfg.reps, [&](int side, int) {
    std::string path = dir_of(env, side) + "/seq_write";
    Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
    double t0 = now_sec();
    write_all(fd.get(), buf.get(), size);
    double t1 = now_sec();
    fd = Fd();
    unlink_if_exists(path);
    side_samples(row, side).v.push_back(gbps(size, t1 - t0));
  });
  row.note = "new file per rep, pwrite(2) of " + human_bytes(size) +
             " in 1 MiB chunks, open/close not timed";
  env.report.add(row);
}

void run_seq_read_cold(Env& env) {
  const uint64_t size = env.cfg.size;
  const uint64_t pages = size / page_size();
  Buffer buf = pattern_buffer(kChunk);
  FilePair files(env, "seq_read_cold", size);
  Row row = make_row("seq_read_cold", "1 MiB reads", "GB/s", Better::kHigher,
                     {Target::kRatioAtLeast, 0.9});
  uint64_t max_cached[2] = {0, 0};
  alternate(env.cfg.reps, [&](int side, int) {
    int fd = files.fd[side].get();
    drop_page_cache(fd);
    max_cached[side] = std::max(max_cached[side], cache_state(fd, size).cached);
    double t0 = now_sec();
    read_all(fd, buf.get(), size);
    double t1 = now_sec();
    side_samples(row, side).v.push_back(gbps(size, t1 - t0));
  });
  row.note = "after POSIX_FADV_DONTNEED, pages still cached: volfs " +
             percent(static_cast<double>(max_cached[0]), static_cast<double>(pages)) +
             " (the FUSE file's own cache: none in passthrough, where reads go to the store; "
             "in the cached io mode the daemon answers the misses), tmpfs " +
             percent(static_cast<double>(max_cached[1]), static_cast<double>(pages)) +
             " (its page cache is the store: no cold state, same as hot)";
  env.report.add(row);
}

void run_seq_read_hot(Env& env) {
  const uint64_t size = env.cfg.size;
  const uint64_t pages = size / page_size();
  Buffer buf = pattern_buffer(kChunk);
  FilePair files(env, "seq_read_hot", size);
  for (int s = 0; s < 2; ++s) read_all(files.fd[s].get(), buf.get(), size);  // warm
  Row row = make_row("seq_read_hot", "1 MiB reads", "GB/s", Better::kHigher,
                     {Target::kRatioAtLeast, 1.0});
  uint64_t min_cached[2] = {pages, pages};
  alternate(env.cfg.reps, [&](int side, int) {
    int fd = files.fd[side].get();
    min_cached[side] = std::min(min_cached[side], cache_state(fd, size).cached);
    double t0 = now_sec();
    read_all(fd, buf.get(), size);
    double t1 = now_sec();
    side_samples(row, side).v.push_back(gbps(size, t1 - t0));
  });
  row.note =
      "file read once before; pages in page cache before each rep: volfs >= " +
      percent(static_cast<double>(min_cached[0]), static_cast<double>(pages)) +
      ", tmpfs >= " + percent(static_cast<double>(min_cached[1]), static_cast<double>(pages));
  env.report.add(row);
}

void run_rand_read_4k(Env& env) {
  const uint64_t size = env.cfg.size;
  const uint64_t ps = page_size();
  Buffer buf = pattern_buffer(ps);
  FilePair files(env, "rand_read_4k", size);
  std::vector<uint64_t> order = random_pages(size / ps, env.cfg.ops);
  Row row = make_row("rand_read_4k", "4 KiB preads, cold", "kIOPS", Better::kHigher,
                     {Target::kRatioAtLeast, 0.8});
  uint64_t cached_after = 0;
  alternate(env.cfg.reps, [&](int side, int rep) {
    int fd = files.fd[side].get();
    drop_page_cache(fd);
    double t0 = now_sec();
    for (uint64_t page : order) {
      check(::pread(fd, buf.get(), ps, static_cast<off_t>(page * ps)) == static_cast<ssize_t>(ps),
            "pread");
    }
    double t1 = now_sec();
    if (side == 0 && rep == 0) cached_after = cache_state(fd, size).cached;
    side_samples(row, side).v.push_back(static_cast<double>(order.size()) / (t1 - t0) / 1e3);
  });
  row.note = std::to_string(order.size()) + " distinct random pages of " + human_bytes(size) +
             " per rep, page cache dropped first (misses on volfs; tmpfs has no cold state); "
             "volfs pages cached after a rep: " +
             std::to_string(cached_after) + " (readahead amplification " +
             fmt(static_cast<double>(cached_after) / static_cast<double>(order.size()), 3) + "x)";
  env.report.add(row);
}

void run_rand_write_4k(Env& env) {
  const uint64_t size = env.cfg.size;
  const uint64_t ps = page_size();
  Buffer buf = pattern_buffer(ps);
  FilePair files(env, "rand_write_4k", size);
  std::vector<uint64_t> order = random_pages(size / ps, env.cfg.ops);
  Row row = make_row("rand_write_4k", "4 KiB pwrites", "kIOPS", Better::kHigher,
                     {Target::kRatioAtLeast, 0.8});
  alternate(env.cfg.reps, [&](int side, int) {
    int fd = files.fd[side].get();
    double t0 = now_sec();
    for (uint64_t page : order) {
      check(::pwrite(fd, buf.get(), ps, static_cast<off_t>(page * ps)) == static_cast<ssize_t>(ps),
            "pwrite");
    }
    double t1 = now_sec();
    side_samples(row, side).v.push_back(static_cast<double>(order.size()) / (t1 - t0) / 1e3);
  });
  row.note = std::to_string(order.size()) + " distinct random pages of an existing " +
             human_bytes(size) + " file per rep (overwrites of allocated pages)";
  env.report.add(row);
}

namespace {

// Both mmap figures come from one procedure: map, read every word (first
// touch: page faults), read every word again through the same mapping
// (second pass: no faults). Run once per process, shared by both workloads.
struct MmapResult {
  bool done = false;
  Row first, second;
};

MmapResult& mmap_result(Env& env) {
  static MmapResult r;
  if (r.done) return r;
  const uint64_t size = env.cfg.size;
  const uint64_t pages = size / page_size();
  FilePair files(env, "mmap", size);
  r.first = make_row("mmap_first_touch", "read all words, faulting", "GB/s", Better::kHigher,
                     {Target::kRatioAtLeast, 0.9});
  r.second = make_row("mmap_second_pass", "read all words, mapped", "GB/s", Better::kHigher,
                      {Target::kRatioAtLeast, 0.95});
  uint64_t max_cached[2] = {0, 0};
  alternate(env.cfg.reps, [&](int side, int) {
    int fd = files.fd[side].get();
    drop_page_cache(fd);
    max_cached[side] = std::max(max_cached[side], cache_state(fd, size).cached);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    check(p != MAP_FAILED, "mmap " + files.path[side]);
    const char* c = static_cast<const char*>(p);
    double t0 = now_sec();
    g_sink = sum_words(c, size);
    double t1 = now_sec();
    // Three more passes, their median: a pass takes ~50 ms, short enough for
    // a burst of host-side noise to halve one.
    std::vector<double> passes;
    for (int i = 0; i < kSecondPasses; ++i) {
      double a = now_sec();
      g_sink = sum_words(c, size);
      passes.push_back(gbps(size, now_sec() - a));
    }
    ::munmap(p, size);
    side_samples(r.first, side).v.push_back(gbps(size, t1 - t0));
    side_samples(r.second, side).v.push_back(percentile(passes, 0.5));
  });
  r.first.note =
      "fresh MAP_SHARED PROT_READ mapping per rep, page cache dropped first; "
      "cached before: volfs " +
      percent(static_cast<double>(max_cached[0]), static_cast<double>(pages)) +
      " (passthrough: faults map the store's pages; cached io mode: they go to the daemon), "
      "tmpfs " +
      percent(static_cast<double>(max_cached[1]), static_cast<double>(pages)) +
      " (minor faults on the store's own pages)";
  r.second.note =
      "the same mapping read again, median of 3 passes: no faults, no volfs code, "
      "memory bandwidth";
  r.done = true;
  return r;
}

}  // namespace

void run_mmap_first_touch(Env& env) { env.report.add(mmap_result(env).first); }
void run_mmap_second_pass(Env& env) { env.report.add(mmap_result(env).second); }

}  // namespace volbench
