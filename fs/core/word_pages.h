// WordPages: where the daemon maps the pages of stores that hold slot words
// (slot_table.h), and the guard that keeps a fault there from killing it.
//
// A client can take a word's page out of the store behind the daemon
// (madvise(MADV_REMOVE) on its own shared mapping), and the daemon's next
// access then faults the page in again; on a full private tmpfs that
// allocation fails and the kernel raises SIGBUS. Every word page is mapped
// inside one reserved range of address space, and a SIGBUS handler that
// finds the faulting address in that range maps a private zero page over
// it and returns: the access is retried and sees 0, VOLFS_SLOT_NONE, so
// the slots whose words were there end (Filesystem::sync_slots), as they
// would for any client that zeroed its words. Any other SIGBUS goes to the
// handler that was there before (or kills the process, as it would have).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace volfs::core {

class WordPages {
 public:
  // The process's one instance; installs the SIGBUS handler on first use.
  static WordPages& instance();

  // Maps page `index` of `fd` (MAP_SHARED, read-write) into the range;
  // nullptr with errno set (ENOMEM when the range is full).
  void* map(int fd, uint64_t index);
  // Gives the page back to the range.
  void unmap(void* page);
  // Whether `addr` lies in a word page: for the SIGBUS handler.
  bool contains(const void* addr) const {
    const auto a = reinterpret_cast<uintptr_t>(addr);
    return a >= base_ && a < base_ + bytes_;
  }
  size_t page_size() const { return page_size_; }
  // SIGBUS faults this guard has absorbed since the start.
  static uint64_t faults_absorbed();

 private:
  WordPages();
  const size_t page_size_;
  uintptr_t base_ = 0;
  size_t bytes_ = 0;
  std::mutex mu_;             // guards next_ and free_
  size_t next_ = 0;           // pages never handed out start here
  std::vector<size_t> free_;  // pages given back
};

}  // namespace volfs::core
