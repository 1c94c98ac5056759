// PurgeWorker: the one background thread of the purge engine. It runs posted
// jobs in order (the cache-invalidation half of purges, which must not run on
// a FUSE handler thread: the kernel may need that handler to finish first) and
// asks the pressure source, on every wake-up, whether to purge more.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "accounting.h"

namespace volfs {

// Seam for memory-pressure signals: how many pages to purge right now.
class PressureSource {
 public:
  virtual ~PressureSource() = default;
  virtual uint64_t pages_to_purge(const AccountingSnapshot& s) = 0;
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

 private:
  unsigned high_pct_, low_pct_;
};

class PurgeWorker {
 public:
  // on_pressure(pages) runs on the worker thread when the source asks.
  PurgeWorker(std::unique_ptr<PressureSource> source, std::function<AccountingSnapshot()> snapshot,
              std::function<void(uint64_t)> on_pressure);
  ~PurgeWorker();  // stops the thread after running every posted job

  void post(std::function<void()> job);
  // Nudges the worker to consult the pressure source now.
  void wake();

 private:
  void run();

  std::unique_ptr<PressureSource> source_;
  std::function<AccountingSnapshot()> snapshot_;
  std::function<void(uint64_t)> on_pressure_;
  std::mutex mu_;  // guards jobs_, stop_, woken_; taken after any inode lock
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace volfs
