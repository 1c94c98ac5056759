// The multi-threaded request loop: see request_loop.h.
//
// As in libfuse's loop, idle workers wait in read(2) on /dev/fuse, the
// kernel hands each request to one of them, and a worker that takes one and
// leaves no other waiting starts one, up to max_threads. At the end (an
// unmount, a signal) the workers are cancelled where they wait, in read(2)
// only, and joined.
//
// The barrier (core::ReadBarrier). The kernel's queue is first in, first
// out: when the request being served was read, every request sent before
// it had been taken by a worker. A worker counts its turns and says it is
// reading from before read(2) until it knows what it read; if that may free
// a file's data, it says it holds it until it has served it. The barrier
// notes each worker's turn, and waits until each has read again, or holds
// nothing and is not reading, or is reading but waits in the kernel for a
// request (its /proc/thread-self/wchan names the FUSE device's read): it
// has then taken none. Asleep elsewhere it may hold one (a worker that has
// read sleeps on a lock of Valgrind or TSan before it says so).
#include "request_loop.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace volfs {
namespace {

constexpr int kEndSignals[] = {SIGHUP, SIGINT, SIGTERM};

// What the signal handler reaches while a loop runs. Lock-free atomics, so
// safe in a handler.
std::atomic<fuse_session*> g_session{nullptr};
std::atomic<int> g_wake_fd{-1};

void wake(int fd) {
  const uint64_t one = 1;
  if (write(fd, &one, sizeof one) < 0) {
    // Only if the counter were full, when the reader is woken anyway.
  }
}

void on_end_signal(int /*sig*/) {
  const int saved = errno;
  if (fuse_session* se = g_session.load()) fuse_session_exit(se);
  if (int fd = g_wake_fd.load(); fd >= 0) wake(fd);
  errno = saved;
}

bool is_forget(const fuse_in_header& in) {
  return in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET;
}

// A request that may free a file's data when it is served: the last RELEASE
// of a deleted file, or the FORGET of one that a passthrough mapping kept.
bool may_free_data(const fuse_buf& buf) {
  if (buf.flags & FUSE_BUF_IS_FD) return true;  // not readable here: assume so
  const auto& in = *static_cast<const fuse_in_header*>(buf.mem);
  return in.opcode == FUSE_RELEASE || is_forget(in);
}

// Where the kernel's FUSE device read waits for a request (fs/fuse/dev.c):
// the only place it sleeps before it takes one off the queue.
constexpr std::string_view kWaitingForARequest = "fuse_dev_do_read";

// Whether the thread whose /proc wchan file is `fd` waits in the kernel for
// a FUSE request, or has ended.
bool waiting_or_gone(int fd, std::string* wchan) {
  char s[128];
  const ssize_t n = pread(fd, s, sizeof s, 0);
  if (n <= 0) return true;  // ESRCH: the thread has ended (cancelled at the end)
  const std::string_view where(s, static_cast<size_t>(n));
  if (where == kWaitingForARequest) return true;
  if (where != "0") *wchan = where;  // "0": running, nowhere to name
  return false;
}

// A read buffer that is freed however its worker ends, cancelled included.
struct ReadBuffer {
  fuse_buf buf{};
  ReadBuffer() = default;
  ReadBuffer(const ReadBuffer&) = delete;
  ReadBuffer& operator=(const ReadBuffer&) = delete;
  ~ReadBuffer() { std::free(buf.mem); }
};

class RequestLoop final : public core::ReadBarrier {
 public:
  RequestLoop(fuse_session* se, const RequestLoopOptions& options, int wake_fd)
      : se_(se), options_(options), wake_fd_(wake_fd) {}

  ~RequestLoop() override {
    for (Worker& w : workers_) {
      if (w.wchan_fd >= 0) close(w.wchan_fd);
    }
  }

  int run() {
    {
      // The end signals come to this thread, not to the workers (as in
      // libfuse's loop). A thread inherits the mask of the one that starts it.
      sigset_t ends, old;
      sigemptyset(&ends);
      for (int sig : kEndSignals) sigaddset(&ends, sig);
      sigaddset(&ends, SIGQUIT);
      pthread_sigmask(SIG_BLOCK, &ends, &old);
      std::lock_guard lock(mu_);
      start_worker();
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      if (workers_.empty()) return error_;
    }
    // Until a signal (maybe one that came before the loop) or a worker that
    // read the end.
    uint64_t n;
    while (!fuse_session_exited(se_) && read(wake_fd_, &n, sizeof n) < 0 && errno == EINTR) {
    }
    fuse_session_exit(se_);
    {
      // Under mu_, so that no worker starts another after this.
      std::lock_guard lock(mu_);
      ending_ = true;
      for (Worker& w : workers_) {
        if (!w.left) pthread_cancel(w.thread.native_handle());
      }
    }
    // Workers serving a request finish it (cancellation is off but in read).
    for (Worker& w : workers_) w.thread.join();
    std::lock_guard lock(mu_);
    return error_;
  }

  void wait(std::chrono::steady_clock::time_point until) override {
    // The workers there now, and the turn of each: a request read before
    // the caller's is with one of them, or served. None leaves the list
    // while a barrier looks (reap), so the looks need no lock.
    std::vector<std::pair<const Worker*, uint64_t>> left;
    {
      std::lock_guard lock(mu_);
      ++barriers_;
      for (const Worker& w : workers_) left.emplace_back(&w, w.turn.load());
    }
    std::string wchan;
    for (;;) {
      std::erase_if(left, [&](const auto& p) { return passed(*p.first, p.second, &wchan); });
      if (left.empty() || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::lock_guard lock(mu_);
    --barriers_;
    // Once: on a kernel whose read waits elsewhere every barrier would wait.
    if (!left.empty() && !wchan.empty() && !std::exchange(warned_, true)) {
      std::fprintf(stderr,
                   "volfs: the read barrier gave up on a worker that waits in '%s', not in %s\n",
                   wchan.c_str(), std::string(kWaitingForARequest).c_str());
    }
  }

 private:
  // A worker's state through a turn, for the barrier: `turn` counts its
  // reads; `reading` is set from before read(2) until it knows what it
  // read, and `holding`, set before `reading` is cleared, while it serves a
  // request that may free a file's data.
  struct Worker {
    explicit Worker(uint64_t i) : id(i) {}
    const uint64_t id;
    std::thread thread;
    std::atomic<uint64_t> turn{0};
    std::atomic<bool> reading{false};
    std::atomic<bool> holding{false};
    std::atomic<int> wchan_fd{-1};  // its /proc/thread-self/wchan, set once
    bool left = false;              // GUARDED_BY(mu_): left as one idle too many
  };

  // Whether `w`, at `turn` when the barrier began, has nothing left that it
  // read then and that may free data. Else `wchan`: where it was, if asleep.
  static bool passed(const Worker& w, uint64_t turn, std::string* wchan) {
    if (w.turn.load() != turn) return true;  // it read again: that one is served
    if (!w.reading.load()) return !w.holding.load();
    const int fd = w.wchan_fd.load();
    if (fd < 0) return true;  // without /proc this cannot be told
    // Waiting while reading, it holds nothing; the look counts only if the
    // reading outlasts it.
    return waiting_or_gone(fd, wchan) && w.reading.load() && w.turn.load() == turn;
  }

  // Under mu_. A failure leaves the loop with the workers it has.
  void start_worker() {
    if (ending_) return;
    reap();
    try {
      Worker& w = workers_.emplace_back(next_id_++);
      try {
        w.thread = std::thread([this, &w] { work(w); });
      } catch (...) {
        workers_.pop_back();
        throw;
      }
      ++available_;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "volfs: cannot start a worker thread: %s\n", e.what());
      if (workers_.empty()) error_ = -EAGAIN;
    }
  }

  // Under mu_: joins the workers that left as idle ones too many, unless a
  // barrier looks at them.
  void reap() {
    if (barriers_ > 0) return;
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (!it->left) {
        ++it;
        continue;
      }
      it->thread.join();
      if (it->wchan_fd >= 0) close(it->wchan_fd);
      it = workers_.erase(it);
    }
  }

  void work(Worker& w) {
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
    pthread_setname_np(pthread_self(), "volfs-worker");
    const int fd = open("/proc/thread-self/wchan", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      // The barrier passes this worker by; say so once.
      const int err = errno;
      std::lock_guard lock(mu_);
      if (!std::exchange(warned_, true)) {
        std::fprintf(stderr, "volfs: no /proc/thread-self/wchan: %s\n", strerror(err));
      }
    }
    w.wchan_fd.store(fd);
    ReadBuffer rb;
    for (;;) {
      if (fuse_session_exited(se_)) {
        end(0);
        return;
      }
      w.turn.fetch_add(1);
      w.reading.store(true);
      pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
      const int res = fuse_session_receive_buf(se_, &rb.buf);
      pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
      if (res > 0 && may_free_data(rb.buf)) w.holding.store(true);
      w.reading.store(false);
      if (res == -EINTR) continue;
      if (res <= 0) {
        end(res);
        return;
      }
      // FORGETs come in bursts and need no thread of their own (as in
      // libfuse's loop): they leave the worker available.
      const bool counts =
          (rb.buf.flags & FUSE_BUF_IS_FD) || !is_forget(*static_cast<fuse_in_header*>(rb.buf.mem));
      if (counts) {
        std::lock_guard lock(mu_);
        if (--available_ == 0 && live() < options_.max_threads) start_worker();
      }
      fuse_session_process_buf(se_, &rb.buf);
      w.holding.store(false);
      if (counts) {
        std::lock_guard lock(mu_);
        ++available_;
        if (available_ > options_.max_idle_threads && !ending_ && live() > 1) {
          --available_;
          w.left = true;
          return;
        }
      }
    }
  }

  // Under mu_: the workers that have not left.
  size_t live() const {
    size_t n = 0;
    for (const Worker& w : workers_) n += w.left ? 0 : 1;
    return n;
  }

  // The worker that reads the end (an unmount: 0; a failed read: -errno).
  void end(int res) {
    fuse_session_exit(se_);
    {
      std::lock_guard lock(mu_);
      if (res < 0 && error_ == 0) error_ = res;
    }
    wake(wake_fd_);
  }

  fuse_session* const se_;
  const RequestLoopOptions options_;
  const int wake_fd_;  // written at the end: a signal, or a worker
  std::mutex mu_;
  std::list<Worker> workers_;  // GUARDED_BY(mu_); stable addresses
  uint64_t next_id_ = 1;       // GUARDED_BY(mu_)
  size_t available_ = 0;       // GUARDED_BY(mu_): workers not serving a request
  bool ending_ = false;        // GUARDED_BY(mu_)
  int barriers_ = 0;           // GUARDED_BY(mu_): barriers looking at workers_
  bool warned_ = false;        // GUARDED_BY(mu_)
  int error_ = 0;              // GUARDED_BY(mu_)
};

}  // namespace

int serve_requests(fuse_session* se, core::Filesystem& fs, const RequestLoopOptions& options) {
  const int wake_fd = eventfd(0, EFD_CLOEXEC);
  if (wake_fd < 0) return -errno;
  g_session.store(se);
  g_wake_fd.store(wake_fd);
  // As libfuse does, a signal that is ignored (nohup, a background job)
  // stays ignored.
  struct sigaction ours = {};
  ours.sa_handler = on_end_signal;
  sigemptyset(&ours.sa_mask);
  struct sigaction old[std::size(kEndSignals)] = {};
  bool replaced[std::size(kEndSignals)] = {};
  for (size_t k = 0; k < std::size(kEndSignals); ++k) {
    if (sigaction(kEndSignals[k], nullptr, &old[k]) == 0 && old[k].sa_handler != SIG_IGN) {
      replaced[k] = sigaction(kEndSignals[k], &ours, nullptr) == 0;
    }
  }
  int res = 0;
  {
    RequestLoop loop(se, options, wake_fd);
    fs.set_read_barrier(&loop);
    res = loop.run();
    fs.set_read_barrier(nullptr);
  }
  for (size_t k = 0; k < std::size(kEndSignals); ++k) {
    if (replaced[k]) sigaction(kEndSignals[k], &old[k], nullptr);
  }
  g_wake_fd.store(-1);
  g_session.store(nullptr);
  close(wake_fd);
  return res;
}

}  // namespace volfs
