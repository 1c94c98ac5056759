// mount.h: private volfs instances for volbench, and the cleanup that always
// runs - on success, on error and on SIGINT/SIGTERM/SIGHUP - so that no run
// leaves a mount, a daemon or a scratch directory behind.
// Invariant: every PrivateMount is registered with the cleanup registry from
// the moment its daemon is forked until it has been unmounted and reaped.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "launcher.h"

namespace volbench {

// Cleanup actions, run last-registered first, exactly once each, by whoever
// gets there first: the normal exit path or the signal thread.
class Cleanup {
 public:
  using Id = unsigned long;
  static Id add(std::function<void()> fn);
  // Runs the action now (if it has not run) and forgets it.
  static void run(Id id);
  // Runs every action left, in reverse order.
  static void run_all();
  // Blocks SIGINT, SIGTERM and SIGHUP in every thread and starts a thread
  // that waits for them, runs run_all() and exits with 128 + signal. Call
  // before starting any other thread.
  static void install_signal_thread();
  // True once a signal started the cleanup: failures after that are its
  // consequence, not news.
  static bool interrupted();
};

// A volfs daemon started as a child (`volfs MNT -f -o OPTIONS`) in its own
// process group, mounted at dir/mnt, its output in dir/daemon.log. The
// process handling is the launcher's (tests/common/launcher.h).
class PrivateMount {
 public:
  PrivateMount(const std::string& daemon_bin, const std::string& dir, const std::string& options);
  ~PrivateMount();
  PrivateMount(const PrivateMount&) = delete;
  PrivateMount& operator=(const PrivateMount&) = delete;

  // Unmounts (lazily if busy), reaps the daemon (SIGTERM, then SIGKILL if it
  // lingers) and removes the mountpoint. Idempotent; never throws.
  void stop();
  pid_t pid() const { return daemon_.pid(); }
  const std::string& mountpoint() const { return mnt_; }
  std::string log_tail() const;

 private:
  std::string dir_;
  std::string mnt_;
  std::string log_;
  volfs::launcher::Process daemon_;
  Cleanup::Id cleanup_ = 0;
};

using volfs::launcher::is_fuse_mount;
// The pid of the FUSE daemon serving `mountpoint`, found by its /dev/fuse fd
// and its command line; -1 if not found.
pid_t find_daemon_pid(const std::string& mountpoint);
// True if `dir` is on a volfs mount (FUSE that answers VOLFS_IOC_STATS).
bool is_volfs(const std::string& dir);
// mkdtemp(parent/prefix.XXXXXX), absolute path.
std::string make_temp_dir(const std::string& parent, const std::string& prefix);
// Removes a directory tree that must not contain a mountpoint (checked).
void remove_tree(const std::string& dir);

}  // namespace volbench
