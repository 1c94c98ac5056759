// segment_map.cc: see segment_map.h.
#include "segment_map.h"

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

namespace volfs::cache_detail {

SegmentMap::SegmentMap(int fd, std::filesystem::path path, const SegmentRecord& r, uint32_t holder,
                       bool pinned)
    : fd_(fd), path_(std::move(path)), record_(r), holder_(holder) {
  void* base = ::mmap(nullptr, r.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    ::close(fd_);
    throw std::system_error(err, std::generic_category(), "volfs cache: map " + path_.string());
  }
  base_ = static_cast<std::byte*>(base);
  slots_ = std::make_unique<volfs_slot[]>(r.slot_count);
  for (uint32_t k = 0; k < r.slot_count; ++k) {
    volfs_slot_init(&slots_[k], word(k), holder, pinned ? 1 : 0);
  }
}

SegmentMap::~SegmentMap() {
  ::munmap(base_, record_.file_size);
  ::close(fd_);
}

uint64_t SegmentMap::pins() const {
  uint64_t n = 0;
  for (uint32_t k = 0; k < record_.slot_count; ++k) {
    n += static_cast<uint64_t>(std::popcount(load_word(k) & VOLFS_SLOT_PIN_BITS));
  }
  return n;
}

void SegmentMap::unpin_all() {
  for (uint32_t k = 0; k < record_.slot_count; ++k) unpin(k);
}

}  // namespace volfs::cache_detail
