// ReadaheadTuner: see readahead.h.
#include "readahead.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace volfs {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;

void tune(const std::string& mountpoint, uint64_t bytes) {
  // Answered only after the kernel has processed our INIT reply, which is
  // when it last sets the read-ahead itself.
  struct stat st;
  struct statfs sfs;
  if (stat(mountpoint.c_str(), &st) != 0 || statfs(mountpoint.c_str(), &sfs) != 0 ||
      sfs.f_type != kFuseSuperMagic) {
    return;  // unmounted already, or something else is mounted there
  }
  char path[64];
  std::snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
                minor(st.st_dev));
  std::ofstream out(path);
  if (out) out << bytes / 1024 << '\n';
  out.close();
  if (!out && errno != EACCES && errno != EPERM && errno != EROFS && errno != ENOENT) {
    std::fprintf(stderr, "volfs: cannot set readahead in %s: %s\n", path, std::strerror(errno));
  }
}

}  // namespace

ReadaheadTuner::ReadaheadTuner(std::string mountpoint, uint64_t bytes)
    : thread_([mountpoint = std::move(mountpoint), bytes] { tune(mountpoint, bytes); }) {}

ReadaheadTuner::~ReadaheadTuner() { thread_.join(); }

}  // namespace volfs
