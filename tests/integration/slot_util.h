// slot_util.h: helpers for the slot tests (docs/volatile-ranges.md, "Slots"):
// the slot ioctls as calls returning 0 or -errno, a file opened and mapped
// MAP_SHARED (the view through which a holder pins), and atomic reads of the
// words in it. Nothing here asserts, so every helper is safe in a forked child.
#ifndef VOLFS_TESTS_INTEGRATION_SLOT_UTIL_H_
#define VOLFS_TESTS_INTEGRATION_SLOT_UTIL_H_

#include <fcntl.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "file_util.h"

namespace volfs::test {

// The argument structs, by shorter names.
using SlotRegister = struct ::volfs_slot_register;
using SlotHolderArgs = struct ::volfs_slot_holder;
using SlotUnregisterArgs = struct ::volfs_slot_unregister;

// The argument of VOLFS_IOC_SLOT_REGISTER, reserved words zero.
SlotRegister slot_request(uint64_t off, uint64_t len, uint64_t word_off, uint32_t count = 1,
                          uint32_t flags = 0);
// VOLFS_IOC_SLOT_REGISTER with *r exactly as given (reserved words too).
int slot_register_raw(int fd, SlotRegister* r);
// Registers count slots; *out (if given) gets the answer.
int slot_register(int fd, uint64_t off, uint64_t len, uint64_t word_off, uint32_t count = 1,
                  uint32_t flags = 0, SlotRegister* out = nullptr);
int slot_holder(int fd, uint32_t* holder);
// *result gets VOLFS_INTACT or VOLFS_PURGED.
int slot_unregister(int fd, uint64_t word_off, uint32_t* result);

// A file of the mount opened (O_RDWR unless told) and mapped MAP_SHARED over
// its first `len` bytes; both undone on destruction.
class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile() { reset(); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // False with errno set on failure.
  bool open(const std::string& path, size_t len, int flags = O_RDWR);
  void reset();
  // Closes the descriptor, keeps the mapping.
  void close_fd() { fd_.reset(); }

  int fd() const { return fd_.get(); }
  char* data() const { return map_; }
  size_t size() const { return len_; }
  volfs_slot_word* word(uint64_t word_off) const {
    return reinterpret_cast<volfs_slot_word*>(map_ + word_off);
  }
  uint64_t load(uint64_t word_off) const {
    return __atomic_load_n(&word(word_off)->word, __ATOMIC_ACQUIRE);
  }

 private:
  UniqueFd fd_;
  char* map_ = nullptr;
  size_t len_ = 0;
};

// "LIVE pins={0,3}" for a word.
std::string describe_word(uint64_t w);
inline uint32_t word_state(uint64_t w) { return VOLFS_SLOT_STATE(w); }
inline uint64_t pin_bits(uint64_t w) { return w & VOLFS_SLOT_PIN_BITS; }
inline uint64_t holder_bit(uint32_t holder) { return uint64_t{1} << holder; }

// Polls pred every millisecond up to timeout; *waited gets the time taken.
bool poll_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
              std::chrono::microseconds* waited);

}  // namespace volfs::test

#endif  // VOLFS_TESTS_INTEGRATION_SLOT_UTIL_H_
