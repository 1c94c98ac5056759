// System memory-pressure sources: see pressure.h.
#include "pressure.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "mountinfo.h"

namespace volfs::core {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string mib(uint64_t bytes) { return std::to_string((bytes + kMiB / 2) / kMiB) + " MiB"; }

std::string ms_since(PressureEnv::Clock::time_point start, PressureEnv::Clock::time_point now) {
  return std::to_string(
             std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count()) +
         " ms";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Calls f(line) for each line of text.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

std::optional<uint64_t> to_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t k = s.find(sep);
    out.push_back(s.substr(0, k));
    if (k == std::string_view::npos) return out;
    s.remove_prefix(k + 1);
  }
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::string_view w : split(s, ' ')) {
    if (!w.empty()) out.push_back(w);
  }
  return out;
}

void close_all(const std::vector<PressureSource::WaitFd>& fds) {
  for (const auto& w : fds) ::close(w.fd);
}

}  // namespace

// ---- The world ----------------------------------------------------------------

std::optional<std::string> RealPressureEnv::read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void RealPressureEnv::log(const std::string& line) {
  std::fprintf(stderr, "volfs: %s\n", line.c_str());
}

// ---- Parsers --------------------------------------------------------------------

std::optional<MemInfo> parse_meminfo(std::string_view text) {
  std::optional<uint64_t> total, avail;
  for_each_line(text, [&](std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    std::string_view key = line.substr(0, colon);
    if (key != "MemTotal" && key != "MemAvailable") return;
    std::vector<std::string_view> w = words(line.substr(colon + 1));
    if (w.empty() || w.size() > 2 || (w.size() == 2 && w[1] != "kB")) return;
    std::optional<uint64_t> v = to_u64(w[0]);
    if (!v || *v > (UINT64_MAX >> 10)) return;
    uint64_t bytes = w.size() == 2 ? *v << 10 : *v;
    (key == "MemTotal" ? total : avail) = bytes;
  });
  if (!total || !avail) return std::nullopt;
  return MemInfo{*total, *avail};
}

std::optional<PsiReading> parse_psi(std::string_view text) {
  PsiReading r;
  bool any = false;
  for_each_line(text, [&](std::string_view line) {
    std::vector<std::string_view> w = words(line);
    if (w.size() != 5 || (w[0] != "some" && w[0] != "full")) return;
    PsiAverages a;
    for (size_t k = 1; k < 5; ++k) {
      size_t eq = w[k].find('=');
      if (eq == std::string_view::npos) return;
      std::string_view key = w[k].substr(0, eq), val = w[k].substr(eq + 1);
      if (key == "total") {
        std::optional<uint64_t> t = to_u64(val);
        if (!t) return;
        a.total_us = *t;
        continue;
      }
      double d = 0;
      auto [end, ec] = std::from_chars(val.data(), val.data() + val.size(), d);
      if (ec != std::errc() || end != val.data() + val.size()) return;
      if (key == "avg10") {
        a.avg10 = d;
      } else if (key == "avg60") {
        a.avg60 = d;
      } else if (key == "avg300") {
        a.avg300 = d;
      } else {
        return;
      }
    }
    (w[0] == "some" ? r.some : r.full) = a;
    any = true;
  });
  if (!any) return std::nullopt;
  return r;
}

std::optional<uint64_t> parse_keyed(std::string_view text, std::string_view key) {
  std::optional<uint64_t> out;
  for_each_line(text, [&](std::string_view line) {
    std::vector<std::string_view> w = words(line);
    if (!out && w.size() == 2 && w[0] == key) out = to_u64(w[1]);
  });
  return out;
}

std::optional<uint64_t> parse_cgroup_limit(std::string_view text) {
  text = trim(text);
  if (text == "max") return kUnlimited;
  std::optional<uint64_t> v = to_u64(text);
  if (!v) return std::nullopt;
  // v1 reports "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712
  // with 4 KiB pages); no real limit comes near 2^62 bytes.
  if (*v >= (1ull << 62)) return kUnlimited;
  return v;
}

ProcCgroup parse_proc_cgroup(std::string_view text) {
  ProcCgroup out;
  for_each_line(text, [&](std::string_view line) {
    size_t a = line.find(':');
    if (a == std::string_view::npos) return;
    size_t b = line.find(':', a + 1);
    if (b == std::string_view::npos) return;
    std::string_view id = line.substr(0, a), ctl = line.substr(a + 1, b - a - 1);
    std::string path(line.substr(b + 1));
    if (path.empty() || path[0] != '/') return;
    if (id == "0" && ctl.empty()) {
      out.v2 = path;
      return;
    }
    for (std::string_view c : split(ctl, ',')) {
      if (c == "memory") out.v1_memory = path;
    }
  });
  return out;
}

CgroupMounts parse_cgroup_mounts(std::string_view mountinfo) {
  CgroupMounts out;
  for_each_line(mountinfo, [&](std::string_view line) {
    size_t sep = line.find(" - ");
    if (sep == std::string_view::npos) return;
    std::vector<std::string_view> left = words(line.substr(0, sep));
    std::vector<std::string_view> right = words(line.substr(sep + 3));
    if (left.size() < 5 || right.size() < 3) return;
    CgroupMount m{unescape_mountinfo(left[4]), unescape_mountinfo(left[3])};
    if (right[0] == "cgroup2") {
      if (!out.v2) out.v2 = m;
    } else if (right[0] == "cgroup") {
      for (std::string_view opt : split(right[2], ',')) {
        if (opt == "memory" && !out.v1_memory) out.v1_memory = m;
      }
    }
  });
  return out;
}

std::vector<std::string> cgroup_chain(const CgroupMount& m, const std::string& path) {
  std::string root = m.root == "/" ? "" : m.root;
  if (path.compare(0, root.size(), root) != 0) return {};
  std::string rel = path.substr(root.size());
  if (!rel.empty() && rel[0] != '/') return {};
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  std::vector<std::string> chain;
  for (;;) {
    chain.push_back(m.mountpoint + rel);
    if (rel.empty()) break;
    rel.resize(rel.rfind('/'));
  }
  return chain;
}

// ---- Policy ---------------------------------------------------------------------

uint64_t shortfall_pages(uint64_t have, uint64_t floor, uint64_t step, uint64_t page_size) {
  if (have >= floor) return 0;
  return pages_for(floor - have, page_size) + pages_for(step, page_size);
}

uint64_t StallLadder::on_stall(Clock::time_point now) {
  if (last_ && now - *last_ > reset_after_) next_ = first_;
  last_ = now;
  uint64_t step = next_;
  next_ = std::min(max_, next_ * 2);
  return step;
}

uint64_t StallLadder::next_step(Clock::time_point now) const {
  if (last_ && now - *last_ > reset_after_) return first_;
  return next_;
}

// ---- MemAvailable ---------------------------------------------------------------

MemAvailablePressure::MemAvailablePressure(std::shared_ptr<PressureEnv> env, uint64_t floor_bytes,
                                           uint64_t step_bytes)
    : env_(std::move(env)), floor_(floor_bytes), step_(step_bytes) {}

uint64_t MemAvailablePressure::pages_to_purge(const AccountingSnapshot& s) {
  page_size_ = s.page_size;
  std::optional<std::string> text = env_->read_file("/proc/meminfo");
  std::optional<MemInfo> mi = text ? parse_meminfo(*text) : std::nullopt;
  if (!mi) {
    if (!warned_) env_->log("pressure: cannot read MemAvailable from /proc/meminfo");
    warned_ = true;
    return 0;
  }
  available_.store(mi->available_bytes, std::memory_order_relaxed);
  const auto now = env_->now();
  if (mi->available_bytes >= floor_) {
    if (in_episode_) {
      env_->log("pressure: MemAvailable back at " + mib(mi->available_bytes) + " (mem_min " +
                mib(floor_) + ") after " + ms_since(episode_start_, now) + ": purged " +
                mib(episode_pages_ * page_size_) + " in " + std::to_string(episode_rounds_) +
                " rounds");
      in_episode_ = false;
    }
    return 0;
  }
  if (!in_episode_) {
    env_->log("pressure: MemAvailable " + mib(mi->available_bytes) + " below mem_min " +
              mib(floor_) + ": purging the shortfall and " + mib(step_));
    in_episode_ = true;
    episode_start_ = now;
    episode_pages_ = episode_rounds_ = 0;
  }
  ++episode_rounds_;
  return shortfall_pages(mi->available_bytes, floor_, step_, s.page_size);
}

void MemAvailablePressure::report(PressureStatus& st) const {
  st.active |= cause_bit(cause());
  st.mem_available_bytes = available_.load(std::memory_order_relaxed);
  st.mem_min_bytes = floor_;
}

// ---- PSI ------------------------------------------------------------------------

PsiPressure::PsiPressure(std::shared_ptr<PressureEnv> env, std::vector<WaitFd> triggers,
                         std::string pressure_file, StallLadder ladder)
    : env_(std::move(env)),
      triggers_(std::move(triggers)),
      pressure_file_(std::move(pressure_file)),
      ladder_(ladder) {
  step_bytes_.store(ladder_.next_step(env_->now()), std::memory_order_relaxed);
}

PsiPressure::~PsiPressure() { close_all(triggers_); }

void PsiPressure::ready(int fd, short revents) {
  // A PSI trigger reports POLLPRI and needs no read; an eventfd (the seam's
  // stand-in, or a cgroup v1 event) stays readable until its count is read.
  if (revents & POLLIN) {
    uint64_t count;
    (void)!::read(fd, &count, sizeof count);
  }
  if (revents & (POLLPRI | POLLIN)) pending_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t PsiPressure::pages_to_purge(const AccountingSnapshot& s) {
  const auto now = env_->now();
  uint64_t bytes = 0;
  if (pending_.exchange(0, std::memory_order_relaxed)) {
    bytes = ladder_.on_stall(now);
    std::string line = "pressure: PSI memory stall";
    if (std::optional<std::string> text = env_->read_file(pressure_file_)) {
      if (std::optional<PsiReading> r = parse_psi(*text); r && r->some) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " (some avg10=%.2f)", r->some->avg10);
        line += buf;
      }
    }
    env_->log(line + ": purging " + mib(bytes));
  }
  step_bytes_.store(ladder_.next_step(now), std::memory_order_relaxed);
  return bytes ? pages_for(bytes, s.page_size) : 0;
}

void PsiPressure::report(PressureStatus& st) const {
  st.active |= cause_bit(cause());
  st.psi_step_bytes = step_bytes_.load(std::memory_order_relaxed);
}

// ---- cgroup ---------------------------------------------------------------------

std::optional<CgroupSetup> find_memory_cgroup(PressureEnv& env) {
  std::optional<std::string> self = env.read_file("/proc/self/cgroup");
  std::optional<std::string> mi = env.read_file("/proc/self/mountinfo");
  if (!self || !mi) return std::nullopt;
  ProcCgroup pc = parse_proc_cgroup(*self);
  CgroupMounts mounts = parse_cgroup_mounts(*mi);
  if (pc.v2 && mounts.v2) {
    std::vector<std::string> chain = cgroup_chain(*mounts.v2, *pc.v2);
    // The memory controller is on for a v2 cgroup iff it has memory.current
    // (the root has none: its figures are the system's).
    for (const std::string& dir : chain) {
      if (env.read_file(dir + "/memory.current")) return CgroupSetup{2, chain};
    }
  }
  if (pc.v1_memory && mounts.v1_memory) {
    std::vector<std::string> chain = cgroup_chain(*mounts.v1_memory, *pc.v1_memory);
    if (!chain.empty()) return CgroupSetup{1, chain};
  }
  return std::nullopt;
}

CgroupPressure::CgroupPressure(std::shared_ptr<PressureEnv> env, CgroupSetup setup,
                               PressureOptions options, std::vector<WaitFd> events,
                               std::vector<int> keep_open)
    : env_(std::move(env)),
      setup_(std::move(setup)),
      options_(options),
      events_(std::move(events)),
      keep_open_(std::move(keep_open)),
      ladder_(kStallFirstStep, kStallMaxStep, std::chrono::seconds(4)),
      last_events_(setup_.chain.size(), 0) {
  for (size_t k = 0; k < setup_.chain.size(); ++k) {
    if (std::optional<Level> l = read_level(setup_.chain[k])) last_events_[k] = l->events;
  }
}

CgroupPressure::~CgroupPressure() {
  close_all(events_);
  for (int fd : keep_open_) ::close(fd);
}

std::optional<CgroupPressure::Level> CgroupPressure::read_level(const std::string& dir) {
  Level l;
  l.dir = dir;
  auto limit_of = [&](const char* file) -> uint64_t {
    std::optional<std::string> t = env_->read_file(dir + "/" + file);
    std::optional<uint64_t> v = t ? parse_cgroup_limit(*t) : std::nullopt;
    return v.value_or(kUnlimited);
  };
  const bool v2 = setup_.version == 2;
  l.limit = v2 ? std::min(limit_of("memory.max"), limit_of("memory.high"))
               : limit_of("memory.limit_in_bytes");
  if (v2) {
    if (std::optional<std::string> ev = env_->read_file(dir + "/memory.events")) {
      for (const char* key : {"high", "max", "oom"}) l.events += parse_keyed(*ev, key).value_or(0);
    }
  }
  if (l.limit == kUnlimited) return l;
  std::optional<std::string> usage =
      env_->read_file(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
  std::optional<uint64_t> used = usage ? parse_cgroup_limit(*usage) : std::nullopt;
  if (!used || *used == kUnlimited) return std::nullopt;
  // Clean file cache is dropped by the kernel when the limit is near; what
  // it cannot drop without swap (anon, shmem: our store) is what counts.
  uint64_t inactive = 0;
  if (std::optional<std::string> st = env_->read_file(dir + "/memory.stat")) {
    inactive = parse_keyed(*st, v2 ? "inactive_file" : "total_inactive_file").value_or(0);
  }
  l.used = *used - std::min(*used, inactive);
  return l;
}

void CgroupPressure::ready(int fd, short revents) {
  if (revents & POLLIN) {
    uint64_t count;
    (void)!::read(fd, &count, sizeof count);
  }
  if (revents & (POLLPRI | POLLIN)) pending_.fetch_add(1, std::memory_order_relaxed);
}

uint64_t CgroupPressure::pages_to_purge(const AccountingSnapshot& s) {
  page_size_ = s.page_size;
  const auto now = env_->now();
  uint64_t deficit = 0;
  bool stall = pending_.exchange(0, std::memory_order_relaxed) != 0;
  std::optional<Level> tightest;  // the level closest to its headroom
  uint64_t tightest_min = 0;
  int64_t tightest_slack = 0;
  for (size_t k = 0; k < setup_.chain.size(); ++k) {
    std::optional<Level> l = read_level(setup_.chain[k]);
    if (!l) continue;
    if (l->events > last_events_[k]) stall = true;
    last_events_[k] = l->events;
    if (l->limit == kUnlimited) continue;
    uint64_t min = cgroup_min_for(options_, l->limit);
    uint64_t headroom = l->limit > l->used ? l->limit - l->used : 0;
    int64_t slack = static_cast<int64_t>(headroom) - static_cast<int64_t>(min);
    if (!tightest || slack < tightest_slack) {
      tightest = l;
      tightest_min = min;
      tightest_slack = slack;
    }
  }
  if (tightest && tightest_slack < 0) deficit = static_cast<uint64_t>(-tightest_slack);
  if (tightest) {
    limit_.store(tightest->limit, std::memory_order_relaxed);
    used_.store(tightest->used, std::memory_order_relaxed);
    min_.store(tightest_min, std::memory_order_relaxed);
  }
  uint64_t bytes = deficit ? deficit + options_.step_bytes : 0;
  if (stall) bytes = std::max(bytes, ladder_.on_stall(now));
  if (bytes == 0) {
    if (in_episode_) {
      env_->log("pressure: cgroup back within its headroom after " + ms_since(episode_start_, now) +
                ": purged " + mib(episode_pages_ * page_size_));
      in_episode_ = false;
    }
    return 0;
  }
  if (!in_episode_) {
    std::string where = tightest ? tightest->dir + ": " + mib(tightest->used) + " used of " +
                                       mib(tightest->limit) + ", headroom kept " + mib(tightest_min)
                                 : std::string("?");
    env_->log("pressure: memory cgroup " + where + (stall ? " (pressure event)" : "") +
              ": purging " + mib(bytes));
    in_episode_ = true;
    episode_start_ = now;
    episode_pages_ = 0;
  }
  return pages_for(bytes, s.page_size);
}

void CgroupPressure::report(PressureStatus& st) const {
  st.active |= cause_bit(cause());
  st.cgroup_limit_bytes = limit_.load(std::memory_order_relaxed);
  st.cgroup_used_bytes = used_.load(std::memory_order_relaxed);
  st.cgroup_min_bytes = min_.load(std::memory_order_relaxed);
}

// ---- The daemon's set -----------------------------------------------------------

int open_psi_trigger(const std::string& path, const PsiTrigger& t) {
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -errno;
  std::string text = t.text();
  // The kernel wants the terminating NUL too (Documentation/accounting/psi.rst).
  if (::write(fd, text.c_str(), text.size() + 1) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

namespace {

std::string refused(const std::string& what, int err) {
  std::string line = what + ": " + std::strerror(err);
  if (err == EINVAL) {
    line += " (without CAP_SYS_RESOURCE the kernel takes only windows that are multiples of 2 s)";
  }
  return line;
}

// v1: an eventfd signalled at "medium" memory pressure of the cgroup `dir`
// (Documentation/admin-guide/cgroup-v1/memory.rst, "Memory Pressure").
bool register_v1_pressure_level(const std::string& dir, std::vector<PressureSource::WaitFd>& fds,
                                std::vector<int>& keep_open) {
  int level = ::open((dir + "/memory.pressure_level").c_str(), O_RDONLY | O_CLOEXEC);
  if (level < 0) return false;
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int ctl = ::open((dir + "/cgroup.event_control").c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = efd >= 0 && ctl >= 0;
  if (ok) {
    std::string line = std::to_string(efd) + " " + std::to_string(level) + " medium";
    ok = ::write(ctl, line.c_str(), line.size()) >= 0;
  }
  if (ctl >= 0) ::close(ctl);
  if (!ok) {
    if (efd >= 0) ::close(efd);
    ::close(level);
    return false;
  }
  fds.push_back({efd, POLLIN});
  keep_open.push_back(level);
  return true;
}

}  // namespace

SystemPressure open_system_pressure(const PressureOptions& o,
                                    const std::shared_ptr<PressureEnv>& env) {
  SystemPressure out;
  if (o.mem_min_bytes) {
    std::optional<std::string> text = env->read_file("/proc/meminfo");
    if (!text || !parse_meminfo(*text)) {
      out.notes.push_back("pressure: no MemAvailable in /proc/meminfo; mem_min= is off");
    } else {
      out.sources.push_back(
          std::make_unique<MemAvailablePressure>(env, o.mem_min_bytes, o.step_bytes));
      out.notes.push_back("pressure: keeping MemAvailable above " + mib(o.mem_min_bytes));
    }
  }
  if (o.psi_some.on() || o.psi_full.on()) {
    const std::string file = "/proc/pressure/memory";
    std::vector<PressureSource::WaitFd> fds;
    uint32_t window_ms = 0;
    for (const PsiTrigger* t : {&o.psi_some, &o.psi_full}) {
      if (!t->on()) continue;
      int fd = open_psi_trigger(file, *t);
      if (fd < 0) {
        std::string line = refused("PSI trigger '" + t->text() + "' on " + file, -fd);
        if (o.psi_given) {
          close_all(fds);
          out.error = line;
          return out;
        }
        out.notes.push_back("pressure: " + line + "; that trigger is off");
        continue;
      }
      fds.push_back({fd, POLLPRI});
      window_ms = std::max(window_ms, t->window_ms);
      out.notes.push_back("pressure: PSI trigger '" + t->text() + "' on " + file);
    }
    if (!fds.empty()) {
      // Quiet for two windows: the stall is over, the next one starts small.
      StallLadder ladder(kStallFirstStep, kStallMaxStep, std::chrono::milliseconds(2 * window_ms));
      out.sources.push_back(std::make_unique<PsiPressure>(env, std::move(fds), file, ladder));
    }
  }
  if (o.cgroup) {
    std::optional<CgroupSetup> setup = find_memory_cgroup(*env);
    if (!setup) {
      out.notes.push_back("pressure: no memory cgroup found; cgroup source off");
      return out;
    }
    // Probe the levels for a limit: without one the source has nothing to do.
    CgroupPressure probe(env, *setup, o);
    std::optional<CgroupPressure::Level> tightest;
    for (const std::string& dir : setup->chain) {
      std::optional<CgroupPressure::Level> l = probe.read_level(dir);
      if (l && l->limit != kUnlimited && (!tightest || l->limit < tightest->limit)) tightest = l;
    }
    if (!tightest) {
      out.notes.push_back("pressure: memory cgroup v" + std::to_string(setup->version) + " " +
                          setup->chain.front() + " has no limit; cgroup source off");
      return out;
    }
    std::vector<PressureSource::WaitFd> fds;
    std::vector<int> keep_open;
    std::string events = "no events";
    if (setup->version == 2) {
      PsiTrigger t = o.psi_some.on() ? o.psi_some : PsiTrigger{false, 150, 2000};
      int fd = open_psi_trigger(tightest->dir + "/memory.pressure", t);
      if (fd >= 0) {
        fds.push_back({fd, POLLPRI});
        events = "memory.pressure trigger '" + t.text() + "'";
      }
    } else if (register_v1_pressure_level(tightest->dir, fds, keep_open)) {
      events = "memory.pressure_level medium";
    }
    out.notes.push_back("pressure: memory cgroup v" + std::to_string(setup->version) + " " +
                        tightest->dir + " limit " + mib(tightest->limit) + ", keeping " +
                        mib(cgroup_min_for(o, tightest->limit)) + " headroom; " + events);
    out.sources.push_back(std::make_unique<CgroupPressure>(env, std::move(*setup), o,
                                                           std::move(fds), std::move(keep_open)));
  }
  return out;
}

}  // namespace volfs::core
