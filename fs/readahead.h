// ReadaheadTuner: sets the kernel read-ahead of the mount once FUSE_INIT is
// done. The INIT reply can only lower it (the kernel keeps the smaller of its
// default, 128 KiB, and ours), so a larger value goes to the mount's
// /sys/class/bdi/MAJ:MIN/read_ahead_kb afterwards. Writing there needs root;
// without it the kernel's default stays and nothing is reported.
#pragma once

#include <cstdint>
#include <string>
#include <thread>

namespace volfs {

class ReadaheadTuner {
 public:
  // `mountpoint` must be absolute: the daemon may chdir("/") meanwhile.
  ReadaheadTuner(std::string mountpoint, uint64_t bytes);
  // Joins. Call only once the session is unmounted or serving: the thread
  // waits in stat(2) on the mount until the kernel has its INIT reply, and
  // unmounting ends that wait.
  ~ReadaheadTuner();
  ReadaheadTuner(const ReadaheadTuner&) = delete;
  ReadaheadTuner& operator=(const ReadaheadTuner&) = delete;

 private:
  std::thread thread_;
};

}  // namespace volfs
