// PurgeWorker: the one background thread of the purge engine. It runs posted
// jobs in order (the cache-invalidation half of purges, which must not run on
// a FUSE handler thread: the kernel may need that handler to finish first) and
// runs pressure rounds: it asks every pressure source how many pages to purge
// and purges the largest request, at most once per kMinRoundInterval after a
// round that purged. A second thread, only when a source has descriptors to
// watch (PSI triggers, cgroup event fds), blocks in poll() on them and wakes
// the worker, so such a signal is heard in milliseconds, not at the next tick.
#pragma once

#include <poll.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "accounting.h"

namespace volfs::core {

// What the system pressure sources last saw, for STATS (0 where a source is off).
struct PressureStatus {
  uint32_t active = 0;  // bit (1 << PurgeCause) for each source that is on
  uint64_t mem_available_bytes = 0;
  uint64_t mem_min_bytes = 0;
  uint64_t cgroup_limit_bytes = 0;
  uint64_t cgroup_used_bytes = 0;
  uint64_t cgroup_min_bytes = 0;
  uint64_t psi_step_bytes = 0;
};

inline constexpr uint32_t cause_bit(PurgeCause c) { return 1u << static_cast<unsigned>(c); }

// Seam for memory-pressure signals: how many pages to purge right now.
// pages_to_purge() and purged() run on the worker thread only; ready() on the
// watcher thread; report() on any thread (sources keep what it reads atomic).
class PressureSource {
 public:
  virtual ~PressureSource() = default;
  virtual uint64_t pages_to_purge(const AccountingSnapshot& s) = 0;
  virtual PurgeCause cause() const = 0;
  // After a round that granted this source's request: the pages it took.
  virtual void purged(uint64_t pages) { (void)pages; }

  // Descriptors whose readiness means "ask me now"; ready() gets their
  // revents. A descriptor that reports POLLERR, POLLHUP or POLLNVAL is
  // watched no more.
  struct WaitFd {
    int fd = -1;
    short events = POLLPRI;
  };
  virtual std::vector<WaitFd> wait_fds() const { return {}; }
  virtual void ready(int fd, short revents) {
    (void)fd;
    (void)revents;
  }
  virtual void report(PressureStatus& st) const { (void)st; }
};

// Purges from above the high watermark down to the low one (of the size limit).
class WatermarkPressure : public PressureSource {
 public:
  WatermarkPressure(unsigned high_pct, unsigned low_pct) : high_pct_(high_pct), low_pct_(low_pct) {}
  uint64_t pages_to_purge(const AccountingSnapshot& s) override {
    uint64_t high = s.limit_pages / 100 * high_pct_ + s.limit_pages % 100 * high_pct_ / 100;
    uint64_t low = s.limit_pages / 100 * low_pct_ + s.limit_pages % 100 * low_pct_ / 100;
    return s.charged_pages > high ? s.charged_pages - low : 0;
  }
  PurgeCause cause() const override { return PurgeCause::kWatermark; }
  void report(PressureStatus& st) const override { st.active |= cause_bit(cause()); }

 private:
  unsigned high_pct_, low_pct_;
};

// Purges what stands above size= itself. With FUSE passthrough, writes the
// daemon never sees may land above it: volatile data stands above size= in
// the private tmpfs (Filesystem::fit_backing), and this takes it back. A
// purge of the size limit, as a write's in the cached mode is; like that one,
// always on, so not among the sources STATS calls active.
class SizeLimitPressure : public PressureSource {
 public:
  uint64_t pages_to_purge(const AccountingSnapshot& s) override {
    return s.charged_pages > s.limit_pages ? s.charged_pages - s.limit_pages : 0;
  }
  PurgeCause cause() const override { return PurgeCause::kSizeLimit; }
};

class PurgeWorker {
 public:
  using Clock = std::chrono::steady_clock;
  // Sources are polled this often even without a wake-up, so that a source
  // not driven by our own counters (MemAvailable, cgroup usage) is heard.
  static constexpr std::chrono::milliseconds kPollInterval{100};
  // After a round that purged, the next waits this long: the memory freed
  // shows in MemAvailable and the cgroup first, and a burst of signals
  // (a PSI trigger and a tick together) makes one purge, not a herd.
  static constexpr std::chrono::milliseconds kMinRoundInterval{100};

  // on_pressure(cause, pages) runs on the worker thread: purge up to `pages`
  // for `cause` and return how many were purged; pages == 0 only counts the
  // request of a source whose round another source's larger request served.
  using PurgeFn = std::function<uint64_t(PurgeCause, uint64_t pages)>;
  PurgeWorker(std::vector<std::unique_ptr<PressureSource>> sources,
              std::function<AccountingSnapshot()> snapshot, PurgeFn on_pressure);
  ~PurgeWorker();  // stops the watcher, then the thread after running every posted job

  // A job with its queue storage, made before the state change it
  // completes, so that posting it cannot fail (docs/design.md, "Out of
  // memory"). One element; post() splices it into the queue.
  using Job = std::list<std::function<void()>>;
  static Job make_job(std::function<void()> fn) {
    Job j;
    j.push_back(std::move(fn));  // moved, not copied (as Job{fn} would)
    return j;
  }
  void post(Job&& job) noexcept;
  void post(std::function<void()> job) { post(make_job(std::move(job))); }
  // Nudges the worker to consult the pressure sources now.
  void wake();
  // Fills in what the sources last saw.
  void report(PressureStatus& st) const;

 private:
  void run();
  void watch();
  // One pressure round; true if it purged.
  bool pressure_round();
  // Runs posted jobs until none is left; lock held on entry and exit.
  void run_jobs(std::unique_lock<std::mutex>& lock);

  const std::vector<std::unique_ptr<PressureSource>> sources_;  // immutable after construction
  std::function<AccountingSnapshot()> snapshot_;
  PurgeFn on_pressure_;
  std::mutex mu_;  // guards jobs_, stop_, woken_; taken after any inode lock
  std::condition_variable cv_;
  Job jobs_;
  bool stop_ = false;
  bool woken_ = false;
  int watch_stop_fd_ = -1;  // eventfd: written once to end watch()
  std::thread watcher_;     // only when a source has descriptors to watch
  std::thread thread_;      // last: starts after the members it uses exist
};

}  // namespace volfs::core
