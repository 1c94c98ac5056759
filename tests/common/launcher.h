// launcher.h: starting and stopping a private volfs daemon, shared by the
// integration test fixture (tests/integration/mount_fixture.h) and volbench
// (client/bench/mount.h), which each add their own policy: directories,
// options, cleanup registry, how failures are reported.
// No gtest and no exceptions here: failures come back as values and strings.
// Mount state is read from /proc/self/mountinfo, never by stat() on the
// mountpoint, so a hung daemon cannot hang the caller.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "core/mountinfo.h"

namespace volfs::launcher {

using std::chrono::milliseconds;

struct SpawnOptions {
  std::string log_path;            // stdout and stderr (truncated); stdin is /dev/null
  bool own_process_group = false;  // setpgid(0, 0): a terminal's ^C reaches only the caller
};

// A child process, owned until it is reaped: a daemon started by spawn(), or
// a child the caller forked itself and adopt()ed.
class Process {
 public:
  Process() = default;
  // Kills (SIGKILL) and reaps a child still running: a safety net, the
  // owners stop() theirs first.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Forks and execs argv (argv[0] is looked up in PATH unless it has a '/',
  // so a wrapper such as valgrind can come first). The child starts with an
  // empty signal mask and gets SIGTERM when the thread that started it dies,
  // so it unmounts itself if its owner is killed. Empty on success, else
  // what failed; an exec failure shows in the log and as exit status 127.
  std::string spawn(const std::vector<std::string>& argv, const SpawnOptions& options);
  // Takes over a child forked by the caller.
  void adopt(pid_t pid);

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // True once the process has exited (it stays unreaped), waiting up to timeout.
  bool wait_exit(milliseconds timeout);
  // Waits for the process and returns its wait status; -1 if there is none.
  int reap();

  struct Stopped {
    int status = -1;          // wait status
    bool terminated = false;  // did not exit within exit_grace: SIGTERM was sent
    bool killed = false;      // nor within term_grace after that: SIGKILL
  };
  // Waits up to exit_grace for the daemon to exit on its own (after an
  // unmount), then sends SIGTERM, after term_grace SIGKILL, and reaps it.
  Stopped stop(milliseconds exit_grace, milliseconds term_grace);

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;  // -1 where the kernel has no pidfd_open: polled then
};

enum class MountWait { kMounted, kExited, kTimedOut };
// Polls until a fuse mount shows at mountpoint, the daemon exits (it is not
// reaped: the caller takes its status) or the timeout passes.
MountWait wait_for_mount(Process& daemon, const std::string& mountpoint, milliseconds timeout);

struct Unmounted {
  bool busy = false;  // it was busy: only lazily detached
  std::string error;  // empty if nothing is mounted there any more (or it is detached)
};
// Unmounts a fuse mount at mountpoint, if there is one: umount2, retrying
// EBUSY for busy_retry, then MNT_DETACH (the daemon ends once the last user
// lets go). Where umount2 is not permitted, fusermount3 -u, then -u -z.
Unmounted unmount(const std::string& mountpoint, milliseconds busy_retry = milliseconds(1000));

// The newest fuse or fuse.* mount at path in /proc/self/mountinfo, if any.
std::optional<core::MountinfoEntry> find_fuse_mount(const std::string& path);
inline bool is_fuse_mount(const std::string& path) { return find_fuse_mount(path).has_value(); }
// Polls fd (a pidfd is readable once its process exited); true if ready in time.
bool wait_readable(int fd, milliseconds timeout);
// pidfd_open(2), -1 on failure.
int open_pidfd(pid_t pid);
// The file's contents ("" if it cannot be read): for daemon logs.
std::string read_file(const std::string& path);
// mkdtemp(parent/prefix.XXXXXX) as a real path, the form mountinfo shows;
// empty on failure, *error then says why.
std::string make_temp_dir(const std::string& parent, const std::string& prefix, std::string* error);
// rm -rf dir, unless something is mounted inside it: then nothing is removed
// (a mount's files are never touched). Empty on success, else what went wrong.
std::string remove_tree(const std::string& dir);

}  // namespace volfs::launcher
