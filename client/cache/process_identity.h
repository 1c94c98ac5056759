// process_identity.h: who owns a lease, and whether that owner still lives.
// A pid alone is not an identity (pids are reused), so a lease records the
// pid and the process's start time; a zombie counts as dead.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace volfs::cache_detail {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time = 0;  // clock ticks after boot; 0 if /proc is unreadable
};

// getpid() without the system call (~0.1 us each here, and a get took
// three): cached, and forgotten in the child of every fork() by an atfork
// handler. A child made by a raw clone() or _Fork() runs no atfork handler
// and must not use the cache before exec.
pid_t current_pid();

// This process (recomputed after fork).
ProcessIdentity self_identity();

// False once the process has exited (zombie included), or its pid now names
// a process that started at another time. True when in doubt (EPERM: it
// exists but belongs to another user; /proc unreadable).
bool process_alive(const ProcessIdentity& who);

}  // namespace volfs::cache_detail
