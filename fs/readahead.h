// Read-ahead of the mount. The kernel sets its bdi's read-ahead at FUSE_INIT
// to the smaller of the value it has (its default, 128 KiB) and the one in
// our INIT reply, so a larger value must be in place on both sides before we
// reply: set_readahead() writes the mount's
// /sys/class/bdi/MAJ:MIN/read_ahead_kb from init(), and the reply then
// carries the same value. It finds the mount through /proc/self/mountinfo,
// never through the mount itself: nothing the daemon does may wait for the
// daemon (a stat(2) of its own mountpoint, killed halfway, would keep the
// process from ever exiting).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace volfs {

// "MAJ:MIN" of the newest volfs mount at `mountpoint` (absolute), from
// /proc/self/mountinfo, or nullopt.
std::optional<std::string> volfs_mount_device(const std::string& mountpoint);

// Writes `bytes` (a multiple of 1 KiB) as the read-ahead of the bdi `dev`.
// Returns false if that is not allowed (not root) or failed.
bool set_bdi_readahead(const std::string& dev, uint64_t bytes);

}  // namespace volfs
