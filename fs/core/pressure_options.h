// PressureOptions: the mount options of the system memory-pressure sources
// (mem_min=, pressure_step=, psi=, psi_some=, psi_full=, cgroup=, cgroup_min=,
// nopressure) and their parser. Like options.h, the parser never guesses: a
// malformed value is a one-line error naming the option.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace volfs::core {

// A PSI trigger: stall_ms of "some" (or "full") stall within window_ms.
struct PsiTrigger {
  bool full = false;
  uint32_t stall_ms = 0;  // 0: off
  uint32_t window_ms = 0;
  bool on() const { return stall_ms != 0; }
  // What is written to a pressure file: "some 150000 2000000" (microseconds).
  std::string text() const;
};

struct PressureOptions {
  uint64_t mem_min_bytes = 0;      // MemAvailable floor; 0: that source is off
  uint64_t step_bytes = 64 << 20;  // headroom purged beyond a byte shortfall
  PsiTrigger psi_some{false, 150, 2000};
  PsiTrigger psi_full{true, 50, 2000};
  // A trigger the kernel refuses is fatal when given explicitly, a note when
  // it is the default (kernels without PSI, windows the kernel does not allow).
  bool psi_given = false;
  bool cgroup = true;
  uint64_t cgroup_min_bytes = 0;  // headroom below the cgroup limit; with
  unsigned cgroup_min_pct = 0;    // both 0: 5% of the limit, 16m..1g

  bool any_system_source() const {
    return mem_min_bytes || psi_some.on() || psi_full.on() || cgroup;
  }
};

inline constexpr uint64_t kMemMinFloor = 64ull << 20;
inline constexpr uint64_t kMemMinCeiling = 2ull << 30;
inline constexpr unsigned kMemMinDefaultPct = 5;
inline constexpr uint64_t kCgroupMinFloor = 16ull << 20;
inline constexpr uint64_t kCgroupMinCeiling = 1ull << 30;
inline constexpr unsigned kCgroupMinDefaultPct = 5;

// 5% of RAM, at least 64m and at most 2g (and never above a quarter of RAM).
uint64_t default_mem_min(uint64_t ram_bytes);
PressureOptions default_pressure_options(uint64_t ram_bytes);
// The headroom kept below a cgroup limit of limit_bytes.
uint64_t cgroup_min_for(const PressureOptions& o, uint64_t limit_bytes);

// If `arg` (one -o option, "key" or "key=value") is a pressure option,
// applies it and returns "" or a one-line error; nullopt if it is not one.
std::optional<std::string> parse_pressure_option(std::string_view arg, uint64_t ram_bytes,
                                                 PressureOptions& o);
// Checks the combination; returns an error message or "".
std::string validate_pressure(const PressureOptions& o, uint64_t ram_bytes);

}  // namespace volfs::core
