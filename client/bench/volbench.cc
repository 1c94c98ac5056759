// volbench: volfs's benchmark tool, after LevelDB's db_bench. Runs named
// workloads against volfs and a baseline (tmpfs, or the native syscall) in the
// same run and prints both figures, their ratio and the target; --json for
// machines. Without --mount it mounts a private volfs (the daemon next to its
// own executable) and always unmounts it, on errors and signals too.
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "bench.h"
#include "mount.h"

#include "source_commit.h"  // generated at build time: VOLBENCH_SOURCE_COMMIT

namespace volbench {

const std::vector<Workload>& all_workloads() {
  static const std::vector<Workload> w = {
      {"seq_write", "1 MiB pwrites of a new --size file, GB/s", run_seq_write},
      {"seq_read_cold", "1 MiB reads, page cache dropped first, GB/s", run_seq_read_cold},
      {"seq_read_hot", "1 MiB reads of a cached file, GB/s", run_seq_read_hot},
      {"rand_read_4k", "4 KiB preads at random pages, page cache dropped first, kIOPS",
       run_rand_read_4k},
      {"rand_write_4k", "4 KiB pwrites at random pages, kIOPS", run_rand_write_4k},
      {"mmap_first_touch", "read a fresh mapping of an uncached file, GB/s", run_mmap_first_touch},
      {"mmap_second_pass", "read the same mapping again, GB/s", run_mmap_second_pass},
      {"mark_unmark", "MARK/UNMARK latency vs native anchors, us; slot pin/unpin, ns",
       run_mark_unmark},
      {"range_scaling", "MARK/UNMARK latency with 10^3..10^5 ranges in the file, us",
       run_range_scaling},
      {"purge", "explicit purge (clean, dirty mapped) GB/s; watermark purge delay, ms", run_purge},
      {"memory", "memory per GiB stored, vs tmpfs", run_memory},
      {"metadata", "create (+4 KiB write), stat, unlink of --ops/10 small files, kops/s",
       run_metadata},
      {"cache", "SharedCache get/put latency and throughput; FUSE requests per get", run_cache},
  };
  return w;
}

namespace {

constexpr int kUsageError = 2;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: volbench [--benchmarks=LIST] [--size=N] [--reps=N] [--json=FILE|-]\n"
               "                [--mount=DIR] [--baseline=DIR] [--ops=N] [--latency_ops=N]\n"
               "                [--ranges_max=N]\n"
               "\n"
               "Runs workloads on volfs and on a baseline in the same run; prints both\n"
               "figures (median of reps [min-max]) and their ratio (> 1: volfs is better).\n"
               "\n"
               "  --benchmarks=LIST  comma-separated workloads, or 'all' (default: all)\n"
               "  --size=N           file size of the size-driven workloads, with k/m/g\n"
               "                     suffix, a multiple of 1 MiB (default 1g; 256m for a\n"
               "                     quick run)\n"
               "  --reps=N           repetitions of every figure (default 5)\n"
               "  --ops=N            random 4 KiB operations per rep (default 100000);\n"
               "                     metadata creates --ops/10 files per rep\n"
               "  --latency_ops=N    MARK/UNMARK pairs per rep, and slot pin/unpin pairs\n"
               "                     (default 20000)\n"
               "  --ranges_max=N     largest range count of range_scaling, a power of ten\n"
               "                     >= 1000 (default 100000; a file holds <= 262144 runs)\n"
               "  --json=FILE|-      also write the results as JSON ('-': stdout; the\n"
               "                     table then goes to stderr)\n"
               "  --mount=DIR        use an existing volfs mount (default: mount a private\n"
               "                     one with the volfs daemon found next to volbench)\n"
               "  --baseline=DIR     baseline directory (default: a fresh directory under\n"
               "                     /dev/shm); volbench works in a fresh subdirectory\n"
               "\n"
               "workloads:\n");
  for (const Workload& w : all_workloads()) std::fprintf(out, "  %-17s %s\n", w.name, w.summary);
}

[[noreturn]] void bad_usage(const std::string& msg) {
  std::fprintf(stderr, "volbench: %s\nTry 'volbench --help'.\n", msg.c_str());
  std::exit(kUsageError);
}

std::optional<uint64_t> parse_count(const std::string& s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
  if (errno) return std::nullopt;
  return v;
}

// N with an optional k/m/g/t suffix (binary), optionally followed by "iB" or "B".
std::optional<uint64_t> parse_size(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  for (const char* tail : {"ib", "b"}) {
    size_t n = std::strlen(tail);
    if (s.size() > n && s.compare(s.size() - n, n, tail) == 0) {
      s.resize(s.size() - n);
      break;
    }
  }
  uint64_t mult = 1;
  if (!s.empty() && std::strchr("kmgt", s.back())) {
    mult = s.back() == 'k' ? kKiB : s.back() == 'm' ? kMiB : s.back() == 'g' ? kGiB : kGiB * 1024;
    s.pop_back();
  }
  std::optional<uint64_t> v = parse_count(s);
  if (!v || *v > UINT64_MAX / mult) return std::nullopt;
  return *v * mult;
}

Config parse_flags(int argc, char** argv) {
  Config cfg;
  bool seen_benchmarks = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) bad_usage("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    static const char* const kKnown[] = {"benchmarks", "size", "reps",  "ops",     "latency_ops",
                                         "ranges_max", "json", "mount", "baseline"};
    if (std::find_if(std::begin(kKnown), std::end(kKnown),
                     [&](const char* k) { return name == k; }) == std::end(kKnown)) {
      bad_usage("unknown flag --" + name);
    }
    if (!has_value) {
      if (i + 1 >= argc) bad_usage("--" + name + " needs a value");
      value = argv[++i];
    }
    auto count = [&](uint64_t min) {
      std::optional<uint64_t> v = parse_count(value);
      if (!v || *v < min) {
        std::string msg = "--" + name;
        msg += "=" + value + ": expected an integer >= " + std::to_string(min);
        bad_usage(msg);
      }
      return *v;
    };
    if (name == "benchmarks") {
      seen_benchmarks = true;
      cfg.benchmarks.clear();
      size_t pos = 0;
      while (pos <= value.size()) {
        size_t comma = value.find(',', pos);
        std::string b =
            value.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        if (!b.empty()) cfg.benchmarks.push_back(b);
        if (comma == std::string::npos) break;
        pos = comma + 1;
      }
      if (cfg.benchmarks.empty()) bad_usage("--benchmarks is empty");
    } else if (name == "size") {
      std::optional<uint64_t> v = parse_size(value);
      if (!v || *v < kMiB || *v % kMiB) {
        bad_usage("--size=" + value + ": expected a multiple of 1 MiB, e.g. 256m or 1g");
      }
      cfg.size = *v;
    } else if (name == "reps") {
      cfg.reps = static_cast<int>(std::min<uint64_t>(count(1), 1000));
    } else if (name == "ops") {
      cfg.ops = count(1);
    } else if (name == "latency_ops") {
      cfg.latency_ops = count(10);
    } else if (name == "ranges_max") {
      uint64_t v = count(1000);
      uint64_t p = 1000;
      while (p < v) p *= 10;
      if (p != v) bad_usage("--ranges_max=" + value + ": expected a power of ten >= 1000");
      cfg.ranges_max = v;
    } else if (name == "json") {
      if (value.empty()) bad_usage("--json needs a file name or -");
      cfg.json = value;
    } else if (name == "mount") {
      cfg.mount = value;
    } else if (name == "baseline") {
      cfg.baseline = value;
    }
  }
  if (!seen_benchmarks || (cfg.benchmarks.size() == 1 && cfg.benchmarks[0] == "all")) {
    cfg.benchmarks.clear();
    for (const Workload& w : all_workloads()) cfg.benchmarks.push_back(w.name);
  }
  for (const std::string& b : cfg.benchmarks) {
    bool known = std::any_of(all_workloads().begin(), all_workloads().end(),
                             [&](const Workload& w) { return b == w.name; });
    if (!known) {
      std::string msg = "unknown benchmark '" + b + "'; known: all";
      for (const Workload& w : all_workloads()) msg.append(" ").append(w.name);
      bad_usage(msg);
    }
  }
  for (std::string* dir : {&cfg.mount, &cfg.baseline}) {
    if (dir->empty()) continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(*dir, ec)) {
      bad_usage((dir == &cfg.mount ? "--mount=" : "--baseline=") + *dir + ": not a directory");
    }
    *dir = std::filesystem::canonical(*dir).string();
  }
  if (!cfg.mount.empty() && !is_volfs(cfg.mount)) {
    bad_usage("--mount=" + cfg.mount + ": not a volfs mount");
  }
  return cfg;
}

std::string self_dir() {
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
  return exe.parent_path().string();
}

std::string utc_now() {
  char buf[64];
  time_t t = time(nullptr);
  tm tm_utc{};
  gmtime_r(&t, &tm_utc);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
  return buf;
}

// The first three fields of /proc/loadavg: how busy the machine was, which
// on a shared machine explains much of the spread.
std::string load_average() {
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (!f) return "unknown";
  double a = 0, b = 0, c = 0;
  int n = std::fscanf(f, "%lf %lf %lf", &a, &b, &c);
  std::fclose(f);
  if (n != 3) return "unknown";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", a, b, c);
  return buf;
}

std::string fs_label(const std::string& dir) {
  struct statfs s {};
  if (::statfs(dir.c_str(), &s) != 0) return "baseline";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0x01021994:
      return "tmpfs";
    case 0xEF53:
      return "ext4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794C7630:
      return "overlayfs";
    case 0x65735546:
      return "fuse";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "fs 0x%lx", static_cast<unsigned long>(s.f_type));
  return buf;
}

// Size limit of the private mount: room for the largest workload (the range
// scaling test holds ranges_max written pages) without reaching swapless RAM.
uint64_t private_mount_limit(const Config& cfg) {
  uint64_t ram = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * page_size();
  uint64_t want = std::max({3 * cfg.size, 2 * cfg.ranges_max * page_size(), 2 * kGiB});
  return std::min(want, ram / 4 * 3) / kMiB * kMiB;
}

int run(int argc, char** argv) {
  Config cfg = parse_flags(argc, argv);
  // A closed output pipe (volbench --json - | head) must not kill us before
  // the cleanup: writes fail with EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);
  Cleanup::install_signal_thread();
  FILE* out = cfg.json == "-" ? stderr : stdout;
  Report report;
  int status = 0;
  try {
    Env env{cfg, "", "", "", -1, true, self_dir() + "/volfs", "", report};
    const char* tmp = std::getenv("TMPDIR");
    env.scratch = make_temp_dir(tmp && *tmp ? tmp : "/tmp", "volbench");
    const std::string scratch = env.scratch;
    Cleanup::add([scratch] { remove_tree(scratch); });

    std::unique_ptr<PrivateMount> mount;
    std::string mount_desc;
    if (cfg.mount.empty()) {
      if (::access(env.daemon_bin.c_str(), X_OK) != 0) {
        throw std::runtime_error("volfs daemon not found at " + env.daemon_bin +
                                 " (build the 'volfs' target, or pass --mount)");
      }
      std::string opts = "size=" + std::to_string(private_mount_limit(cfg) / kMiB) + "m";
      std::string dir = make_temp_dir(env.scratch, "main");
      mount = std::make_unique<PrivateMount>(env.daemon_bin, dir, opts);
      env.vmount = env.vdir = mount->mountpoint();
      env.daemon_pid = mount->pid();
      mount_desc =
          "private mount " + env.vmount + " (-o " + opts + ", daemon " + env.daemon_bin + ")";
    } else {
      env.private_mount = false;
      env.vmount = cfg.mount;
      env.vdir = make_temp_dir(cfg.mount, "volbench");
      const std::string vdir = env.vdir;
      Cleanup::add([vdir] { remove_tree(vdir); });
      env.daemon_pid = find_daemon_pid(cfg.mount);
      mount_desc = "existing mount " + cfg.mount + ", working in " + env.vdir +
                   (env.daemon_pid > 0 ? ", daemon pid " + std::to_string(env.daemon_pid)
                                       : ", daemon pid not found");
    }
    env.bdir = make_temp_dir(cfg.baseline.empty() ? "/dev/shm" : cfg.baseline, "volbench");
    const std::string bdir = env.bdir;
    const std::string baseline_fs = fs_label(env.bdir);
    Cleanup::add([bdir] { remove_tree(bdir); });

    const std::string load_start = load_average();
    const std::string date_start = utc_now();
    utsname u{};
    ::uname(&u);
    std::string intro =
        "volbench " + date_start + ", source " + VOLBENCH_SOURCE_COMMIT + ", " + u.sysname + " " +
        u.release + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, load average " +
        load_average() + "\n" + "volfs:    " + mount_desc + "\n" +
        "baseline: " + fs_label(env.bdir) + " " + env.bdir + "\n" + "size " +
        human_bytes(cfg.size) + ", reps " + std::to_string(cfg.reps) + ", benchmarks:";
    for (const std::string& b : cfg.benchmarks) intro += " " + b;
    intro += "\n";
    report.print_header(out, intro);

    for (const std::string& name : cfg.benchmarks) {
      const Workload& w = *std::find_if(all_workloads().begin(), all_workloads().end(),
                                        [&](const Workload& x) { return name == x.name; });
      if (!w.run) {
        report.skipped(w.name,
                       "not yet available: volfs/shared_cache.h (volfs::SharedCache) "
                       "did not exist when volbench was configured");
        continue;
      }
      size_t first = report.size();
      double t0 = now_sec();
      try {
        w.run(env);
      } catch (const std::exception& e) {
        if (Cleanup::interrupted()) break;  // the signal thread is cleaning up and exiting
        report.failed(w.name, e.what());
        if (mount && !is_fuse_mount(mount->mountpoint())) {
          report.failed(w.name, "the volfs mount is gone; daemon log:\n" + mount->log_tail());
          report.print_rows_since(out, first);
          break;
        }
      }
      if (baseline_fs != "tmpfs") report.relabel_baseline_since(first, baseline_fs);
      report.print_rows_since(out, first);
      std::fprintf(out, "%-16s   (%.1f s)\n", "", now_sec() - t0);
      std::fflush(out);
    }
    std::fprintf(out, "\nload average at the end: %s\n", load_average().c_str());
    if (!cfg.json.empty()) {
      std::string meta =
          "{\"date_start\": \"" + date_start + "\", \"date_end\": \"" + utc_now() +
          "\", \"source_commit\": \"" + json_escape(VOLBENCH_SOURCE_COMMIT) + "\", \"kernel\": \"" +
          json_escape(u.release) +
          "\", \"cpus\": " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) +
          ", \"load_average_start\": \"" + load_start + "\", \"load_average_end\": \"" +
          load_average() + "\"" + ", \"size\": " + std::to_string(cfg.size) +
          ", \"reps\": " + std::to_string(cfg.reps) + ", \"ops\": " + std::to_string(cfg.ops) +
          ", \"latency_ops\": " + std::to_string(cfg.latency_ops) +
          ", \"ranges_max\": " + std::to_string(cfg.ranges_max) + ", \"volfs\": \"" +
          json_escape(mount_desc) + "\", \"baseline\": \"" +
          json_escape(fs_label(env.bdir) + " " + env.bdir) +
          "\", \"ratio\": \"> 1 means volfs is better: volfs/baseline for "
          "throughput, baseline/volfs for latency, time and memory\"}";
      if (!report.write_json(cfg.json, meta)) {
        std::fprintf(stderr, "volbench: cannot write %s\n", cfg.json.c_str());
        status = 1;
      }
    }
    mount.reset();  // unmounts before the scratch directory goes
  } catch (const std::exception& e) {
    std::fprintf(stderr, "volbench: %s\n", e.what());
    status = 1;
  }
  Cleanup::run_all();
  if (report.any_failed()) status = 1;
  return status;
}

}  // namespace
}  // namespace volbench

int main(int argc, char** argv) { return volbench::run(argc, argv); }
