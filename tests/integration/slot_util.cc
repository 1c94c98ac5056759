// slot_util.cc: see slot_util.h. Helpers report through return values only.
#include "slot_util.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace volfs::test {
namespace {

int ioctl_errno(int fd, unsigned long cmd, void* arg) {
  return ioctl(fd, cmd, arg) == 0 ? 0 : -errno;
}

}  // namespace

int slot_register_raw(int fd, SlotRegister* r) {
  return ioctl_errno(fd, VOLFS_IOC_SLOT_REGISTER, r);
}

SlotRegister slot_request(uint64_t off, uint64_t len, uint64_t word_off, uint32_t count,
                          uint32_t flags) {
  SlotRegister r{};
  r.offset = off;
  r.length = len;
  r.word_offset = word_off;
  r.count = count;
  r.flags = flags;
  return r;
}

int slot_register(int fd, uint64_t off, uint64_t len, uint64_t word_off, uint32_t count,
                  uint32_t flags, SlotRegister* out) {
  SlotRegister r = slot_request(off, len, word_off, count, flags);
  r.holder = 0xdeadbeef;  // must be overwritten
  r.result = 0xdeadbeef;
  int e = slot_register_raw(fd, &r);
  if (out) *out = r;
  return e;
}

int slot_holder(int fd, uint32_t* holder) {
  SlotHolderArgs h{};
  h.holder = 0xdeadbeef;
  int e = ioctl_errno(fd, VOLFS_IOC_SLOT_HOLDER, &h);
  if (holder) *holder = h.holder;
  return e;
}

int slot_unregister(int fd, uint64_t word_off, uint32_t* result) {
  SlotUnregisterArgs u{};
  u.word_offset = word_off;
  u.result = 0xdeadbeef;
  int e = ioctl_errno(fd, VOLFS_IOC_SLOT_UNREGISTER, &u);
  if (result) *result = u.result;
  return e;
}

bool MappedFile::open(const std::string& path, size_t len, int flags) {
  reset();
  fd_ = UniqueFd(::open(path.c_str(), flags | O_CLOEXEC));
  if (!fd_.ok()) return false;
  int prot = (flags & O_ACCMODE) == O_RDONLY ? PROT_READ : PROT_READ | PROT_WRITE;
  void* p = mmap(nullptr, len, prot, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) {
    int e = errno;
    fd_.reset();
    errno = e;
    return false;
  }
  map_ = static_cast<char*>(p);
  len_ = len;
  return true;
}

void MappedFile::reset() {
  if (map_) munmap(map_, len_);
  map_ = nullptr;
  len_ = 0;
  fd_.reset();
}

std::string describe_word(uint64_t w) {
  static const char* const kStates[] = {"NONE", "LIVE", "PURGING", "PURGED"};
  std::string s = kStates[word_state(w)];
  s += " pins={";
  bool first = true;
  for (uint32_t b = 0; b < VOLFS_SLOT_HOLDERS; ++b) {
    if (!(w & holder_bit(b))) continue;
    if (!first) s += ",";
    s += std::to_string(b);
    first = false;
  }
  return s + "}";
}

bool poll_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
              std::chrono::microseconds* waited) {
  const auto start = std::chrono::steady_clock::now();
  bool ok = false;
  for (;;) {
    if (pred()) {
      ok = true;
      break;
    }
    if (std::chrono::steady_clock::now() - start > timeout) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (waited) {
    *waited = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - start);
  }
  return ok;
}

}  // namespace volfs::test
