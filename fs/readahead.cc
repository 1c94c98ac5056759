// Read-ahead of the mount: see readahead.h.
#include "readahead.h"

#include <fstream>
#include <sstream>

#include "core/mountinfo.h"

namespace volfs {

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
    if (fstype == "fuse.volfs" && core::unescape_mountinfo(point) == mountpoint)
      found = dev;  // the newest wins
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
