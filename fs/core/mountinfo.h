// Reading /proc/self/mountinfo: header-only, so that the daemon, the test
// fixture and volbench, which each look their mounts up there, share it
// without linking the core.
#pragma once

#include <algorithm>
#include <charconv>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace volfs::core {

// Undoes mountinfo's octal escapes (\040 for space, \011, \012, \134).
inline std::string unescape_mountinfo(std::string_view s) {
  auto octal = [&](size_t k) { return s[k] >= '0' && s[k] <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The fields of one mountinfo line that its readers need.
struct MountinfoEntry {
  int mount_id = -1;
  std::string device;       // "MAJ:MIN"
  std::string mount_point;  // unescaped
  std::string fs_type;      // "fuse.volfs", "tmpfs", ...
  std::string source;       // what is mounted (volfs: its fsname)
};

// Parses ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER
// (fields separated by single spaces, which are escaped inside them);
// nullopt if the line does not have that shape.
inline std::optional<MountinfoEntry> parse_mountinfo_line(std::string_view line) {
  std::vector<std::string_view> f;
  for (size_t i = 0; i <= line.size();) {
    size_t end = std::min(line.find(' ', i), line.size());
    if (end > i) f.push_back(line.substr(i, end - i));
    i = end + 1;
  }
  if (f.size() < 8) return std::nullopt;
  auto sep = std::find(f.begin() + 6, f.end(), "-");  // the optional tags end at "-"
  MountinfoEntry e;
  auto [end, ec] = std::from_chars(f[0].data(), f[0].data() + f[0].size(), e.mount_id);
  if (f.end() - sep < 3 || ec != std::errc{} || end != f[0].data() + f[0].size()) {
    return std::nullopt;
  }
  e.device = f[2];
  e.mount_point = unescape_mountinfo(f[4]);
  e.fs_type = sep[1];
  e.source = unescape_mountinfo(sep[2]);
  return e;
}

// Every well-formed line of `path`, in its order (the newest mount last).
inline std::vector<MountinfoEntry> read_mountinfo(const char* path = "/proc/self/mountinfo") {
  std::vector<MountinfoEntry> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (auto e = parse_mountinfo_line(line)) out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace volfs::core
