// PurgeWorker: see purge_worker.h.
#include "purge_worker.h"

namespace volfs {

PurgeWorker::PurgeWorker(std::unique_ptr<PressureSource> source,
                         std::function<AccountingSnapshot()> snapshot,
                         std::function<void(uint64_t)> on_pressure)
    : source_(std::move(source)),
      snapshot_(std::move(snapshot)),
      on_pressure_(std::move(on_pressure)),
      thread_([this] { run(); }) {}

PurgeWorker::~PurgeWorker() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PurgeWorker::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void PurgeWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void PurgeWorker::run() {
  // Pressure is polled too, so a source that is not driven by our own
  // counters (system memory, later) is still heard.
  constexpr auto kPollInterval = std::chrono::milliseconds(100);
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, kPollInterval, [this] { return stop_ || woken_ || !jobs_.empty(); });
    woken_ = false;
    while (!jobs_.empty()) {
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
    if (stop_) return;
    if (source_) {
      lock.unlock();
      uint64_t pages = source_->pages_to_purge(snapshot_());
      if (pages) on_pressure_(pages);
      lock.lock();
    }
  }
}

}  // namespace volfs
