// pressure_demo: the scenario of issue 9 on a mounted volfs, measured. It
// writes volatile data (and a little non-volatile data), then allocates
// anonymous memory in steps until it holds all but --leave of what the
// system had available before the volatile data was written, holds it, and
// lets go. Every 100 ms it records MemAvailable, PSI and the mount's figures.
// At the end it checks the promises (non-volatile data whole, UNMARK answers
// PURGED for exactly the purged pages) and writes a one-line JSON summary.
//
// Safety on a shared machine: the hog checks MemAvailable every 16 MiB it
// touches; below --abort-below + 128 MiB it pauses (up to 30 s) for memory to
// come back, below --abort-below it frees everything and stops; with
// --stop-below (the run with pressure sources off) it stops there instead of
// going on towards the OOM killer. Driven by scripts/pressure-demo.sh, which
// mounts and always unmounts; never part of the test suite.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = 1ull << 30;

uint64_t parse_bytes(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  uint64_t mul = 1;
  switch (*end) {
    case 'k':
    case 'K':
      mul = 1 << 10;
      break;
    case 'm':
    case 'M':
      mul = kMiB;
      break;
    case 'g':
    case 'G':
      mul = kGiB;
      break;
    case '\0':
      break;
    default:
      std::fprintf(stderr, "pressure_demo: bad size '%s'\n", s);
      std::exit(2);
  }
  return static_cast<uint64_t>(v * static_cast<double>(mul));
}

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint64_t meminfo(const std::string& text, const char* key) {
  size_t k = text.find(key);
  if (k == std::string::npos) return 0;
  return std::strtoull(text.c_str() + k + std::strlen(key), nullptr, 10) * 1024;
}
uint64_t mem_available() { return meminfo(read_file("/proc/meminfo"), "MemAvailable:"); }

struct Psi {
  double some10 = 0, full10 = 0;
  uint64_t some_total_us = 0;
};
Psi psi() {
  Psi p;
  std::string t = read_file("/proc/pressure/memory");
  std::sscanf(t.c_str(), "some avg10=%lf avg60=%*f avg300=%*f total=%" SCNu64, &p.some10,
              &p.some_total_us);
  size_t f = t.find("full avg10=");
  if (f != std::string::npos) std::sscanf(t.c_str() + f, "full avg10=%lf", &p.full10);
  return p;
}

uint64_t vmstat(const char* key) {
  std::string t = read_file("/proc/vmstat");
  std::string k = std::string("\n") + key + " ";
  size_t at = t.find(k);
  return at == std::string::npos ? 0 : std::strtoull(t.c_str() + at + k.size(), nullptr, 10);
}

struct Options {
  std::string mount;
  uint64_t volatile_bytes = 6 * kGiB;
  uint64_t keep_bytes = 256 * kMiB;
  uint64_t leave = 2 * kGiB;
  uint64_t step = 256 * kMiB;
  uint64_t abort_below = kGiB;
  uint64_t stop_below = 0;
  double hold_s = 5;
  std::string out = "pressure.tsv";
};

struct Sample {
  double t;
  uint64_t avail, free_;
  Psi p;
  volfs_stats s;
  uint64_t hog;
  int phase;
};

class Demo {
 public:
  explicit Demo(Options o) : o_(std::move(o)) {}
  int run();

 private:
  void sampler();
  bool write_volatile();
  void hog();
  bool verify(std::string* why);
  volfs_stats stats() {
    volfs_stats s{};
    if (volfs_get_stats(root_, &s) != 0) std::memset(&s, 0, sizeof s);
    return s;
  }
  double now_s() const { return std::chrono::duration<double>(Clock::now() - t0_).count(); }

  Options o_;
  Clock::time_point t0_ = Clock::now();
  int root_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> hog_bytes_{0};
  std::atomic<int> phase_{0};  // 0 idle, 1 writing, 2 settle, 3 hog, 4 hold, 5 released
  std::mutex mu_;
  std::vector<Sample> samples_;
  std::vector<std::string> files_;
  // What the hog saw.
  uint64_t a0_ = 0, target_ = 0, min_avail_ = UINT64_MAX;
  uint64_t pauses_ = 0, alloc_failures_ = 0;
  double pause_s_ = 0, hog_start_ = 0, hog_end_ = 0;
  bool reached_ = false, aborted_ = false, stopped_ = false;
  std::string end_reason_;
};

void Demo::sampler() {
  auto next = Clock::now();
  while (!stop_) {
    std::string mi = read_file("/proc/meminfo");
    Sample x{now_s(),
             meminfo(mi, "MemAvailable:"),
             meminfo(mi, "MemFree:"),
             psi(),
             stats(),
             hog_bytes_.load(),
             phase_.load()};
    {
      std::lock_guard lock(mu_);
      samples_.push_back(x);
    }
    next += 100ms;
    std::this_thread::sleep_until(next);
  }
}

bool Demo::write_volatile() {
  const uint64_t file_bytes = 256 * kMiB;
  std::vector<char> buf(4 * kMiB);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<char>(i * 131 + 7);
  auto write_file = [&](const std::string& path, uint64_t bytes, bool mark) {
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    for (uint64_t off = 0; off < bytes; off += buf.size()) {
      if (::pwrite(fd, buf.data(), buf.size(), static_cast<off_t>(off)) !=
          static_cast<ssize_t>(buf.size())) {
        ::close(fd);
        return false;
      }
    }
    bool ok = !mark || volfs_mark(fd, 0, 0, 0) == 0;
    ::close(fd);
    return ok;
  };
  if (!write_file(o_.mount + "/keep", o_.keep_bytes, false)) return false;
  for (uint64_t done = 0, n = 0; done < o_.volatile_bytes; done += file_bytes, ++n) {
    std::string path = o_.mount + "/volatile." + std::to_string(n);
    if (!write_file(path, std::min(file_bytes, o_.volatile_bytes - done), true)) return false;
    files_.push_back(path);
  }
  return true;
}

void Demo::hog() {
  target_ = a0_ > o_.leave ? a0_ - o_.leave : 0;
  const long page = sysconf(_SC_PAGESIZE);
  std::vector<std::pair<void*, uint64_t>> chunks;
  hog_start_ = now_s();
  // Pause 64 MiB above the abort line, go on 128 MiB above it: below the
  // default mem_min (1.2 GiB here), so only a hog that outruns volfs's
  // 100 ms round pauses, and volfs's round brings it back.
  const uint64_t pause_at = o_.abort_below + 64 * kMiB;
  auto check = [&]() -> bool {  // false: stop
    uint64_t a = mem_available();
    min_avail_ = std::min(min_avail_, a);
    if (a < o_.abort_below) {
      aborted_ = true;
      end_reason_ = "MemAvailable below --abort-below";
      return false;
    }
    if (o_.stop_below && a < o_.stop_below) {
      stopped_ = true;
      end_reason_ = "MemAvailable below --stop-below";
      return false;
    }
    if (a < pause_at) {
      // Give volfs (or anything) the chance to bring memory back.
      ++pauses_;
      auto t = Clock::now();
      while (mem_available() < pause_at + 64 * kMiB) {
        if (Clock::now() - t > 30s) {
          aborted_ = true;
          end_reason_ = "MemAvailable stayed under --abort-below + 128 MiB for 30 s";
          return false;
        }
        std::this_thread::sleep_for(5ms);
      }
      pause_s_ += std::chrono::duration<double>(Clock::now() - t).count();
    }
    return true;
  };
  bool go = true;
  while (go && hog_bytes_ < target_) {
    uint64_t n = std::min(o_.step, target_ - hog_bytes_);
    n -= n % static_cast<uint64_t>(page);
    if (n == 0) break;
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ++alloc_failures_;
      end_reason_ = "mmap failed";
      break;
    }
    chunks.push_back({p, n});
    for (uint64_t off = 0; off < n; off += static_cast<uint64_t>(page)) {
      if (off % (16 * kMiB) == 0 && !(go = check())) break;
      static_cast<char*>(p)[off] = 1;
      hog_bytes_ += static_cast<uint64_t>(page);
    }
  }
  reached_ = hog_bytes_ >= target_ - static_cast<uint64_t>(page);
  if (reached_) end_reason_ = "reached the target";
  hog_end_ = now_s();
  if (!aborted_) {
    phase_ = 4;
    auto until = Clock::now() + std::chrono::duration<double>(o_.hold_s);
    while (Clock::now() < until) {
      min_avail_ = std::min(min_avail_, mem_available());
      std::this_thread::sleep_for(10ms);
    }
  }
  phase_ = 5;
  for (auto [p, n] : chunks) munmap(p, n);
  hog_bytes_ = 0;
}

bool Demo::verify(std::string* why) {
  std::vector<char> want(4 * kMiB), got(4 * kMiB);
  for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<char>(i * 131 + 7);
  int fd = ::open((o_.mount + "/keep").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return *why = "cannot open keep", false;
  for (uint64_t off = 0; off < o_.keep_bytes; off += got.size()) {
    if (::pread(fd, got.data(), got.size(), static_cast<off_t>(off)) !=
            static_cast<ssize_t>(got.size()) ||
        got != want) {
      ::close(fd);
      return *why = "non-volatile data changed at " + std::to_string(off), false;
    }
  }
  ::close(fd);
  uint64_t purged_pages = 0;
  for (const std::string& f : files_) {
    fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return *why = "cannot open " + f, false;
    for (uint64_t off = 0; off < 256 * kMiB; off += 4 * kMiB) {
      volfs_status st{};
      int purged = -1;
      if (volfs_get_status(fd, off, 4 * kMiB, &st) != 0 ||
          volfs_unmark(fd, off, 4 * kMiB, &purged) != 0) {
        ::close(fd);
        return *why = "status/unmark failed on " + f, false;
      }
      if ((st.purged_pages > 0) != (purged == 1)) {
        ::close(fd);
        return *why = "UNMARK of " + f + " at " + std::to_string(off) + " answered " +
                      (purged ? "PURGED" : "INTACT") + " with " + std::to_string(st.purged_pages) +
                      " purged pages",
               false;
      }
      purged_pages += st.purged_pages;
    }
    ::close(fd);
  }
  volfs_stats s = stats();
  if (purged_pages != s.pages_purged_total) {
    return *why = "purged pages by status " + std::to_string(purged_pages) + " != stats " +
                  std::to_string(s.pages_purged_total),
           false;
  }
  return true;
}

int Demo::run() {
  root_ = ::open(o_.mount.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  volfs_stats s0{};
  if (root_ < 0 || volfs_get_stats(root_, &s0) != 0) {
    std::fprintf(stderr, "pressure_demo: %s is not a volfs mount\n", o_.mount.c_str());
    return 1;
  }
  const uint64_t oom0 = vmstat("oom_kill");
  a0_ = mem_available();
  std::thread sampling([this] { sampler(); });
  phase_ = 1;
  bool wrote = write_volatile();
  phase_ = 2;
  std::this_thread::sleep_for(2s);
  if (wrote) {
    phase_ = 3;
    hog();
  }
  phase_ = 5;
  std::this_thread::sleep_for(3s);
  stop_ = true;
  sampling.join();
  std::string why;
  bool promises = wrote && verify(&why);
  volfs_stats s = stats();
  const uint64_t oom_kills = vmstat("oom_kill") - oom0;

  // The figures, from the samples.
  std::FILE* out = std::fopen(o_.out.c_str(), "w");
  if (!out) {
    std::perror(o_.out.c_str());
    return 1;
  }
  std::fprintf(out,
               "# t_s\tmem_available_mib\tmem_free_mib\tpsi_some_avg10\tpsi_full_avg10\t"
               "psi_some_total_ms\tresident_mib\tvolatile_resident_mib\tpurged_total_mib\t"
               "memavail_purged_mib\tpsi_purged_mib\tcgroup_purged_mib\thog_mib\tphase\n");
  const double page = static_cast<double>(s.page_size ? s.page_size : 4096);
  const uint64_t floor = s.mem_min_bytes;
  double t_signal = -1, t_back = -1, final_avail_hold = 0;
  uint64_t max_shortfall = 0;
  for (const Sample& x : samples_) {
    auto mib = [](double b) { return b / static_cast<double>(kMiB); };
    std::fprintf(
        out, "%.2f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\n",
        x.t, mib(x.avail), mib(x.free_), x.p.some10, x.p.full10, x.p.some_total_us / 1000.0,
        mib(x.s.resident_pages * page), mib(x.s.volatile_resident_pages * page),
        mib(x.s.pages_purged_total * page), mib(x.s.sources[VOLFS_SOURCE_MEMAVAIL].purged_bytes),
        mib(x.s.sources[VOLFS_SOURCE_PSI].purged_bytes),
        mib(x.s.sources[VOLFS_SOURCE_CGROUP].purged_bytes), mib(x.hog), x.phase);
    // The first MemAvailable shortfall the daemon saw, and the first sample
    // after it with MemAvailable at the floor again.
    if (t_signal < 0 && x.s.sources[VOLFS_SOURCE_MEMAVAIL].signals > 0) t_signal = x.t;
    if (t_signal >= 0 && t_back < 0 && x.t > t_signal && floor && x.avail >= floor) t_back = x.t;
    if (x.phase == 4) final_avail_hold = static_cast<double>(x.avail);
    // What MemAvailable would have been without the purges so far: the
    // shortfall volfs had to cover.
    // (floor - (MemAvailable - purged so far)), the most of it.
    uint64_t purged = x.s.pages_purged_total * static_cast<uint64_t>(page);
    if (floor + purged > x.avail) max_shortfall = std::max(max_shortfall, floor + purged - x.avail);
  }
  std::fclose(out);
  uint64_t purged_bytes = s.pages_purged_total * static_cast<uint64_t>(page);
  std::printf("{\"mem_available_before_bytes\": %" PRIu64 ", \"hog_target_bytes\": %" PRIu64
              ", \"reached\": %s, \"end\": \"%s\", \"min_mem_available_bytes\": %" PRIu64
              ", \"mem_available_at_end_of_hold_bytes\": %.0f, \"mem_min_bytes\": %" PRIu64
              ", \"purged_bytes\": %" PRIu64 ", \"memavail_purged_bytes\": %" PRIu64
              ", \"psi_purged_bytes\": %" PRIu64 ", \"cgroup_purged_bytes\": %" PRIu64
              ", \"memavail_purges\": %" PRIu64 ", \"psi_purges\": %" PRIu64
              ", \"max_shortfall_bytes\": %" PRIu64
              ", \"step_bytes\": %d"
              ", \"first_signal_s\": %.2f, \"memory_back_s\": %.2f, \"hog_start_s\": %.2f"
              ", \"hog_end_s\": %.2f, \"hog_pauses\": %" PRIu64
              ", \"hog_paused_s\": %.2f"
              ", \"allocation_failures\": %" PRIu64 ", \"oom_kills\": %" PRIu64
              ", \"promises_kept\": %s%s%s%s}\n",
              a0_, target_, reached_ ? "true" : "false", end_reason_.c_str(),
              min_avail_ == UINT64_MAX ? 0 : min_avail_, final_avail_hold, floor, purged_bytes,
              s.sources[VOLFS_SOURCE_MEMAVAIL].purged_bytes,
              s.sources[VOLFS_SOURCE_PSI].purged_bytes, s.sources[VOLFS_SOURCE_CGROUP].purged_bytes,
              s.sources[VOLFS_SOURCE_MEMAVAIL].purges, s.sources[VOLFS_SOURCE_PSI].purges,
              max_shortfall, 64 << 20, t_signal, t_back, hog_start_, hog_end_, pauses_, pause_s_,
              alloc_failures_, oom_kills, promises ? "true" : "false",
              promises ? "" : ", \"why\": \"", promises ? "" : why.c_str(), promises ? "" : "\"");
  return promises && !aborted_ && oom_kills == 0 ? 0 : 1;
}

void usage() {
  std::fprintf(stderr,
               "usage: pressure_demo MOUNT [--volatile 6g] [--keep 256m] [--leave 2g] "
               "[--step 256m]\n"
               "                     [--abort-below 1g] [--stop-below N] [--hold SECONDS] "
               "[--out FILE.tsv]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  Options o;
  o.mount = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--volatile")
      o.volatile_bytes = parse_bytes(v);
    else if (a == "--keep")
      o.keep_bytes = parse_bytes(v);
    else if (a == "--leave")
      o.leave = parse_bytes(v);
    else if (a == "--step")
      o.step = parse_bytes(v);
    else if (a == "--abort-below")
      o.abort_below = parse_bytes(v);
    else if (a == "--stop-below")
      o.stop_below = parse_bytes(v);
    else if (a == "--hold")
      o.hold_s = std::strtod(v, nullptr);
    else if (a == "--out")
      o.out = v;
    else {
      usage();
      return 2;
    }
  }
  if (o.keep_bytes % (4 * kMiB) || o.volatile_bytes % (4 * kMiB)) {
    std::fprintf(stderr, "pressure_demo: sizes must be multiples of 4m\n");
    return 2;
  }
  return Demo(o).run();
}
