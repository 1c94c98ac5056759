// Clearing setuid and setgid when a file changes, as the kernel's VFS does
// (setattr_should_drop_suidgid, chown_common), for the cases that
// FUSE_CAP_HANDLE_KILLPRIV_V2 leaves to the daemon: a write, truncate or
// fallocate that the kernel announces, an open with O_TRUNC, and a chown.
// docs/design.md ("Permissions") says which request carries which case.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string_view>
#include <vector>

namespace volfs::core {

// What the rules need to know of the process that changes the file.
struct Credentials {
  bool cap_fsetid = false;    // CAP_FSETID in its effective set: it keeps the bits
  std::vector<gid_t> groups;  // its filesystem gid and supplementary groups

  bool in_group(gid_t g) const;
};

enum class PrivilegeKill : unsigned char {
  kNone,
  kModify,  // write, truncate, fallocate, open with O_TRUNC
  kChown,   // a change of owner or group
};

// The bits of `mode` (S_ISUID, S_ISGID) that a change `why` by `who` clears
// on a file of group `file_gid`:
//   kModify: nothing for a caller with CAP_FSETID; else setuid, and setgid
//            when group-executable or when the caller is not in the group.
//   kChown:  setuid always; setgid as for kModify but kept by CAP_FSETID.
// Only regular files lose them.
mode_t privileges_dropped(mode_t mode, gid_t file_gid, PrivilegeKill why, const Credentials& who);

// Credentials from the text of /proc/PID/status: CapEff and Groups, plus
// `fsgid` (the FUSE request's gid). nullopt if CapEff is missing or garbled.
std::optional<Credentials> parse_proc_status(std::string_view status, gid_t fsgid);

// Those of process `pid` (a thread id works too). When /proc cannot tell
// (pid 0 from another pid namespace, no such process), the safe side: no
// CAP_FSETID unless uid is 0, and only fsgid as group.
Credentials read_credentials(pid_t pid, uid_t fsuid, gid_t fsgid);

}  // namespace volfs::core
