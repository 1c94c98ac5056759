// workloads_memory.cc: what storing data costs in memory, per GiB stored, on
// volfs (the daemon's stores, the kernel's page cache of the FUSE inode, and
// the daemon's own RSS growth) and on tmpfs (the file's pages, which are its
// page cache), right after writing and after dropping the clean page cache.
// Per-file figures come from st_blocks and cachestat(2), so they do not move
// with other processes; the /proc/meminfo deltas are given too, as the
// system's view, and are noisy on a shared machine.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "bench.h"

namespace volbench {
namespace {

Row make_row(const std::string& metric, const std::string& unit, Better better) {
  return make_row("memory", metric, unit, better);
}

// The system's view: page cache (Shmem included) and anonymous memory.
int64_t system_kib() {
  return static_cast<int64_t>(meminfo_kib("Cached")) +
         static_cast<int64_t>(meminfo_kib("AnonPages"));
}

}  // namespace

void run_memory(Env& env) {
  const uint64_t size = env.cfg.size;
  const uint64_t ps = page_size();
  const double gib = static_cast<double>(size) / kGiB;
  const bool know_daemon = env.daemon_pid > 0;

  Row total_written = make_row("total after write", "GiB/GiB", Better::kLower);
  Row total_dropped = make_row("total after FADV_DONTNEED", "GiB/GiB", Better::kLower);
  Row store = make_row("store (tmpfs files)", "GiB/GiB", Better::kLower);
  Row cache = make_row("FUSE page cache after write", "GiB/GiB", Better::kLower);
  Row rss = make_row("daemon RSS growth", "MiB/GiB", Better::kLower);
  Row sys = make_row("meminfo Cached+Anon delta", "GiB/GiB", Better::kLower);
  // Issue 10: at most 1.05 times tmpfs's memory, a ratio of 1/1.05.
  total_written.target = {Target::kRatioAtLeast, 0.95};
  total_dropped.target = {Target::kRatioAtLeast, 0.95};

  alternate(env.cfg.reps, [&](int side, int) {
    std::string path = (side == 0 ? env.vdir : env.bdir) + "/memory";
    const uint64_t rss0 = side == 0 && know_daemon ? vm_rss_bytes(env.daemon_pid) : 0;
    const uint64_t store0 = side == 0 && know_daemon ? store_bytes(env.daemon_pid) : 0;
    const int64_t sys0 = system_kib();
    {
      Fd fd = create_written(path, size);
      const int64_t sys1 = system_kib();
      if (side == 0) {
        uint64_t cached = cache_state(fd.get(), size).cached * ps;
        if (know_daemon) {
          uint64_t rss1 = vm_rss_bytes(env.daemon_pid), store1 = store_bytes(env.daemon_pid);
          uint64_t rss_growth = rss1 - std::min(rss0, rss1);
          uint64_t st = store1 - std::min(store0, store1);
          total_written.volfs.v.push_back(static_cast<double>(st + cached + rss_growth) / kGiB /
                                          gib);
          store.volfs.v.push_back(static_cast<double>(st) / kGiB / gib);
          rss.volfs.v.push_back(static_cast<double>(rss_growth) / kMiB / gib);
          drop_page_cache(fd.get());
          uint64_t left = cache_state(fd.get(), size).cached * ps;
          total_dropped.volfs.v.push_back(static_cast<double>(st + left + rss_growth) / kGiB / gib);
        }
        cache.volfs.v.push_back(static_cast<double>(cached) / kGiB / gib);
      } else {
        struct stat s {};
        check(::fstat(fd.get(), &s) == 0, "fstat");
        double stored = static_cast<double>(s.st_blocks) * 512 / kGiB / gib;
        total_written.baseline.v.push_back(stored);
        store.baseline.v.push_back(stored);
        drop_page_cache(fd.get());
        check(::fstat(fd.get(), &s) == 0, "fstat");
        total_dropped.baseline.v.push_back(static_cast<double>(s.st_blocks) * 512 / kGiB / gib);
      }
      (side == 0 ? sys.volfs : sys.baseline)
          .v.push_back(static_cast<double>(sys1 - sys0) / (1024.0 * 1024.0) / gib);
    }
    unlink_if_exists(path);
    if (side == 0 && know_daemon) {
      // Deleted files are freed after the kernel's FORGET, asynchronously.
      double deadline = now_sec() + 5;
      while (store_bytes(env.daemon_pid) > store0 && now_sec() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  });
  total_written.note =
      "file of " + human_bytes(size) +
      " written with pwrite(2); volfs = daemon store blocks + FUSE page cache (cachestat) + "
      "daemon VmRSS growth; tmpfs = the file's blocks (its page cache is the store)";
  total_dropped.note =
      "after POSIX_FADV_DONTNEED: the FUSE copy is clean and reclaimable, tmpfs pages are not";
  cache.note = "a second copy of recently written/read/mapped pages, clean, reclaimable";
  sys.note = "system-wide /proc/meminfo delta across the write: includes other processes' noise";
  if (!know_daemon) {
    total_written.note += "; daemon pid unknown (--mount): volfs store/RSS figures missing";
  }
  for (Row* r : {&total_written, &total_dropped, &store, &cache, &rss, &sys}) {
    if (!r->volfs.empty() || !r->baseline.empty()) env.report.add(*r);
  }
}

}  // namespace volbench
