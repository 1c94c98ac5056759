// Helpers shared by the files that implement Filesystem (filesystem*.cc);
// not part of the core's interface.
#pragma once

#include <time.h>

#include <cstddef>
#include <cstdint>

namespace volfs {

constexpr size_t kNameMax = 255;
constexpr size_t kXattrValueMax = 64 * 1024;
constexpr uint64_t kBogoDirentSize = 20;  // tmpfs reports directory sizes this way
constexpr int kWriteAttempts = 4;         // purges for space before ENOSPC

inline timespec now() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

}  // namespace volfs
