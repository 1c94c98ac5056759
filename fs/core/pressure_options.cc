// Parsers for PressureOptions. See pressure_options.h.
#include "pressure_options.h"

#include <algorithm>
#include <charconv>

#include "options.h"

namespace volfs::core {
namespace {

std::optional<uint32_t> parse_ms(std::string_view s) {
  uint32_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// "STALL/WINDOW" in milliseconds, or "off".
bool parse_trigger(std::string_view v, PsiTrigger& t) {
  if (v == "off" || v == "0") {
    t.stall_ms = 0;
    return true;
  }
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  std::optional<uint32_t> stall = parse_ms(v.substr(0, slash));
  std::optional<uint32_t> window = parse_ms(v.substr(slash + 1));
  if (!stall || !window) return false;
  t.stall_ms = *stall;
  t.window_ms = *window;
  return true;
}

}  // namespace

std::string PsiTrigger::text() const {
  return std::string(full ? "full " : "some ") + std::to_string(uint64_t{stall_ms} * 1000) + " " +
         std::to_string(uint64_t{window_ms} * 1000);
}

uint64_t default_mem_min(uint64_t ram_bytes) {
  uint64_t v = ram_bytes / 100 * kMemMinDefaultPct;
  v = std::clamp(v, kMemMinFloor, kMemMinCeiling);
  return std::min(v, ram_bytes / 4);
}

PressureOptions default_pressure_options(uint64_t ram_bytes) {
  PressureOptions o;
  o.mem_min_bytes = default_mem_min(ram_bytes);
  return o;
}

uint64_t cgroup_min_for(const PressureOptions& o, uint64_t limit_bytes) {
  if (o.cgroup_min_bytes) return o.cgroup_min_bytes;
  if (o.cgroup_min_pct) return limit_bytes / 100 * o.cgroup_min_pct;
  uint64_t v = limit_bytes / 100 * kCgroupMinDefaultPct;
  return std::clamp(v, kCgroupMinFloor, kCgroupMinCeiling);
}

std::optional<std::string> parse_pressure_option(std::string_view arg, uint64_t ram_bytes,
                                                 PressureOptions& o) {
  std::string_view key = arg, value;
  bool has_value = false;
  if (size_t eq = arg.find('='); eq != std::string_view::npos) {
    key = arg.substr(0, eq);
    value = arg.substr(eq + 1);
    has_value = true;
  }
  auto bad = [&](std::string_view expected) {
    return "invalid value for " + std::string(key) + "=: '" + std::string(value) + "' (expected " +
           std::string(expected) + ")";
  };
  auto needs_value = [&] {
    return std::string(key) + " needs a value (" + std::string(key) + "=...)";
  };
  if (key == "nopressure") {
    if (has_value) return "nopressure takes no value";
    o.mem_min_bytes = 0;
    o.psi_some.stall_ms = 0;
    o.psi_full.stall_ms = 0;
    o.cgroup = false;
    return "";
  }
  if (key == "mem_min") {
    if (!has_value) return needs_value();
    if (value == "off") {
      o.mem_min_bytes = 0;
      return "";
    }
    Result<uint64_t> r = parse_size(value, ram_bytes);
    if (!r.ok()) return bad("bytes with k/m/g/t suffix, N% of RAM, or 0 for off");
    o.mem_min_bytes = *r;
    return "";
  }
  if (key == "pressure_step") {
    if (!has_value) return needs_value();
    Result<uint64_t> r = parse_count(value);
    if (!r.ok() || *r == 0) return bad("bytes with k/m/g suffix, at least one page");
    o.step_bytes = *r;
    return "";
  }
  if (key == "psi") {
    if (!has_value) return needs_value();
    if (value == "off") {
      o.psi_some.stall_ms = 0;
      o.psi_full.stall_ms = 0;
      return "";
    }
    if (value == "on") return "";
    return bad("on or off");
  }
  if (key == "psi_some" || key == "psi_full") {
    if (!has_value) return needs_value();
    PsiTrigger& t = key == "psi_some" ? o.psi_some : o.psi_full;
    if (!parse_trigger(value, t)) return bad("STALL_MS/WINDOW_MS, e.g. 150/2000, or off");
    if (t.on()) o.psi_given = true;
    return "";
  }
  if (key == "cgroup") {
    if (!has_value) return needs_value();
    if (value != "on" && value != "off") return bad("on or off");
    o.cgroup = value == "on";
    return "";
  }
  if (key == "cgroup_min") {
    if (!has_value) return needs_value();
    if (!value.empty() && value.back() == '%') {
      Result<unsigned> p = parse_percent(value);
      if (!p.ok() || *p == 0 || *p >= 100) return bad("bytes with k/m/g suffix or N% of the limit");
      o.cgroup_min_pct = *p;
      o.cgroup_min_bytes = 0;
      return "";
    }
    Result<uint64_t> r = parse_count(value);
    if (!r.ok() || *r == 0) return bad("bytes with k/m/g suffix or N% of the limit");
    o.cgroup_min_bytes = *r;
    o.cgroup_min_pct = 0;
    return "";
  }
  return std::nullopt;
}

std::string validate_pressure(const PressureOptions& o, uint64_t ram_bytes) {
  // A floor near all of RAM would purge everything all the time: a typo.
  if (o.mem_min_bytes > ram_bytes / 10 * 9) {
    return "mem_min= must be at most 90% of RAM (" + std::to_string(ram_bytes / 10 * 9 >> 20) +
           " MiB)";
  }
  for (const PsiTrigger* t : {&o.psi_some, &o.psi_full}) {
    if (!t->on()) continue;
    const char* name = t->full ? "psi_full" : "psi_some";
    // The kernel's own bounds (kernel/sched/psi.c): a window of 500 ms to
    // 10 s, a stall no longer than the window.
    if (t->window_ms < 500 || t->window_ms > 10000) {
      return std::string(name) + "= window must be 500 to 10000 ms";
    }
    if (t->stall_ms > t->window_ms) {
      return std::string(name) + "= stall must not exceed the window";
    }
  }
  return "";
}

}  // namespace volfs::core
