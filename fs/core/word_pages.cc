// WordPages: see word_pages.h.
#include "word_pages.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace volfs::core {
namespace {

// 4 GiB of address space: a million word pages of 4 KiB, each page holding
// 256 words. Reserved, never backed: PROT_NONE and MAP_NORESERVE.
constexpr size_t kReservedBytes = size_t{1} << 32;

struct sigaction g_previous {};
std::atomic<uint64_t> g_absorbed{0};
WordPages* g_pages = nullptr;  // set once, before the handler is installed

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const int saved = errno;
  if (g_pages && g_pages->contains(info->si_addr)) {
    // Only async-signal-safe work: one mmap over the faulting page. The
    // access is retried on return and finds zeros.
    const uintptr_t page =
        reinterpret_cast<uintptr_t>(info->si_addr) & ~(uintptr_t{g_pages->page_size()} - 1);
    // NOLINTNEXTLINE(performance-no-int-to-ptr): the page of a faulting address
    void* p = ::mmap(reinterpret_cast<void*>(page), g_pages->page_size(), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != MAP_FAILED) {
      g_absorbed.fetch_add(1, std::memory_order_relaxed);
      errno = saved;
      return;
    }
  }
  // Not ours: as if this handler had never been installed.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

WordPages& WordPages::instance() {
  static WordPages* pages = [] {
    auto* p = new WordPages;  // never destroyed: the handler may run until exit
    g_pages = p;
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
    return p;
  }();
  return *pages;
}

WordPages::WordPages() : page_size_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
  void* p = ::mmap(nullptr, kReservedBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (p != MAP_FAILED) {
    base_ = reinterpret_cast<uintptr_t>(p);
    bytes_ = kReservedBytes;
  }
}

void* WordPages::map(int fd, uint64_t index) {
  size_t slot;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else if ((next_ + 1) * page_size_ <= bytes_) {
      slot = next_++;
    } else {
      errno = ENOMEM;
      return nullptr;
    }
  }
  // NOLINTNEXTLINE(performance-no-int-to-ptr): a page of the reserved range
  void* want = reinterpret_cast<void*>(base_ + slot * page_size_);
  void* p = ::mmap(want, page_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
                   static_cast<off_t>(index * page_size_));
  if (p == MAP_FAILED) {
    const int err = errno;
    unmap(want);
    errno = err;
    return nullptr;
  }
  return p;
}

void WordPages::unmap(void* page) {
  // Back to a reserved, unbacked page, never a hole another mmap could take.
  // Cannot fail short of a kernel out of memory; the page then stays mapped
  // and unused, which costs that page and nothing else.
  (void)::mmap(page, page_size_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
               -1, 0);
  std::lock_guard lock(mu_);
  free_.push_back((reinterpret_cast<uintptr_t>(page) - base_) / page_size_);
}

uint64_t WordPages::faults_absorbed() { return g_absorbed.load(std::memory_order_relaxed); }

}  // namespace volfs::core
