#include "privileges.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <string>

namespace volfs::core {
namespace {

constexpr int kCapFsetid = 4;  // <linux/capability.h>

// The value of the line "Name:\t..." of a /proc status text, if present.
std::optional<std::string_view> field(std::string_view text, std::string_view name) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        line[name.size()] == ':') {
      line.remove_prefix(name.size() + 1);
      while (!line.empty() && (line.front() == '\t' || line.front() == ' ')) line.remove_prefix(1);
      return line;
    }
    at = end + 1;
  }
  return std::nullopt;
}

}  // namespace

bool Credentials::in_group(gid_t g) const {
  return std::find(groups.begin(), groups.end(), g) != groups.end();
}

mode_t privileges_dropped(mode_t mode, gid_t file_gid, PrivilegeKill why, const Credentials& who) {
  if (why == PrivilegeKill::kNone || !S_ISREG(mode)) return 0;
  mode_t drop = 0;
  const bool sgid_goes =
      (mode & S_ISGID) && ((mode & S_IXGRP) != 0 || !(who.cap_fsetid || who.in_group(file_gid)));
  if (why == PrivilegeKill::kChown) {
    if (mode & S_ISUID) drop |= S_ISUID;
    if (sgid_goes) drop |= S_ISGID;
    return drop;
  }
  if (who.cap_fsetid) return 0;
  if (mode & S_ISUID) drop |= S_ISUID;
  if (sgid_goes) drop |= S_ISGID;
  return drop;
}

std::optional<Credentials> parse_proc_status(std::string_view status, gid_t fsgid) {
  std::optional<std::string_view> cap = field(status, "CapEff");
  if (!cap) return std::nullopt;
  uint64_t eff = 0;
  auto [end, ec] = std::from_chars(cap->data(), cap->data() + cap->size(), eff, 16);
  if (ec != std::errc{} || end == cap->data()) return std::nullopt;
  Credentials c;
  c.cap_fsetid = (eff >> kCapFsetid) & 1;
  c.groups.push_back(fsgid);
  if (std::optional<std::string_view> groups = field(status, "Groups")) {
    const char* p = groups->data();
    const char* stop = p + groups->size();
    while (p < stop) {
      while (p < stop && *p == ' ') ++p;
      gid_t g = 0;
      auto [next, err] = std::from_chars(p, stop, g);
      if (err != std::errc{} || next == p) break;
      c.groups.push_back(g);
      p = next;
    }
  }
  return c;
}

Credentials read_credentials(pid_t pid, uid_t fsuid, gid_t fsgid) {
  if (pid > 0) {
    std::string path = "/proc/" + std::to_string(pid) + "/status";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      // Usually ~1.5 KiB, but Groups may list up to 65536 groups.
      std::string text;
      std::array<char, 4096> buf{};
      ssize_t n = 0;
      while ((n = ::read(fd, buf.data(), buf.size())) > 0)
        text.append(buf.data(), static_cast<size_t>(n));
      ::close(fd);
      if (auto c = parse_proc_status(text, fsgid)) return *c;
    }
  }
  Credentials c;
  c.cap_fsetid = fsuid == 0;
  c.groups.push_back(fsgid);
  return c;
}

}  // namespace volfs::core
