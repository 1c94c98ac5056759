// Read-ahead of the mount: see readahead.h.
#include "readahead.h"

#include <fstream>

#include "core/mountinfo.h"

namespace volfs {

std::optional<std::string> volfs_mount_device(const std::string& mountpoint) {
  std::optional<std::string> found;
  for (const core::MountinfoEntry& m : core::read_mountinfo()) {
    if (m.fs_type == "fuse.volfs" && m.mount_point == mountpoint) found = m.device;  // newest wins
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
