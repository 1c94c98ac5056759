// PurgeWorker: see purge_worker.h.
#include "purge_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

namespace volfs::core {

PurgeWorker::PurgeWorker(std::vector<std::unique_ptr<PressureSource>> sources,
                         std::function<AccountingSnapshot()> snapshot, PurgeFn on_pressure)
    : sources_(std::move(sources)),
      snapshot_(std::move(snapshot)),
      on_pressure_(std::move(on_pressure)),
      thread_([this] { run(); }) {
  bool any_fd = false;
  for (const auto& s : sources_) any_fd |= !s->wait_fds().empty();
  if (!any_fd) return;
  watch_stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (watch_stop_fd_ < 0) {
    // Without it the watcher could not be stopped: do without it, the
    // sources are still polled every kPollInterval.
    std::fprintf(stderr, "volfs: eventfd: %s; pressure triggers are polled instead\n",
                 std::strerror(errno));
    return;
  }
  watcher_ = std::thread([this] { watch(); });
}

PurgeWorker::~PurgeWorker() {
  if (watcher_.joinable()) {
    uint64_t one = 1;
    (void)!::write(watch_stop_fd_, &one, sizeof one);
    watcher_.join();
  }
  if (watch_stop_fd_ >= 0) ::close(watch_stop_fd_);
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PurgeWorker::post(Job&& job) noexcept {
  {
    std::lock_guard lock(mu_);
    jobs_.splice(jobs_.end(), job);
  }
  cv_.notify_all();
}

namespace {
// The worker serves every file of the mount: an exception from one job or
// round (std::bad_alloc, the only one the core throws) is logged and the
// worker goes on. The jobs themselves are written so that failing leaves
// no state half-done (docs/design.md, "Out of memory").
template <class Fn>
void logged(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "volfs: purge worker: %s failed: %s\n", what, e.what());
  } catch (...) {
    std::fprintf(stderr, "volfs: purge worker: %s failed\n", what);
  }
}
}  // namespace

void PurgeWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void PurgeWorker::report(PressureStatus& st) const {
  for (const auto& s : sources_) s->report(st);
}

void PurgeWorker::run_jobs(std::unique_lock<std::mutex>& lock) {
  while (!jobs_.empty()) {
    Job job;
    job.splice(job.end(), jobs_, jobs_.begin());
    lock.unlock();
    logged("a job", job.front());
    job.clear();  // its captures die without the lock (they may take others)
    lock.lock();
  }
}

void PurgeWorker::run() {
  std::unique_lock lock(mu_);
  Clock::time_point next_round{};  // no round before this (after one that purged)
  for (;;) {
    cv_.wait_for(lock, kPollInterval, [this] { return stop_ || woken_ || !jobs_.empty(); });
    woken_ = false;
    run_jobs(lock);
    if (stop_) return;
    if (sources_.empty()) continue;
    // A wake-up during the cool-down is kept, not lost: the round runs when
    // it ends. Jobs keep running meanwhile (a purge's completion, an unmark
    // waiting for it).
    while (!stop_ && Clock::now() < next_round) {
      cv_.wait_until(lock, next_round, [this] { return stop_ || !jobs_.empty(); });
      run_jobs(lock);
    }
    if (stop_) return;
    lock.unlock();
    bool purged = false;
    logged("a pressure round", [&] { purged = pressure_round(); });
    lock.lock();
    if (purged) next_round = Clock::now() + kMinRoundInterval;
  }
}

bool PurgeWorker::pressure_round() {
  const AccountingSnapshot s = snapshot_();
  struct Ask {
    PressureSource* source;
    uint64_t pages;
  };
  std::vector<Ask> asked;
  PressureSource* best = nullptr;
  uint64_t best_pages = 0;
  for (const auto& src : sources_) {
    uint64_t pages = src->pages_to_purge(s);
    if (pages == 0) continue;
    asked.push_back({src.get(), pages});
    if (pages > best_pages) {
      best = src.get();
      best_pages = pages;
    }
  }
  if (!best) return false;
  // Every request is for "free at least this much now", so the largest one
  // serves the others: they are counted, not purged again.
  for (const Ask& a : asked) {
    if (a.source != best) on_pressure_(a.source->cause(), 0);
  }
  uint64_t got = on_pressure_(best->cause(), best_pages);
  best->purged(got);
  return got > 0;
}

void PurgeWorker::watch() {
  struct Watched {
    PressureSource* source;
    PressureSource::WaitFd w;
  };
  std::vector<Watched> watched;
  for (const auto& s : sources_) {
    for (const PressureSource::WaitFd& w : s->wait_fds()) watched.push_back({s.get(), w});
  }
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign(1, pollfd{watch_stop_fd_, POLLIN, 0});
    for (const Watched& w : watched) fds.push_back(pollfd{w.w.fd, w.w.events, 0});
    int n = ::poll(fds.data(), fds.size(), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "volfs: poll on pressure triggers: %s; they are polled instead\n",
                   std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    bool any = false;
    for (size_t k = fds.size() - 1; k >= 1; --k) {
      short rev = fds[k].revents;
      if (!rev) continue;
      Watched& w = watched[k - 1];
      w.source->ready(w.w.fd, rev);
      any = true;
      // A trigger whose file went away (its cgroup was removed) stays
      // readable forever: stop watching it rather than spin.
      if (rev & (POLLERR | POLLHUP | POLLNVAL)) watched.erase(watched.begin() + (k - 1));
    }
    if (any) wake();
  }
}

}  // namespace volfs::core
