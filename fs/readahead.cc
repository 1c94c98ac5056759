// Read-ahead of the mount: see readahead.h.
#include "readahead.h"

#include <fstream>
#include <sstream>
#include <vector>

namespace volfs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](size_t k) { return s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> volfs_mount_device(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::optional<std::string> found;
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if (!(f >> id >> parent >> dev >> root >> point)) continue;
    size_t sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream tail(line.substr(sep + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype == "fuse.volfs" && unescape(point) == mountpoint) found = dev;  // the newest wins
  }
  return found;
}

bool set_bdi_readahead(const std::string& dev, uint64_t bytes) {
  std::ofstream out("/sys/class/bdi/" + dev + "/read_ahead_kb");
  if (!out) return false;
  out << bytes / 1024 << '\n';
  out.close();
  return static_cast<bool>(out);
}

}  // namespace volfs
