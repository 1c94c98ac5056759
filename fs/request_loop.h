// The daemon's multi-threaded request loop: libfuse's loop, plus a read
// barrier for the core (core::ReadBarrier). The kernel sends the RELEASE of
// a close(2) and the FORGET of an unlink(2) without waiting for them, so a
// write right after may be served while they sit, read but not begun, in a
// worker that has not run: the write would find the mount full where tmpfs
// would have the room. The barrier lets it wait for them (docs/design.md,
// "When a deleted file's memory comes back").
#pragma once

#include <climits>

#include "core/filesystem.h"
#include "daemon.h"  // the libfuse API version

namespace volfs {

struct RequestLoopOptions {
  unsigned max_threads = 64;
  unsigned max_idle_threads = UINT_MAX;  // UINT_MAX: idle workers stay
};

// Serves `se` until it is unmounted, or SIGINT, SIGTERM or SIGHUP arrives
// (the loop installs its own handlers for them while it runs, and puts the
// previous ones back). Returns 0, or -errno of a failed read of /dev/fuse.
int serve_requests(fuse_session* se, core::Filesystem& fs, const RequestLoopOptions& options);

}  // namespace volfs
