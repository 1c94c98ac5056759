// pressure_test.cc: the system memory-pressure sources against the real
// kernel, with real but bounded pressure: a MemAvailable floor set just below
// what the machine has, crossed by a child that allocates a few hundred MiB;
// a memory cgroup of 512 MiB made for the test and filled by a child. Both
// stop well clear of the OOM killer, wait for conditions (never for times),
// and skip, saying why, where the machine cannot take them safely. Plus the
// STATS ABI across versions, and which sources a default mount turns on.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <volfs/volfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "volatile_util.h"

namespace volfs::test {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kGiB = 1ull << 30;

uint64_t meminfo_kb(const char* key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  uint64_t kb = 0;
  while (in >> k) {
    if (k == key) {
      in >> kb;
      return kb;
    }
    in.ignore(256, '\n');
  }
  return 0;
}
uint64_t mem_available() { return meminfo_kb("MemAvailable:") * 1024; }

volfs_stats stats_of(const VolfsMount& m) {
  std::optional<volfs_stats> s = mount_stats(m.mountpoint());
  EXPECT_TRUE(s);
  return s.value_or(volfs_stats{});
}

const volfs_source_stats& source(const volfs_stats& s, unsigned i) { return s.sources[i]; }

// Writes `bytes` of a pattern to path; marks it volatile if asked.
void fill(const std::string& path, uint64_t bytes, uint32_t seed, bool mark) {
  UniqueFd fd(open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.ok()) << strerror(errno);
  const std::string chunk = make_pattern(4 * kMiB, seed);
  for (uint64_t off = 0; off < bytes; off += chunk.size()) {
    ASSERT_TRUE(pwrite_all(fd.get(), chunk, static_cast<off_t>(off))) << strerror(errno);
  }
  if (mark) {
    ASSERT_EQ(vol_mark(fd.get(), 0, 0), 0) << strerror(errno);
  }
}

// The promises, checked after a purge by pressure: the non-volatile file is
// whole; per 1 MiB chunk of the volatile file, UNMARK answers PURGED exactly
// when GET_STATUS counted purged pages there; and those pages add up to
// everything purged.
void check_promises(const VolfsMount& m, const std::string& vol, uint64_t vol_bytes,
                    const std::string& keep, uint64_t keep_bytes) {
  const std::string chunk = make_pattern(4 * kMiB, 2);
  {
    UniqueFd fd(open(keep.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.ok());
    for (uint64_t off = 0; off < keep_bytes; off += chunk.size()) {
      std::optional<std::string> got = pread_some(fd.get(), chunk.size(), static_cast<off_t>(off));
      ASSERT_TRUE(got && *got == chunk) << "non-volatile data changed at " << off;
    }
  }
  UniqueFd fd(open(vol.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());
  uint64_t purged_pages = 0;
  for (uint64_t off = 0; off < vol_bytes; off += kMiB) {
    volfs_status st{};
    ASSERT_EQ(vol_status(fd.get(), off, kMiB, &st), 0);
    uint32_t result = 99;
    ASSERT_EQ(vol_unmark(fd.get(), off, kMiB, &result), 0);
    EXPECT_EQ(result, st.purged_pages ? VOLFS_PURGED : VOLFS_INTACT) << "at " << off;
    purged_pages += st.purged_pages;
  }
  volfs_stats s = stats_of(m);
  EXPECT_EQ(purged_pages, s.pages_purged_total);
  uint64_t by_source = 0;
  for (const volfs_source_stats& src : s.sources) by_source += src.purged_bytes;
  EXPECT_EQ(by_source, s.pages_purged_total * s.page_size);
  EXPECT_EQ(s.false_purged_total, 0u);
}

// A child that allocates anonymous memory in steps, touching every page,
// until `enough()` or `bound` bytes, then reports on `ready` and holds it
// until `release` is closed. Never below 1 GiB of MemAvailable.
int hog(uint64_t step, uint64_t bound, const std::function<bool(uint64_t held)>& enough, int ready,
        int release) {
  uint64_t held = 0;
  const long page = sysconf(_SC_PAGESIZE);
  while (held < bound && !enough(held)) {
    if (mem_available() < kGiB + step) break;  // the safety stop
    void* p = mmap(nullptr, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 3;
    for (uint64_t off = 0; off < step; off += static_cast<uint64_t>(page)) {
      static_cast<char*>(p)[off] = 1;
    }
    held += step;
  }
  char c = enough(held) ? 'y' : 'n';
  if (write(ready, &c, 1) != 1) return 4;
  (void)!read(release, &c, 1);  // returns 0 when the parent closes it
  return 0;
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { EXPECT_EQ(pipe2(fd, O_CLOEXEC), 0); }
  ~Pipe() {
    for (int f : fd) {
      if (f >= 0) close(f);
    }
  }
  void close_write() {
    close(fd[1]);
    fd[1] = -1;
  }
};

// ---- ABI -----------------------------------------------------------------------

// An old client sends the version 1 command with a 168-byte buffer and gets
// exactly the version 1 answer; a newer client's larger struct gets ours.
TEST(PressureAbi, StatsAnswersEveryVersionWithWhatItAsked) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=16m,mem_min=64m,psi=off,cgroup=off"));
  UniqueFd fd(open(m.mountpoint().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd.ok());

  unsigned char v1[VOLFS_STATS_V1_SIZE + 32];
  std::memset(v1, 0xAB, sizeof v1);
  ASSERT_EQ(ioctl(fd.get(), VOLFS_IOC_STATS_V1, v1), 0) << strerror(errno);
  volfs_stats head{};
  std::memcpy(&head, v1, VOLFS_STATS_V1_SIZE);
  EXPECT_EQ(head.size, VOLFS_STATS_V1_SIZE);
  EXPECT_EQ(head.version, 1u);
  EXPECT_EQ(head.size_limit_bytes, 16u * kMiB);
  EXPECT_EQ(head.mem_available_bytes, 0u);  // version 1's reserved words: zero
  EXPECT_EQ(head.mem_min_bytes, 0u);
  EXPECT_EQ(head.requests, 0u);
  for (size_t k = VOLFS_STATS_V1_SIZE; k < sizeof v1; ++k) ASSERT_EQ(v1[k], 0xAB) << k;

  volfs_stats v2{};
  ASSERT_EQ(ioctl(fd.get(), VOLFS_IOC_STATS, &v2), 0) << strerror(errno);
  EXPECT_EQ(v2.size, sizeof(volfs_stats));
  EXPECT_EQ(v2.version, VOLFS_STATS_VERSION);
  EXPECT_GT(v2.requests, 0u);  // this STATS request at least
  EXPECT_EQ(v2.mem_min_bytes, 64u * kMiB);
  EXPECT_EQ(v2.sources_active, VOLFS_SOURCE_BIT(VOLFS_SOURCE_MEMAVAIL));
  // The first look comes with the worker's first round.
  EXPECT_TRUE(poll_until([&] { return stats_of(m).mem_available_bytes > 0; }, 10s));

  // A client newer than the daemon: a larger struct, of which it fills ours.
  constexpr size_t kFuture = sizeof(volfs_stats) + 64;
  unsigned char future[kFuture];
  std::memset(future, 0xCD, sizeof future);
  ASSERT_EQ(ioctl(fd.get(), _IOC(_IOC_READ, VOLFS_IOC_MAGIC, 4, kFuture), future), 0)
      << strerror(errno);
  volfs_stats got{};
  std::memcpy(&got, future, sizeof got);
  EXPECT_EQ(got.size, sizeof(volfs_stats));
  EXPECT_EQ(got.version, VOLFS_STATS_VERSION);
  for (size_t k = sizeof(volfs_stats); k < kFuture; ++k) ASSERT_EQ(future[k], 0xCD) << k;

  // Smaller than version 1 is no STATS at all.
  char tiny[64];
  EXPECT_EQ(ioctl(fd.get(), _IOC(_IOC_READ, VOLFS_IOC_MAGIC, 4, sizeof tiny), tiny), -1);
}

// With no pressure option named, the defaults: MemAvailable on with 5% of
// RAM (64m..2g), PSI where the kernel permits its trigger.
TEST(PressureDefaults, ADefaultMountWatchesMemAvailableAndPsi) {
  VolfsMount m;
  ASSERT_TRUE(m.start("size=16m,cgroup=on"));  // names one, so nopressure is not added
  volfs_stats s = stats_of(m);
  const uint64_t ram = meminfo_kb("MemTotal:") * 1024;
  uint64_t want = std::clamp<uint64_t>(ram / 100 * 5, 64 * kMiB, 2 * kGiB);
  want = std::min(want, ram / 4);
  // MemTotal and sysconf's RAM differ by the kernel's own reservations.
  EXPECT_NEAR(static_cast<double>(s.mem_min_bytes), static_cast<double>(want),
              static_cast<double>(want) * 0.02);
  EXPECT_TRUE(s.sources_active & VOLFS_SOURCE_BIT(VOLFS_SOURCE_MEMAVAIL));
  int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  bool psi = fd >= 0 && write(fd, "some 150000 2000000", 20) == 20;
  if (fd >= 0) close(fd);
  EXPECT_EQ(static_cast<bool>(s.sources_active & VOLFS_SOURCE_BIT(VOLFS_SOURCE_PSI)), psi)
      << m.log();
  if (psi) {
    EXPECT_EQ(s.psi_step_bytes, 32u * kMiB);
  }
}

// ---- MemAvailable: real pressure, bounded -------------------------------------------

TEST(PressureMemAvailable, AChildCrossingTheFloorGetsItsMemoryFromVolatileData) {
  constexpr uint64_t kVolatile = 256 * kMiB, kKeep = 64 * kMiB, kMargin = 256 * kMiB;
  const uint64_t a0 = mem_available();
  if (a0 < 3 * kGiB) {
    GTEST_SKIP() << "MemAvailable is " << a0 / kMiB << " MiB: too little to make pressure safely";
  }
  // The floor: what will be left after writing the files, less a margin the
  // child takes first. It stays far above the child's own 1 GiB safety stop.
  // The daemon takes no floor above 90% of RAM: on an idle machine the child
  // takes more to get there (at most 4 GiB, and never under 1 GiB left).
  const uint64_t ram = meminfo_kb("MemTotal:") * 1024;
  const uint64_t floor = std::min(a0 - kVolatile - kKeep - kMargin, ram / 100 * 85);
  VolfsMount m;
  ASSERT_TRUE(m.start("size=1g,psi=off,cgroup=off,mem_min=" + std::to_string(floor)));
  const std::string vol = m.path("volatile"), keep = m.path("keep");
  fill(vol, kVolatile, 1, true);
  fill(keep, kKeep, 2, false);
  if (source(stats_of(m), VOLFS_SOURCE_MEMAVAIL).purges > 0) {
    GTEST_SKIP() << "other work on the machine took MemAvailable below the floor before the "
                    "child started";
  }
  ASSERT_EQ(stats_of(m).volatile_resident_pages * page_size(), kVolatile);

  Pipe ready, release;
  ChildProcess child;
  child.start([&] {
    close(ready.fd[0]);
    close(release.fd[1]);
    // Until MemAvailable is a step below the floor: then the daemon must act.
    return hog(
        32 * kMiB, 4 * kGiB, [&](uint64_t) { return mem_available() + 32 * kMiB < floor; },
        ready.fd[1], release.fd[0]);
  });
  close(ready.fd[1]);
  ready.fd[1] = -1;
  close(release.fd[0]);
  release.fd[0] = -1;
  char crossed = 0;
  ASSERT_EQ(read(ready.fd[0], &crossed, 1), 1);
  if (crossed != 'y') {
    release.close_write();
    child.wait();
    GTEST_SKIP() << "other work on the machine freed memory as fast as the child took it";
  }
  // The daemon sees it within a round and gives memory back until the floor holds.
  EXPECT_TRUE(poll_until(
      [&] {
        volfs_stats s = stats_of(m);
        return source(s, VOLFS_SOURCE_MEMAVAIL).purges > 0 &&
               (mem_available() >= floor || s.volatile_resident_pages == 0);
      },
      30s))
      << to_string(stats_of(m)) << "\n"
      << m.log();
  release.close_write();
  EXPECT_TRUE(exited_with(child.wait()));

  volfs_stats s = stats_of(m);
  const volfs_source_stats& src = source(s, VOLFS_SOURCE_MEMAVAIL);
  EXPECT_GT(src.purged_bytes, 0u);
  EXPECT_LE(src.purged_bytes, kVolatile);
  EXPECT_GE(src.signals, src.purges);
  EXPECT_EQ(s.mem_min_bytes, floor);
  EXPECT_NE(m.log().find("below mem_min"), std::string::npos) << m.log();
  check_promises(m, vol, kVolatile, keep, kKeep);
}

// ---- cgroup: a v1 memory cgroup of 512 MiB made for the test ------------------------

// The test process's v1 memory cgroup directory, or "" without one.
std::string own_v1_memory_cgroup() {
  std::ifstream cg("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cg, line)) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string ctl = "," + line.substr(a + 1, b - a - 1) + ",";
    if (ctl.find(",memory,") != std::string::npos) path = line.substr(b + 1);
  }
  if (path.empty()) return "";
  std::ifstream mi("/proc/self/mountinfo");
  while (std::getline(mi, line)) {
    std::istringstream in(line);
    std::vector<std::string> f;
    std::string w;
    while (in >> w) f.push_back(w);
    size_t sep = std::find(f.begin(), f.end(), "-") - f.begin();
    if (sep < 5 || sep + 3 >= f.size() || f[sep + 1] != "cgroup") continue;
    if (("," + f[sep + 3] + ",").find(",memory,") == std::string::npos) continue;
    if (f[3] != "/") continue;  // a bind mount of a subtree: keep it simple
    return f[4] + (path == "/" ? "" : path);
  }
  return "";
}

bool write_text(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  uint64_t v = 0;
  in >> v;
  return v;
}

// Moves this process into a fresh child memory cgroup with a limit, and back
// out (then removes it) on destruction.
class ScopedMemoryCgroup {
 public:
  bool enter(uint64_t limit, std::string* why) {
    parent_ = own_v1_memory_cgroup();
    if (parent_.empty()) return *why = "no cgroup v1 memory controller here", false;
    dir_ = parent_ + "/volfs-pressure-test." + std::to_string(getpid());
    if (mkdir(dir_.c_str(), 0755) != 0) {
      *why = "mkdir " + dir_ + ": " + strerror(errno);
      dir_.clear();
      return false;
    }
    if (!write_text(dir_ + "/memory.limit_in_bytes", std::to_string(limit))) {
      return *why = "cannot set memory.limit_in_bytes: " + std::string(strerror(errno)), false;
    }
    if (!write_text(dir_ + "/cgroup.procs", std::to_string(getpid()))) {
      return *why = "cannot join " + dir_ + ": " + std::string(strerror(errno)), false;
    }
    joined_ = true;
    return true;
  }
  const std::string& dir() const { return dir_; }
  ~ScopedMemoryCgroup() {
    if (joined_) {
      EXPECT_TRUE(write_text(parent_ + "/cgroup.procs", std::to_string(getpid())));
    }
    if (dir_.empty()) return;
    // The daemon has exited (the mount was stopped first); leftover page
    // cache moves to the parent when the cgroup goes.
    EXPECT_TRUE(poll_until([&] { return rmdir(dir_.c_str()) == 0 || errno == ENOENT; }, 10s))
        << "rmdir " << dir_ << ": " << strerror(errno);
  }

 private:
  std::string parent_, dir_;
  bool joined_ = false;
};

TEST(PressureCgroup, AChildNearTheCgroupLimitGetsItsMemoryFromVolatileData) {
  if (geteuid() != 0) GTEST_SKIP() << "only root may make memory cgroups";
  if (mem_available() < 2 * kGiB) GTEST_SKIP() << "too little MemAvailable to run safely";
  constexpr uint64_t kLimit = 512 * kMiB, kVolatile = 256 * kMiB, kKeep = 16 * kMiB;
  ScopedMemoryCgroup cg;
  std::string why;
  if (!cg.enter(kLimit, &why)) GTEST_SKIP() << why;
  {
    // The daemon starts in the cgroup too (it is our child): its store is
    // charged there, as the kernel charges shmem to whoever allocates it.
    VolfsMount m;
    ASSERT_TRUE(m.start("size=1g,mem_min=0,psi=off,cgroup_min=64m"));
    volfs_stats s{};
    // The first look comes with the worker's first round.
    ASSERT_TRUE(poll_until([&] { return (s = stats_of(m)).cgroup_limit_bytes != 0; }, 10s));
    ASSERT_EQ(s.cgroup_limit_bytes, kLimit) << m.log();
    ASSERT_TRUE(s.sources_active & VOLFS_SOURCE_BIT(VOLFS_SOURCE_CGROUP));
    const std::string vol = m.path("volatile"), keep = m.path("keep");
    fill(vol, kVolatile, 1, true);
    fill(keep, kKeep, 2, false);

    // headroom: the limit less what the kernel cannot drop (usage less
    // inactive file cache), as the daemon computes it.
    auto headroom = [&] {
      uint64_t usage = read_number(cg.dir() + "/memory.usage_in_bytes");
      std::ifstream st(cg.dir() + "/memory.stat");
      std::string k;
      uint64_t v = 0, inactive = 0;
      while (st >> k >> v) {
        if (k == "total_inactive_file") inactive = v;
      }
      uint64_t used = usage - std::min(usage, inactive);
      return used < kLimit ? kLimit - used : 0;
    };
    // The child wants 320 MiB, more than the cgroup has beside the volatile
    // data. It takes 16 MiB at a time and waits while the headroom is under
    // 32 MiB, so it never meets the limit itself; only volfs can let it finish.
    constexpr uint64_t kWant = 320 * kMiB, kStep = 16 * kMiB;
    ChildProcess child;
    child.start([&] {
      uint64_t held = 0;
      while (held < kWant) {
        if (!poll_until([&] { return headroom() >= 2 * kStep; }, 20s)) return 5;
        void* p = mmap(nullptr, kStep, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 3;
        for (uint64_t off = 0; off < kStep; off += page_size()) static_cast<char*>(p)[off] = 1;
        held += kStep;
      }
      return 0;
    });
    int status = child.wait(60s);
    EXPECT_TRUE(exited_with(status)) << "the child could not take its 320 MiB\n"
                                     << to_string(stats_of(m)) << "\n"
                                     << m.log();
    s = stats_of(m);
    const volfs_source_stats& src = source(s, VOLFS_SOURCE_CGROUP);
    EXPECT_GT(src.purges, 0u) << m.log();
    EXPECT_GT(src.purged_bytes, 0u);
    EXPECT_LE(src.purged_bytes, kVolatile);
    EXPECT_NE(m.log().find("memory cgroup"), std::string::npos) << m.log();
    std::ifstream oom(cg.dir() + "/memory.oom_control");
    std::string k;
    uint64_t v = 0;
    while (oom >> k >> v) {
      if (k == "oom_kill") {
        EXPECT_EQ(v, 0u) << "the cgroup's OOM killer fired";
      }
    }
    check_promises(m, vol, kVolatile, keep, kKeep);
    ASSERT_TRUE(m.stop());
  }
}

}  // namespace
}  // namespace volfs::test
