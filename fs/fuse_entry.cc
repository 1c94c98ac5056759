// FUSE handlers for names and attributes: lookup/forget, getattr/setattr,
// node creation, link/unlink, rename, readlink, statfs.
#include "daemon.h"

namespace volfs {
namespace {

void reply_attr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st.ok()) {
    fuse_reply_err(req, st.err());
    return;
  }
  fuse_reply_attr(req, &*st, daemon_of(req).timeout);
}

void reply_status(fuse_req_t req, Status s) { fuse_reply_err(req, s.err()); }

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, [&] { reply_entry(req, daemon_of(req).fs.lookup(parent, name)); });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  daemon_of(req).fs.forget(ino, nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t k = 0; k < count; ++k) daemon_of(req).fs.forget(forgets[k].ino, forgets[k].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  guarded(req, [&] { reply_attr(req, daemon_of(req).fs.getattr(ino)); });
}

// Under KILLPRIV_V2 (main.cc) the kernel tells the daemon to clear
// setuid/setgid in two ways, after fuse_setattr has taken out the mode it
// computed itself:
// - FATTR_KILL_SUIDGID on a truncate by a caller without CAP_FSETID and on
//   every chown that names an owner or group (libfuse 3.17 passes that bit,
//   1 << 11, on as FUSE_SET_ATTR_KILL_SUID);
// - a SETATTR that sets nothing: what is left of the kernel's own clearing
//   (file_remove_privs) before a write or fallocate, which it sends only for
//   a caller without CAP_FSETID, or of a chown(f, -1, -1), which clears
//   setuid whoever calls. The chown rule covers both: for a caller without
//   CAP_FSETID it is the write rule (privileges.h).
// Without KILLPRIV_V2 the kernel sends the mode instead, and the adapter
// passes no credentials, so the core clears nothing itself.
PrivilegeKill privilege_kill(int to_set) {
  if (to_set & FUSE_SET_ATTR_KILL_SUID) {
    return to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) ? PrivilegeKill::kChown
                                                            : PrivilegeKill::kModify;
  }
  return to_set == 0 ? PrivilegeKill::kChown : PrivilegeKill::kNone;
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  guarded(req, [&] {
    SetAttr a;
    a.set_mode = to_set & FUSE_SET_ATTR_MODE;
    a.set_uid = to_set & FUSE_SET_ATTR_UID;
    a.set_gid = to_set & FUSE_SET_ATTR_GID;
    a.set_size = to_set & FUSE_SET_ATTR_SIZE;
    a.set_atime = to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW);
    a.set_mtime = to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW);
    a.atime_now = to_set & FUSE_SET_ATTR_ATIME_NOW;
    a.mtime_now = to_set & FUSE_SET_ATTR_MTIME_NOW;
    a.set_ctime = to_set & FUSE_SET_ATTR_CTIME;
    a.mode = attr->st_mode;
    a.uid = attr->st_uid;
    a.gid = attr->st_gid;
    a.size = static_cast<uint64_t>(attr->st_size);
    a.atime = attr->st_atim;
    a.mtime = attr->st_mtim;
    a.ctime = attr->st_ctim;
    a.kill = privilege_kill(to_set);
    if (a.kill != PrivilegeKill::kNone) a.credentials = privilege_credentials_of(req);
    reply_attr(req, daemon_of(req).fs.setattr(ino, a));
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  guarded(req, [&] {
    reply_entry(req, daemon_of(req).fs.mknod(parent, name, mode, rdev, caller_of(req)));
  });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  guarded(req,
          [&] { reply_entry(req, daemon_of(req).fs.mkdir(parent, name, mode, caller_of(req))); });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  guarded(req, [&] {
    reply_entry(req, daemon_of(req).fs.symlink(target, parent, name, caller_of(req)));
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  guarded(req, [&] { reply_entry(req, daemon_of(req).fs.link(ino, parent, name)); });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, [&] { reply_status(req, daemon_of(req).fs.unlink(parent, name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, [&] { reply_status(req, daemon_of(req).fs.rmdir(parent, name)); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned flags) {
  guarded(req, [&] {
    reply_status(req, daemon_of(req).fs.rename(parent, name, new_parent, new_name, flags));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, [&] {
    Result<std::string> target = daemon_of(req).fs.readlink(ino);
    if (!target.ok()) {
      fuse_reply_err(req, target.err());
      return;
    }
    fuse_reply_readlink(req, target->c_str());
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, [&] {
    struct statvfs s = daemon_of(req).fs.statfs();
    fuse_reply_statfs(req, &s);
  });
}

}  // namespace

void reply_entry(fuse_req_t req, const Result<Entry>& e) {
  if (!e.ok()) {
    fuse_reply_err(req, e.err());
    return;
  }
  fuse_entry_param p{};
  p.ino = e->ino;
  p.attr = e->attr;
  p.attr_timeout = p.entry_timeout = daemon_of(req).timeout;
  // If the kernel does not get the reply (the request was interrupted), it
  // never learns of this lookup reference; like every FUSE filesystem we
  // accept that the inode then lives until unmount.
  fuse_reply_entry(req, &p);
}

void assign_entry_operations(fuse_lowlevel_ops& ops) {
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.readlink = op_readlink;
  ops.statfs = op_statfs;
}

}  // namespace volfs
