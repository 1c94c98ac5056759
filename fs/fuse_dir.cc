// FUSE handlers for directory listing: opendir, readdir, releasedir.
#include <vector>

#include "daemon.h"

namespace volfs {
namespace {

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, [&] {
    Status s = daemon_of(req).fs.opendir(ino);
    if (!s.ok()) {
      fuse_reply_err(req, s.err());
      return;
    }
    fi->fh = 0;
    fuse_reply_open(req, fi);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  guarded(req, [&] {
    std::vector<char> buf(size);
    size_t used = 0;
    Status s = daemon_of(req).fs.readdir(
        ino, static_cast<uint64_t>(off),
        [&](std::string_view name, uint64_t child, mode_t type, uint64_t next) {
          struct stat st {};
          st.st_ino = child;
          st.st_mode = type;
          std::string n(name);
          size_t need = fuse_add_direntry(req, buf.data() + used, size - used, n.c_str(), &st,
                                          static_cast<off_t>(next));
          if (need > size - used) return false;
          used += need;
          return true;
        });
    if (!s.ok()) {
      fuse_reply_err(req, s.err());
      return;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

}  // namespace

void assign_dir_operations(fuse_lowlevel_ops& ops) {
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
}

}  // namespace volfs
