// System memory pressure: the sources that tell the purge worker to give
// memory back before the system thrashes or the OOM killer fires, the parsers
// of the kernel files they read, and the policy arithmetic. FUSE-free; the
// world (files, clock, log) comes in through PressureEnv, so tests drive it.
//
//   MemAvailablePressure  /proc/meminfo MemAvailable below mem_min=: purge
//                         the shortfall plus a step.
//   PsiPressure           PSI triggers on /proc/pressure/memory: a step that
//                         doubles while the stall goes on, reset once it ends.
//   CgroupPressure        the daemon's memory cgroup (v2 or v1) near its
//                         tightest limit: purge the shortfall below the
//                         headroom plus a step; its events (memory.events,
//                         memory.pressure, v1 memory.pressure_level) step.
//
// The sources only say how many pages; PurgeWorker runs the rounds and the
// purge engine takes the pages in its order (priority, then LRU). See
// docs/volatile-ranges.md, "System memory pressure", for the constants.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pressure_options.h"
#include "purge_worker.h"

namespace volfs::core {

// ---- The world ----------------------------------------------------------------

class PressureEnv {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~PressureEnv() = default;
  // The whole file, or nullopt if it cannot be read.
  virtual std::optional<std::string> read_file(const std::string& path) = 0;
  virtual Clock::time_point now() = 0;
  // One line for the daemon's log (stderr).
  virtual void log(const std::string& line) = 0;
};

// The real one: files through open/read, the steady clock, stderr.
class RealPressureEnv : public PressureEnv {
 public:
  std::optional<std::string> read_file(const std::string& path) override;
  Clock::time_point now() override { return Clock::now(); }
  void log(const std::string& line) override;
};

// ---- Parsers (pure) -----------------------------------------------------------

struct MemInfo {
  uint64_t total_bytes = 0;
  uint64_t available_bytes = 0;
};
// /proc/meminfo; nullopt without MemTotal and MemAvailable (kernels < 3.14).
std::optional<MemInfo> parse_meminfo(std::string_view text);

struct PsiAverages {
  double avg10 = 0, avg60 = 0, avg300 = 0;
  uint64_t total_us = 0;
};
struct PsiReading {
  std::optional<PsiAverages> some, full;
};
// /proc/pressure/memory or a cgroup's memory.pressure; nullopt if no line parses.
std::optional<PsiReading> parse_psi(std::string_view text);

// The value of `key` in "key value" lines (memory.stat, memory.events).
std::optional<uint64_t> parse_keyed(std::string_view text, std::string_view key);

// A cgroup limit file: "max" (v2) or a byte count. Unlimited (v2 "max", or
// v1's PAGE_COUNTER_MAX pages, anything from 2^62 up) is kUnlimited;
// malformed is nullopt.
inline constexpr uint64_t kUnlimited = UINT64_MAX;
std::optional<uint64_t> parse_cgroup_limit(std::string_view text);

// The daemon's cgroup paths from /proc/self/cgroup.
struct ProcCgroup {
  std::optional<std::string> v1_memory;  // "N:...memory...:/path"
  std::optional<std::string> v2;         // "0::/path"
};
ProcCgroup parse_proc_cgroup(std::string_view text);

// Where the hierarchies are mounted, from /proc/self/mountinfo: the mount
// point and the hierarchy path it shows (not "/" inside a cgroup namespace
// or a bind mount).
struct CgroupMount {
  std::string mountpoint;
  std::string root;
};
struct CgroupMounts {
  std::optional<CgroupMount> v1_memory, v2;
};
CgroupMounts parse_cgroup_mounts(std::string_view mountinfo);

// The directories from the cgroup at `path` up to the mount's root, own
// first; empty if `path` is not below the mount's root.
std::vector<std::string> cgroup_chain(const CgroupMount& m, const std::string& path);

// ---- Policy (pure) ------------------------------------------------------------

// Pages for `bytes`, rounded up.
inline uint64_t pages_for(uint64_t bytes, uint64_t page_size) {
  return bytes / page_size + (bytes % page_size != 0);
}

// For a byte source: the shortfall of `have` below `floor` plus one step, in
// pages; 0 without a shortfall. Freeing a page of volfs gives the system a
// page (the kernel's cached copy is reclaimable and counted as available
// already), so the shortfall is what to purge; the step keeps the next small
// allocation from starting another round at once.
uint64_t shortfall_pages(uint64_t have, uint64_t floor, uint64_t step, uint64_t page_size);

// For a stall source (no byte amount): the first stall purges `first`, each
// stall while the last is recent doubles the step up to `max`; a quiet
// `reset_after` since the last stall starts again from `first`.
class StallLadder {
 public:
  using Clock = std::chrono::steady_clock;
  StallLadder(uint64_t first, uint64_t max, Clock::duration reset_after)
      : first_(first), max_(max), reset_after_(reset_after), next_(first) {}
  // Bytes to purge for a stall now.
  uint64_t on_stall(Clock::time_point now);
  // What the next stall would purge.
  uint64_t next_step(Clock::time_point now) const;

 private:
  uint64_t first_, max_;
  Clock::duration reset_after_;
  uint64_t next_;
  std::optional<Clock::time_point> last_;
};

inline constexpr uint64_t kStallFirstStep = 32ull << 20;
inline constexpr uint64_t kStallMaxStep = 1ull << 30;

// ---- Sources ------------------------------------------------------------------

class MemAvailablePressure : public PressureSource {
 public:
  MemAvailablePressure(std::shared_ptr<PressureEnv> env, uint64_t floor_bytes, uint64_t step_bytes);
  uint64_t pages_to_purge(const AccountingSnapshot& s) override;
  PurgeCause cause() const override { return PurgeCause::kMemAvailable; }
  void purged(uint64_t pages) override { episode_pages_ += pages; }
  void report(PressureStatus& st) const override;

 private:
  std::shared_ptr<PressureEnv> env_;
  const uint64_t floor_, step_;
  std::atomic<uint64_t> available_{0};  // relaxed: a figure for STATS
  // The current episode (MemAvailable below the floor), for the log.
  bool in_episode_ = false;
  bool warned_ = false;
  PressureEnv::Clock::time_point episode_start_{};
  uint64_t episode_pages_ = 0, episode_rounds_ = 0, page_size_ = 4096;
};

// Owns the trigger descriptors it is given (closed on destruction).
class PsiPressure : public PressureSource {
 public:
  // `pressure_file` is read for the log line; `triggers` are watched.
  PsiPressure(std::shared_ptr<PressureEnv> env, std::vector<WaitFd> triggers,
              std::string pressure_file, StallLadder ladder);
  ~PsiPressure() override;
  uint64_t pages_to_purge(const AccountingSnapshot& s) override;
  PurgeCause cause() const override { return PurgeCause::kPsi; }
  std::vector<WaitFd> wait_fds() const override { return triggers_; }
  void ready(int fd, short revents) override;
  void report(PressureStatus& st) const override;

 private:
  std::shared_ptr<PressureEnv> env_;
  std::vector<WaitFd> triggers_;
  std::string pressure_file_;
  StallLadder ladder_;
  std::atomic<uint64_t> pending_{0};     // triggers since the last round; relaxed
  std::atomic<uint64_t> step_bytes_{0};  // relaxed: a figure for STATS
};

// How the daemon's memory cgroup is laid out.
struct CgroupSetup {
  int version = 0;                 // 1 or 2
  std::vector<std::string> chain;  // own directory first, up to the mount's root
};
// Finds the daemon's memory cgroup: v2 if its memory controller is on there,
// else v1's memory hierarchy; nullopt if neither.
std::optional<CgroupSetup> find_memory_cgroup(PressureEnv& env);

class CgroupPressure : public PressureSource {
 public:
  // `events`: descriptors of the tightest limited level (v2 memory.pressure
  // trigger, v1 memory.pressure_level eventfd), owned and closed here, plus
  // `keep_open` (v1's pressure_level file), closed here too.
  CgroupPressure(std::shared_ptr<PressureEnv> env, CgroupSetup setup, PressureOptions options,
                 std::vector<WaitFd> events = {}, std::vector<int> keep_open = {});
  ~CgroupPressure() override;
  uint64_t pages_to_purge(const AccountingSnapshot& s) override;
  PurgeCause cause() const override { return PurgeCause::kCgroup; }
  std::vector<WaitFd> wait_fds() const override { return events_; }
  void ready(int fd, short revents) override;
  void report(PressureStatus& st) const override;
  void purged(uint64_t pages) override { episode_pages_ += pages; }

  struct Level {
    std::string dir;
    uint64_t limit = kUnlimited;
    uint64_t used = 0;    // usage less inactive file cache: what the kernel cannot just drop
    uint64_t events = 0;  // v2 memory.events high + max + oom
  };
  // Reads one level; nullopt if its files cannot be read.
  std::optional<Level> read_level(const std::string& dir);

 private:
  std::shared_ptr<PressureEnv> env_;
  const CgroupSetup setup_;
  const PressureOptions options_;
  std::vector<WaitFd> events_;
  std::vector<int> keep_open_;
  StallLadder ladder_;
  std::vector<uint64_t> last_events_;                  // per level of the chain
  std::atomic<uint64_t> pending_{0};                   // relaxed
  std::atomic<uint64_t> limit_{0}, used_{0}, min_{0};  // relaxed: figures for STATS
  bool in_episode_ = false;
  PressureEnv::Clock::time_point episode_start_{};
  uint64_t episode_pages_ = 0;
  uint64_t page_size_ = 4096;
};

// ---- The daemon's set ---------------------------------------------------------

// Opens a PSI trigger: writes t.text() to `path` (O_RDWR | O_NONBLOCK).
// Returns the descriptor or -errno.
int open_psi_trigger(const std::string& path, const PsiTrigger& t);

struct SystemPressure {
  std::vector<std::unique_ptr<PressureSource>> sources;
  std::vector<std::string> notes;  // for the log: what is on, what is off and why
  std::string error;               // non-empty: an explicit option the kernel refused
};
// Builds the sources the options ask for, on the real system (`env` reads
// it). Run before mounting, so that an error leaves nothing mounted.
SystemPressure open_system_pressure(const PressureOptions& o,
                                    const std::shared_ptr<PressureEnv>& env);

}  // namespace volfs::core
