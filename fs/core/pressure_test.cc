// Unit tests of the system memory-pressure sources: the parsers of the kernel
// files, the policy arithmetic, the options, and each source driven through
// PressureEnv (fake files, a fake clock) or a fake trigger descriptor; plus
// one real PSI trigger, skipped where the kernel does not permit it.
#include "pressure.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "filesystem.h"

namespace volfs::core {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kPage = 4096;

// The world of a test: files by path, a clock moved by hand, the log kept.
class FakeEnv : public PressureEnv {
 public:
  std::optional<std::string> read_file(const std::string& path) override {
    std::lock_guard lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return std::nullopt;
    return it->second;
  }
  Clock::time_point now() override {
    std::lock_guard lock(mu_);
    return now_;
  }
  void log(const std::string& line) override {
    std::lock_guard lock(mu_);
    logs_.push_back(line);
  }
  void set(const std::string& path, std::string text) {
    std::lock_guard lock(mu_);
    files_[path] = std::move(text);
  }
  void advance(Clock::duration d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }
  std::vector<std::string> logs() {
    std::lock_guard lock(mu_);
    return logs_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> files_;
  Clock::time_point now_ = Clock::time_point() + 1000s;
  std::vector<std::string> logs_;
};

AccountingSnapshot snap(uint64_t volatile_resident_pages = 1 << 20) {
  AccountingSnapshot s;
  s.page_size = kPage;
  s.volatile_resident_pages = volatile_resident_pages;
  return s;
}

std::string meminfo(uint64_t total_kb, uint64_t avail_kb) {
  return "MemTotal:       " + std::to_string(total_kb) +
         " kB\nMemFree:        1000 kB\nMemAvailable:   " + std::to_string(avail_kb) +
         " kB\nBuffers:           16500 kB\n";
}

// ---- Parsers ------------------------------------------------------------------

TEST(ParseMeminfo, ReadsTotalAndAvailableInBytes) {
  auto m = parse_meminfo(meminfo(24683568, 23352264));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->total_bytes, 24683568ull * 1024);
  EXPECT_EQ(m->available_bytes, 23352264ull * 1024);
}

TEST(ParseMeminfo, RejectsMissingOrMalformedFields) {
  EXPECT_FALSE(parse_meminfo("MemTotal: 100 kB\nMemFree: 5 kB\n"));  // kernel < 3.14
  EXPECT_FALSE(parse_meminfo("MemTotal: 100 kB\nMemAvailable: x kB\n"));
  EXPECT_FALSE(parse_meminfo("MemTotal: 100 kB\nMemAvailable: 5 MB\n"));
  EXPECT_FALSE(parse_meminfo(""));
  // A last line without its newline still counts.
  auto m = parse_meminfo("MemAvailable: 5 kB\nMemTotal: 100 kB");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->available_bytes, 5u * 1024);
}

TEST(ParsePsi, ReadsSomeAndFull) {
  auto r = parse_psi(
      "some avg10=4.06 avg60=1.50 avg300=0.25 total=123456\n"
      "full avg10=0.50 avg60=0.00 avg300=0.00 total=789\n");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->some);
  ASSERT_TRUE(r->full);
  EXPECT_DOUBLE_EQ(r->some->avg10, 4.06);
  EXPECT_DOUBLE_EQ(r->some->avg60, 1.50);
  EXPECT_DOUBLE_EQ(r->some->avg300, 0.25);
  EXPECT_EQ(r->some->total_us, 123456u);
  EXPECT_DOUBLE_EQ(r->full->avg10, 0.50);
  EXPECT_EQ(r->full->total_us, 789u);
}

TEST(ParsePsi, SomeAloneAndGarbage) {
  auto r = parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->some);
  EXPECT_FALSE(r->full);
  EXPECT_FALSE(parse_psi("some avg10=abc avg60=0.00 avg300=0.00 total=0\n"));
  EXPECT_FALSE(parse_psi("nonsense\n"));
  EXPECT_FALSE(parse_psi("some avg10=1 avg60=1 avg300=1\n"));  // no total
}

TEST(ParseCgroupFiles, LimitsKeyedValuesAndProcCgroup) {
  EXPECT_EQ(parse_cgroup_limit("max\n"), kUnlimited);
  EXPECT_EQ(parse_cgroup_limit("9223372036854771712\n"), kUnlimited);  // v1 "no limit"
  EXPECT_EQ(parse_cgroup_limit("536870912\n"), 536870912u);
  EXPECT_FALSE(parse_cgroup_limit("-1\n"));
  EXPECT_FALSE(parse_cgroup_limit(""));

  const char* stat = "cache 921600\nrss 1732608\ninactive_file 217088\ntotal_inactive_file 4096\n";
  EXPECT_EQ(parse_keyed(stat, "inactive_file"), 217088u);
  EXPECT_EQ(parse_keyed(stat, "total_inactive_file"), 4096u);
  EXPECT_FALSE(parse_keyed(stat, "active_file"));
  EXPECT_EQ(parse_keyed("low 0\nhigh 3\nmax 1\noom 0\noom_kill 0\n", "max"), 1u);

  ProcCgroup v1 = parse_proc_cgroup(
      "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/2871\n3:cpuset:/\n0::/\n");
  EXPECT_EQ(v1.v1_memory, "/process_api/2871");
  EXPECT_EQ(v1.v2, "/");
  ProcCgroup joined = parse_proc_cgroup("5:cpu,memory:/a\n");
  EXPECT_EQ(joined.v1_memory, "/a");
  EXPECT_FALSE(joined.v2);
  EXPECT_EQ(parse_proc_cgroup("0::/user.slice/session-1.scope\n").v2,
            "/user.slice/session-1.scope");
}

TEST(ParseCgroupFiles, MountsAndChains) {
  CgroupMounts m = parse_cgroup_mounts(
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
      "35 31 0:32 /outer /sys/fs/cgroup/mem\\040ory rw,relatime - cgroup cgroup rw,memory\n"
      "40 31 0:40 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
  ASSERT_TRUE(m.v1_memory);
  EXPECT_EQ(m.v1_memory->mountpoint, "/sys/fs/cgroup/mem ory");
  EXPECT_EQ(m.v1_memory->root, "/outer");
  ASSERT_TRUE(m.v2);
  EXPECT_EQ(m.v2->mountpoint, "/sys/fs/cgroup/unified");

  EXPECT_EQ(cgroup_chain(*m.v1_memory, "/outer/a/b"),
            (std::vector<std::string>{"/sys/fs/cgroup/mem ory/a/b", "/sys/fs/cgroup/mem ory/a",
                                      "/sys/fs/cgroup/mem ory"}));
  EXPECT_EQ(cgroup_chain(*m.v1_memory, "/outer"),
            (std::vector<std::string>{"/sys/fs/cgroup/mem ory"}));
  EXPECT_TRUE(cgroup_chain(*m.v1_memory, "/other/a").empty());
  EXPECT_TRUE(cgroup_chain(*m.v1_memory, "/outerx").empty());
  EXPECT_EQ(cgroup_chain(*m.v2, "/"), (std::vector<std::string>{"/sys/fs/cgroup/unified"}));
}

// ---- Policy -------------------------------------------------------------------

TEST(PressurePolicy, ShortfallPlusOneStepInWholePages) {
  EXPECT_EQ(shortfall_pages(2 * kGiB, kGiB, 64 * kMiB, kPage), 0u);
  EXPECT_EQ(shortfall_pages(kGiB, kGiB, 64 * kMiB, kPage), 0u);  // at the floor: fine
  EXPECT_EQ(shortfall_pages(kGiB - 100 * kMiB, kGiB, 64 * kMiB, kPage), 164 * kMiB / kPage);
  // A shortfall of one byte is a page, plus the step.
  EXPECT_EQ(shortfall_pages(kGiB - 1, kGiB, 64 * kMiB, kPage), 1 + 64 * kMiB / kPage);
  EXPECT_EQ(shortfall_pages(0, kGiB, 0, kPage), kGiB / kPage);
}

TEST(PressurePolicy, StallLadderDoublesWhileTheStallLastsAndResetsAfter) {
  StallLadder l(32 * kMiB, 256 * kMiB, 4s);
  auto t = StallLadder::Clock::time_point() + 100s;
  EXPECT_EQ(l.next_step(t), 32 * kMiB);
  EXPECT_EQ(l.on_stall(t), 32 * kMiB);
  EXPECT_EQ(l.on_stall(t += 2s), 64 * kMiB);
  EXPECT_EQ(l.on_stall(t += 2s), 128 * kMiB);
  EXPECT_EQ(l.on_stall(t += 2s), 256 * kMiB);
  EXPECT_EQ(l.on_stall(t += 2s), 256 * kMiB);  // capped
  EXPECT_EQ(l.next_step(t + 3s), 256 * kMiB);
  EXPECT_EQ(l.next_step(t + 5s), 32 * kMiB);  // quiet long enough: small again
  EXPECT_EQ(l.on_stall(t += 5s), 32 * kMiB);
  EXPECT_EQ(l.on_stall(t += 1s), 64 * kMiB);
}

// ---- Options ------------------------------------------------------------------

TEST(PressureOptions, DefaultsScaleWithRam) {
  EXPECT_EQ(default_mem_min(24 * kGiB), 24 * kGiB / 100 * 5);  // 1.2 GiB
  EXPECT_EQ(default_mem_min(256 * kGiB), 2 * kGiB);            // capped
  EXPECT_EQ(default_mem_min(kGiB), 64 * kMiB);                 // floor
  EXPECT_EQ(default_mem_min(128 * kMiB), 32 * kMiB);           // a quarter of a tiny RAM
  PressureOptions o = default_pressure_options(24 * kGiB);
  EXPECT_TRUE(o.psi_some.on());
  EXPECT_EQ(o.psi_some.text(), "some 150000 2000000");
  EXPECT_EQ(o.psi_full.text(), "full 50000 2000000");
  EXPECT_TRUE(o.cgroup);
  EXPECT_EQ(o.step_bytes, 64 * kMiB);
  EXPECT_EQ(cgroup_min_for(o, 512 * kMiB), 512 * kMiB / 100 * 5);
  EXPECT_EQ(cgroup_min_for(o, 64 * kMiB), 16 * kMiB);
  EXPECT_EQ(cgroup_min_for(o, 100 * kGiB), kGiB);
}

TEST(PressureOptions, ParsesEachOption) {
  PressureOptions o = default_pressure_options(24 * kGiB);
  auto apply = [&](const char* arg) { return parse_pressure_option(arg, 24 * kGiB, o); };
  EXPECT_EQ(apply("mem_min=2g"), "");
  EXPECT_EQ(o.mem_min_bytes, 2 * kGiB);
  EXPECT_EQ(apply("mem_min=10%"), "");
  EXPECT_EQ(o.mem_min_bytes, 24 * kGiB / 100 * 10);
  EXPECT_EQ(apply("mem_min=0"), "");
  EXPECT_EQ(o.mem_min_bytes, 0u);
  EXPECT_EQ(apply("pressure_step=32m"), "");
  EXPECT_EQ(o.step_bytes, 32 * kMiB);
  EXPECT_EQ(apply("psi_some=200/4000"), "");
  EXPECT_EQ(o.psi_some.text(), "some 200000 4000000");
  EXPECT_TRUE(o.psi_given);
  EXPECT_EQ(apply("psi_full=off"), "");
  EXPECT_FALSE(o.psi_full.on());
  EXPECT_EQ(apply("psi=off"), "");
  EXPECT_FALSE(o.psi_some.on());
  EXPECT_EQ(apply("cgroup=off"), "");
  EXPECT_FALSE(o.cgroup);
  EXPECT_EQ(apply("cgroup_min=10%"), "");
  EXPECT_EQ(cgroup_min_for(o, kGiB), kGiB / 100 * 10);
  EXPECT_EQ(apply("cgroup_min=100m"), "");
  EXPECT_EQ(cgroup_min_for(o, kGiB), 100 * kMiB);
  o = default_pressure_options(24 * kGiB);
  EXPECT_EQ(apply("nopressure"), "");
  EXPECT_FALSE(o.any_system_source());
  EXPECT_FALSE(apply("size=1g"));  // not ours
  EXPECT_FALSE(apply("psix=1"));
}

TEST(PressureOptions, BadValuesAreOneLineErrors) {
  for (const char* arg : {"mem_min=abc", "mem_min=200%", "mem_min=", "mem_min", "pressure_step=0",
                          "psi=maybe", "psi_some=150", "psi_some=a/b", "psi_full=1/2/3",
                          "cgroup=yes", "cgroup_min=0", "cgroup_min=100%", "nopressure=1"}) {
    PressureOptions o = default_pressure_options(24 * kGiB);
    std::optional<std::string> e = parse_pressure_option(arg, 24 * kGiB, o);
    ASSERT_TRUE(e) << arg;
    EXPECT_FALSE(e->empty()) << arg;
    EXPECT_EQ(e->find('\n'), std::string::npos) << arg;
  }
  PressureOptions o = default_pressure_options(24 * kGiB);
  EXPECT_EQ(validate_pressure(o, 24 * kGiB), "");
  o.mem_min_bytes = 24 * kGiB;
  EXPECT_NE(validate_pressure(o, 24 * kGiB), "");
  o = default_pressure_options(24 * kGiB);
  o.psi_some = PsiTrigger{false, 100, 400};
  EXPECT_NE(validate_pressure(o, 24 * kGiB), "");  // window under 500 ms
  o.psi_some = PsiTrigger{false, 3000, 2000};
  EXPECT_NE(validate_pressure(o, 24 * kGiB), "");  // stall longer than the window
}

// ---- MemAvailable -------------------------------------------------------------

TEST(MemAvailablePressure, PurgesTheShortfallPlusAStepAndLogsTheEpisode) {
  auto env = std::make_shared<FakeEnv>();
  MemAvailablePressure src(env, kGiB, 64 * kMiB);
  env->set("/proc/meminfo", meminfo(24 << 20, 4 << 20));  // 4 GiB available
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  PressureStatus st;
  src.report(st);
  EXPECT_EQ(st.mem_available_bytes, 4 * kGiB);
  EXPECT_EQ(st.mem_min_bytes, kGiB);
  EXPECT_EQ(st.active, cause_bit(PurgeCause::kMemAvailable));
  EXPECT_TRUE(env->logs().empty());

  env->set("/proc/meminfo", meminfo(24 << 20, (1 << 20) - 300 * 1024));  // 300 MiB short
  EXPECT_EQ(src.pages_to_purge(snap()), (300 + 64) * kMiB / kPage);
  src.purged((300 + 64) * kMiB / kPage);
  ASSERT_EQ(env->logs().size(), 1u);
  EXPECT_NE(env->logs()[0].find("below mem_min"), std::string::npos) << env->logs()[0];

  env->advance(150ms);
  env->set("/proc/meminfo", meminfo(24 << 20, (1 << 20) + 64 * 1024));
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  ASSERT_EQ(env->logs().size(), 2u);
  EXPECT_NE(env->logs()[1].find("back at 1088 MiB"), std::string::npos) << env->logs()[1];
  EXPECT_NE(env->logs()[1].find("after 150 ms: purged 364 MiB in 1 rounds"), std::string::npos)
      << env->logs()[1];
}

TEST(MemAvailablePressure, UnreadableMeminfoPurgesNothing) {
  auto env = std::make_shared<FakeEnv>();
  MemAvailablePressure src(env, kGiB, 64 * kMiB);
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  EXPECT_EQ(env->logs().size(), 1u);  // said once
}

// ---- cgroup -------------------------------------------------------------------

struct CgroupTree {
  std::shared_ptr<FakeEnv> env = std::make_shared<FakeEnv>();
  void v1_level(const std::string& dir, const std::string& limit, uint64_t usage,
                uint64_t inactive) {
    env->set(dir + "/memory.limit_in_bytes", limit + "\n");
    env->set(dir + "/memory.usage_in_bytes", std::to_string(usage) + "\n");
    env->set(dir + "/memory.stat",
             "cache 1\ntotal_inactive_file " + std::to_string(inactive) + "\nrss 1\n");
  }
  void v2_level(const std::string& dir, const std::string& max, const std::string& high,
                uint64_t current, uint64_t inactive, uint64_t max_events = 0) {
    env->set(dir + "/memory.max", max + "\n");
    env->set(dir + "/memory.high", high + "\n");
    env->set(dir + "/memory.current", std::to_string(current) + "\n");
    env->set(dir + "/memory.stat", "anon 1\ninactive_file " + std::to_string(inactive) + "\n");
    env->set(dir + "/memory.events",
             "low 0\nhigh 0\nmax " + std::to_string(max_events) + "\noom 0\noom_kill 0\n");
  }
};

TEST(CgroupPressure, FindsTheDaemonsCgroupFromProc) {
  CgroupTree t;
  t.env->set("/proc/self/cgroup", "4:memory:/a/b\n0::/\n");
  t.env->set("/proc/self/mountinfo",
             "35 31 0:32 / /cg/memory rw - cgroup cgroup rw,memory\n"
             "40 31 0:40 / /cg/unified rw - cgroup2 cgroup2 rw\n");
  std::optional<CgroupSetup> s = find_memory_cgroup(*t.env);
  ASSERT_TRUE(s);  // v2 has no memory controller here (no memory.current)
  EXPECT_EQ(s->version, 1);
  EXPECT_EQ(s->chain, (std::vector<std::string>{"/cg/memory/a/b", "/cg/memory/a", "/cg/memory"}));

  t.env->set("/proc/self/cgroup", "0::/svc\n");
  t.env->set("/cg/unified/svc/memory.current", "1\n");
  s = find_memory_cgroup(*t.env);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->version, 2);
  EXPECT_EQ(s->chain, (std::vector<std::string>{"/cg/unified/svc", "/cg/unified"}));
}

TEST(CgroupPressure, V1KeepsHeadroomBelowTheTightestLimit) {
  CgroupTree t;
  // The daemon's own cgroup has no limit; its parent has 1 GiB.
  t.v1_level("/m/a/b", "9223372036854771712", 700 * kMiB, 0);
  t.v1_level("/m/a", std::to_string(kGiB), 1000 * kMiB, 50 * kMiB);
  t.v1_level("/m", "9223372036854771712", 5 * kGiB, 0);
  PressureOptions o = default_pressure_options(24 * kGiB);  // cgroup_min: 5% of 1 GiB
  CgroupPressure src(t.env, CgroupSetup{1, {"/m/a/b", "/m/a", "/m"}}, o);
  // used = 1000 - 50 = 950 MiB of 1024: headroom 74 MiB >= 51.2 MiB.
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  PressureStatus st;
  src.report(st);
  EXPECT_EQ(st.cgroup_limit_bytes, kGiB);
  EXPECT_EQ(st.cgroup_used_bytes, 950 * kMiB);
  EXPECT_EQ(st.cgroup_min_bytes, kGiB / 100 * 5);
  // used 1000 MiB: headroom 24 MiB, short of the 5% by 27.2 MiB; plus the step.
  t.v1_level("/m/a", std::to_string(kGiB), 1050 * kMiB, 50 * kMiB);
  uint64_t deficit = kGiB / 100 * 5 - 24 * kMiB;
  EXPECT_EQ(src.pages_to_purge(snap()), pages_for(deficit + o.step_bytes, kPage));
  EXPECT_EQ(t.env->logs().size(), 1u);
  t.v1_level("/m/a", std::to_string(kGiB), 900 * kMiB, 50 * kMiB);
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  EXPECT_EQ(t.env->logs().size(), 2u);  // back within the headroom
}

TEST(CgroupPressure, V2UsesTheLowerOfHighAndMaxAndStepsOnEvents) {
  CgroupTree t;
  t.v2_level("/u/svc", "max", std::to_string(512 * kMiB), 400 * kMiB, 0);
  PressureOptions o = default_pressure_options(24 * kGiB);
  o.cgroup_min_bytes = 64 * kMiB;
  CgroupPressure src(t.env, CgroupSetup{2, {"/u/svc", "/u"}}, o);
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);  // headroom 112 MiB
  t.v2_level("/u/svc", "max", std::to_string(512 * kMiB), 480 * kMiB, 0);
  EXPECT_EQ(src.pages_to_purge(snap()), pages_for((64 - 32) * kMiB + o.step_bytes, kPage));
  // Back in the headroom, but memory.events counted a "max" event: a stall step.
  t.v2_level("/u/svc", "max", std::to_string(512 * kMiB), 300 * kMiB, 0, 1);
  EXPECT_EQ(src.pages_to_purge(snap()), pages_for(kStallFirstStep, kPage));
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);  // counted once
  // A pressure event descriptor (the seam: any readable fd) steps too.
  src.ready(-1, POLLPRI);
  EXPECT_EQ(src.pages_to_purge(snap()), pages_for(2 * kStallFirstStep, kPage));
}

TEST(CgroupPressure, NoLimitAnywhereAsksNothing) {
  CgroupTree t;
  t.v2_level("/u/svc", "max", "max", 400 * kMiB, 0);
  CgroupPressure src(t.env, CgroupSetup{2, {"/u/svc"}}, default_pressure_options(24 * kGiB));
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  PressureStatus st;
  src.report(st);
  EXPECT_EQ(st.cgroup_limit_bytes, 0u);
}

// ---- PSI through the seam -------------------------------------------------------

TEST(PsiPressure, EachTriggerPurgesALadderStep) {
  auto env = std::make_shared<FakeEnv>();
  env->set("/fake/pressure", "some avg10=4.06 avg60=1.00 avg300=0.10 total=5\n");
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  PsiPressure src(env, {{efd, POLLIN}}, "/fake/pressure",
                  StallLadder(kStallFirstStep, kStallMaxStep, 4s));
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);
  uint64_t one = 1;
  ASSERT_EQ(write(efd, &one, sizeof one), 8);
  src.ready(efd, POLLIN);
  EXPECT_EQ(src.pages_to_purge(snap()), kStallFirstStep / kPage);
  EXPECT_EQ(src.pages_to_purge(snap()), 0u);  // one trigger, one step
  uint64_t count;
  EXPECT_LT(read(efd, &count, sizeof count), 0);  // ready() drained it
  env->advance(2s);
  src.ready(efd, POLLPRI);
  EXPECT_EQ(src.pages_to_purge(snap()), 2 * kStallFirstStep / kPage);
  PressureStatus st;
  src.report(st);
  EXPECT_EQ(st.psi_step_bytes, 4 * kStallFirstStep);
  env->advance(5s);
  src.pages_to_purge(snap());
  src.report(st);
  EXPECT_EQ(st.psi_step_bytes, kStallFirstStep);
  ASSERT_EQ(env->logs().size(), 2u);
  EXPECT_NE(env->logs()[0].find("some avg10=4.06"), std::string::npos) << env->logs()[0];
}

// A source of fixed requests, for the worker's rounds.
class FixedSource : public PressureSource {
 public:
  FixedSource(PurgeCause c, uint64_t pages) : cause_(c), pages_(pages) {}
  uint64_t pages_to_purge(const AccountingSnapshot&) override { return pages_.exchange(0); }
  PurgeCause cause() const override { return cause_; }
  void purged(uint64_t pages) override { granted += pages; }
  std::atomic<uint64_t> granted{0};

 private:
  PurgeCause cause_;
  std::atomic<uint64_t> pages_;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit = 20s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(PurgeWorker, ARoundPurgesTheLargestRequestAndCountsTheOthers) {
  std::vector<std::unique_ptr<PressureSource>> sources;
  auto* small = new FixedSource(PurgeCause::kPsi, 10);
  auto* large = new FixedSource(PurgeCause::kMemAvailable, 100);
  sources.emplace_back(small);
  sources.emplace_back(large);
  std::mutex mu;
  std::vector<std::pair<PurgeCause, uint64_t>> calls;
  {
    PurgeWorker w(
        std::move(sources), [] { return snap(); },
        [&](PurgeCause c, uint64_t pages) {
          std::lock_guard lock(mu);
          calls.push_back({c, pages});
          return pages / 2;  // only half was purgeable
        });
    w.wake();
    ASSERT_TRUE(eventually([&] {
      std::lock_guard lock(mu);
      return calls.size() == 2;
    }));
    EXPECT_EQ(large->granted, 50u);
    EXPECT_EQ(small->granted, 0u);
  }
  EXPECT_EQ(calls[0], std::make_pair(PurgeCause::kPsi, uint64_t{0}));  // counted only
  EXPECT_EQ(calls[1], std::make_pair(PurgeCause::kMemAvailable, uint64_t{100}));
}

TEST(PurgeWorker, AWatchedDescriptorWakesTheWorkerAndStopsCleanly) {
  auto env = std::make_shared<FakeEnv>();
  env->set("/fake/pressure", "some avg10=1.00 avg60=0.00 avg300=0.00 total=5\n");
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  std::vector<std::unique_ptr<PressureSource>> sources;
  sources.push_back(std::make_unique<PsiPressure>(
      env, std::vector<PressureSource::WaitFd>{{efd, POLLIN}}, "/fake/pressure",
      StallLadder(kStallFirstStep, kStallMaxStep, 4s)));
  std::atomic<uint64_t> purged{0};
  PurgeWorker w(
      std::move(sources), [] { return snap(); },
      [&](PurgeCause c, uint64_t pages) {
        EXPECT_EQ(c, PurgeCause::kPsi);
        purged += pages;
        return pages;
      });
  uint64_t one = 1;
  ASSERT_EQ(write(efd, &one, sizeof one), 8);
  ASSERT_TRUE(eventually([&] { return purged.load() == kStallFirstStep / kPage; }));
  PressureStatus st;
  w.report(st);
  EXPECT_EQ(st.active, cause_bit(PurgeCause::kPsi));
  // The destructor stops the watcher blocked in poll(), then the worker.
}

TEST(FilesystemPressure, PurgesAreCountedUnderTheirCause) {
  MountOptions o;
  o.size_bytes = 1024 * kPage;
  o.nr_inodes = 100;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  Filesystem fs(o, page);
  Result<Entry> e = fs.create(kRootIno, "f", 0644, Caller{});
  ASSERT_TRUE(e.ok());
  auto f = fs.open(e->ino, O_RDWR);
  ASSERT_TRUE(f.ok());
  std::string data(64 * page, 'x');
  ASSERT_TRUE(fs.write(**f, data.data(), data.size(), 0).ok());
  std::atomic<int> marked{-1};
  fs.mark(**f, ByteRange{0, 48 * page}, {}, [&](Status s) { marked = s.err(); });
  ASSERT_TRUE(eventually([&] { return marked.load() == 0; }));
  std::vector<std::unique_ptr<PressureSource>> sources;
  sources.push_back(std::make_unique<FixedSource>(PurgeCause::kMemAvailable, 16));
  sources.push_back(std::make_unique<FixedSource>(PurgeCause::kCgroup, 8));
  fs.start(nullptr, std::move(sources));
  auto cause = [&](PurgeCause c) { return fs.stats().causes[static_cast<size_t>(c)]; };
  ASSERT_TRUE(eventually([&] { return cause(PurgeCause::kMemAvailable).pages == 16; }));
  std::atomic<uint64_t> explicit_bytes{UINT64_MAX};
  fs.purge(4 * page, [&](uint64_t b) { explicit_bytes = b; });
  ASSERT_TRUE(eventually([&] { return explicit_bytes.load() != UINT64_MAX; }));
  fs.stop();
  AccountingSnapshot s = fs.stats();
  EXPECT_EQ(explicit_bytes.load(), 4 * page);
  CauseCounters mem = cause(PurgeCause::kMemAvailable), cg = cause(PurgeCause::kCgroup),
                ex = cause(PurgeCause::kExplicit);
  EXPECT_EQ(mem.signals, 1u);
  EXPECT_EQ(mem.purges, 1u);
  EXPECT_EQ(cg.signals, 1u);  // its request was served by the larger one
  EXPECT_EQ(cg.purges, 0u);
  EXPECT_EQ(cg.pages, 0u);
  EXPECT_EQ(ex.pages, 4u);
  EXPECT_EQ(s.pages_purged_total, mem.pages + ex.pages);
  EXPECT_EQ(s.volatile_resident_pages, 48u - 20u);
  EXPECT_EQ(s.resident_pages, 64u - 20u);  // non-volatile pages never purged
}

// ---- A real PSI trigger -----------------------------------------------------------

TEST(RealPsi, TriggerRegistersAndTheWatcherStopsCleanly) {
  PsiTrigger t{false, 150, 2000};
  int fd = open_psi_trigger("/proc/pressure/memory", t);
  if (fd == -ENOENT || fd == -EOPNOTSUPP) {
    GTEST_SKIP() << "no PSI here (/proc/pressure/memory: " << std::strerror(-fd) << ")";
  }
  if (fd == -EPERM || fd == -EACCES || fd == -EINVAL) {
    GTEST_SKIP() << "the kernel does not permit this PSI trigger here (" << t.text()
                 << "): " << std::strerror(-fd);
  }
  ASSERT_GE(fd, 0) << std::strerror(-fd);
  auto env = std::make_shared<RealPressureEnv>();
  std::vector<std::unique_ptr<PressureSource>> sources;
  sources.push_back(std::make_unique<PsiPressure>(
      env, std::vector<PressureSource::WaitFd>{{fd, POLLPRI}}, "/proc/pressure/memory",
      StallLadder(kStallFirstStep, kStallMaxStep, 4s)));
  std::atomic<int> rounds{0};
  {
    PurgeWorker w(
        std::move(sources), [] { return snap(); },
        [&](PurgeCause, uint64_t pages) {
          ++rounds;
          return pages;
        });
    PressureStatus st;
    w.report(st);
    EXPECT_EQ(st.psi_step_bytes, kStallFirstStep);
    std::this_thread::sleep_for(50ms);  // let the watcher block in poll()
  }
  // Whether a stall fired meanwhile depends on the machine; that it stopped is the point.
  SUCCEED() << rounds.load() << " rounds";
}

}  // namespace
}  // namespace volfs::core
