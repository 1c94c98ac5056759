// Helpers shared by the files that implement Filesystem (filesystem*.cc);
// not part of the core's interface.
#pragma once

#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace volfs::core {

constexpr size_t kNameMax = 255;
constexpr size_t kXattrValueMax = size_t{64} * 1024;
constexpr uint64_t kBogoDirentSize = 20;  // tmpfs reports directory sizes this way
constexpr int kWriteAttempts = 4;         // purges for space before ENOSPC
// How long a write that finds the mount full waits for the last close of a
// file deleted while open (Filesystem::purge_for_space), per attempt.
constexpr std::chrono::milliseconds kReleaseGrace{20};
// How long a write or an open waits at most for the drops and releases
// under way (Filesystem::wait_for_drops); they take about a millisecond per
// 8 MiB.
constexpr std::chrono::milliseconds kDropWait{1000};
// Extended attributes are charged against size= (as tmpfs does) by bytes:
// name + value + this much for the map node that holds them, rounded up to
// pages per inode.
constexpr uint64_t kXattrOverhead = 64;
// Runs of distinct page state per file (PageMap nodes, ~100 bytes of daemon
// heap each). Resident pages are charged against size=, but a volatile hole
// or a purged page costs a run and no page, so their number is bounded per
// file: a MARK, or a write into volatile pages, that could take a file past
// it fails with ENOSPC (docs/volatile-ranges.md).
constexpr uint64_t kMaxRunsPerFile = uint64_t{1} << 18;
// Times in a row a purge may find the queue's front entry empty before it
// stops (filesystem_purge.cc): each needs a race with another purge and a
// write, so a longer run means the queue lost step with a file.
constexpr int kMaxPurgeMisses = 4;
// Page ranges of failed write-backs remembered per file (Inode::wb_failed).
constexpr size_t kMaxWritebackRanges = 64;

inline timespec now() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

}  // namespace volfs::core
