// bench.h: what volbench's parts share - the configuration, the figures a
// workload reports (samples of every rep, for volfs and its baseline side by
// side), the environment a workload runs in, and small I/O helpers.
// Invariant: every figure is recorded per rep; medians and spreads are only
// computed when reporting, so the table and the JSON always agree.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace volbench {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t kChunk = kMiB;  // sequential I/O unit

struct Config {
  std::vector<std::string> benchmarks;
  uint64_t size = kGiB;          // bytes per file of the size-driven workloads
  int reps = 5;                  // repetitions of every timed figure
  uint64_t ops = 100000;         // random 4 KiB operations per rep; metadata: ops/10 files
  uint64_t latency_ops = 20000;  // MARK/UNMARK pairs per rep
  uint64_t ranges_max = 100000;  // largest N of range_scaling (a file holds <= 262144 runs)
  std::string json;              // "" none, "-" stdout
  std::string mount;             // "" = mount a private volfs
  std::string baseline;          // "" = fresh mkdtemp under /dev/shm
};

// ----------------------------------------------------------------------------
// Figures.

enum class Better { kHigher, kLower };

// What a figure should reach; checked on the medians.
struct Target {
  enum Kind { kNone, kRatioAtLeast, kVolfsAtMost, kVolfsAtLeast } kind = kNone;
  double value = 0;
  std::string text() const;
};

struct Samples {
  std::vector<double> v;
  bool empty() const { return v.empty(); }
  double median() const;
  double min() const;
  double max() const;
};

struct Row {
  std::string workload;
  std::string metric;
  std::string unit;
  Better better = Better::kHigher;
  Samples volfs;     // empty: this row is a native anchor only
  Samples baseline;  // empty: no baseline for this row
  std::string baseline_label = "tmpfs";
  Target target;
  std::string note;

  // > 1 means volfs is better: volfs/baseline for throughput, baseline/volfs
  // for time and memory. NaN when either side is missing.
  double ratio() const;
  // "ok", "MISS" or "" when there is no target.
  std::string verdict() const;
};

// A row with its identity and comparison direction; figures come later.
Row make_row(const std::string& workload, const std::string& metric, const std::string& unit,
             Better better, Target target = {});

class Report {
 public:
  void add(Row r) { rows_.push_back(std::move(r)); }
  void skipped(const std::string& workload, const std::string& why);
  void failed(const std::string& workload, const std::string& why);
  void print_header(FILE* out, const std::string& intro) const;
  void print_rows_since(FILE* out, size_t first) const;
  size_t size() const { return rows_.size(); }
  // Workloads name their baseline "tmpfs"; with --baseline on another
  // filesystem, the rows from `first` on say which one instead.
  void relabel_baseline_since(size_t first, const std::string& fs);
  bool write_json(const std::string& path, const std::string& meta_json) const;
  bool any_failed() const { return !failures_.empty(); }

 private:
  std::vector<Row> rows_;
  std::vector<std::pair<std::string, std::string>> skips_;
  std::vector<std::pair<std::string, std::string>> failures_;
};

std::string json_escape(const std::string& s);

// ----------------------------------------------------------------------------
// Environment.

struct Env {
  const Config& cfg;
  std::string vdir;       // a fresh working directory on volfs
  std::string bdir;       // a fresh working directory on the baseline (tmpfs)
  std::string vmount;     // the volfs mountpoint
  pid_t daemon_pid = -1;  // -1: unknown (--mount of a daemon we cannot find)
  bool private_mount = true;
  std::string daemon_bin;  // for workloads that mount their own instance
  std::string scratch;     // a private directory for extra mountpoints and logs
  Report& report;
};

struct Workload {
  const char* name;
  const char* summary;
  void (*run)(Env&);  // nullptr: not available in this build
};

const std::vector<Workload>& all_workloads();

// Workload groups, one file each.
void run_seq_write(Env& env);
void run_seq_read_cold(Env& env);
void run_seq_read_hot(Env& env);
void run_rand_read_4k(Env& env);
void run_rand_write_4k(Env& env);
void run_mmap_first_touch(Env& env);
void run_mmap_second_pass(Env& env);
void run_mark_unmark(Env& env);
void run_range_scaling(Env& env);
void run_purge(Env& env);
void run_memory(Env& env);
void run_metadata(Env& env);
void run_cache(Env& env);

// ----------------------------------------------------------------------------
// Helpers (util.cc).

double now_sec();  // CLOCK_MONOTONIC
[[noreturn]] void throw_errno(const std::string& what);
void check(bool ok, const std::string& what);  // throws with errno if !ok

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

Fd open_file(const std::string& path, int flags, mode_t mode = 0600);
struct FreeDeleter {
  void operator()(char* p) const { free(p); }
};
using Buffer = std::unique_ptr<char, FreeDeleter>;
// A page-aligned buffer of n bytes of pseudo-random (incompressible, non-zero) data.
Buffer pattern_buffer(size_t n);
void write_all(int fd, const char* buf, uint64_t size, uint64_t chunk = kChunk);
void read_all(int fd, char* buf, uint64_t size, uint64_t chunk = kChunk);
// Creates path with `size` bytes written in 1 MiB chunks; returns the fd (O_RDWR).
Fd create_written(const std::string& path, uint64_t size);
void unlink_if_exists(const std::string& path);

// Page cache of an open file: pages cached and dirty (cachestat(2), or
// mincore(2) on a mapping where cachestat is missing).
struct CacheState {
  uint64_t cached = 0;
  uint64_t dirty = 0;
};
CacheState cache_state(int fd, uint64_t size);
// Asks the kernel to drop the file's clean page cache (POSIX_FADV_DONTNEED).
void drop_page_cache(int fd);

uint64_t page_size();
double percentile(std::vector<double> v, double p);  // p in [0, 1]
std::string human_bytes(uint64_t n);
std::string fmt(double v, int precision = 3);

// /proc readers.
uint64_t meminfo_kib(const std::string& field);  // 0 if missing
uint64_t vm_rss_bytes(pid_t pid);                // VmRSS of /proc/PID/status
// Bytes allocated by the tmpfs files a process holds open (sum of
// st_blocks*512 over /proc/PID/fd/* that are regular files on tmpfs): the
// volfs daemon's stores, memfds or files of its private tmpfs.
uint64_t store_bytes(pid_t pid);  // blocks of the daemon's stores (tmpfs files it holds open)

// Runs fn(side) `reps` times on each side, alternating volfs and baseline so
// that background noise spreads over both; side 0 is volfs, 1 the baseline.
void alternate(int reps, const std::function<void(int side, int rep)>& fn);

}  // namespace volbench
