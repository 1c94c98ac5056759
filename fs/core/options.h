// MountOptions: the daemon's own mount options (tmpfs-compatible size=,
// nr_inodes=, mode=, uid=, gid=, and the purge settings) and their parsers.
// Parsers never guess: a malformed value is an error naming the option.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pressure_options.h"
#include "result.h"

namespace volfs::core {

struct MountOptions {
  uint64_t size_bytes = 0;  // size limit of stored data
  uint64_t nr_inodes = 0;
  mode_t root_mode = 01777;
  uid_t uid = 0;
  gid_t gid = 0;
  unsigned purge_high_pct = 0;  // 0: no watermark purging
  unsigned purge_low_pct = 0;
  bool purge_on_mark = false;
  // FUSE passthrough for regular files where the kernel and libfuse allow
  // it (passthrough=off forces the cached io mode everywhere).
  bool passthrough = true;
  // Kernel read-ahead of the mount (its bdi's read_ahead_kb); 0 keeps the
  // kernel's default. See docs/benchmarks.md for why 512 KiB.
  uint64_t readahead_bytes = 512 << 10;
  // System memory-pressure sources (pressure_options.h).
  PressureOptions pressure;
};

inline constexpr uint64_t kMaxReadahead = 64ull << 20;

// "1024", "64k", "1m", "2G", "1t" (powers of 1024), or "N%" of ram_bytes.
// Result is in bytes; an error means malformed or overflowing.
Result<uint64_t> parse_size(std::string_view text, uint64_t ram_bytes);
// A plain count with optional k/m/g suffix (powers of 1024).
Result<uint64_t> parse_count(std::string_view text);
// Octal permission bits, at most 07777.
Result<mode_t> parse_mode(std::string_view text);
// A whole percentage 0..100 ("80" or "80%").
Result<unsigned> parse_percent(std::string_view text);

// Defaults as tmpfs: size 50% of RAM, nr_inodes half the RAM pages.
MountOptions default_mount_options(uint64_t ram_bytes, uint64_t page_size);
// Checks combinations; returns an error message or "".
std::string validate(const MountOptions& o, uint64_t page_size);

}  // namespace volfs::core
