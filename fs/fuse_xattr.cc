// FUSE handlers for extended attributes (the user.* namespace).
#include "daemon.h"

namespace volfs {
namespace {

// getxattr and listxattr share the size protocol: size 0 asks for the
// length, a buffer too small is ERANGE.
void reply_sized(fuse_req_t req, const Result<std::string>& value, size_t size) {
  if (!value.ok()) {
    fuse_reply_err(req, value.err());
  } else if (size == 0) {
    fuse_reply_xattr(req, value->size());
  } else if (value->size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value->data(), value->size());
  }
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  guarded(req, [&] {
    fuse_reply_err(req, daemon_of(req).fs.setxattr(ino, name, {value, size}, flags).err());
  });
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, [&] { reply_sized(req, daemon_of(req).fs.getxattr(ino, name), size); });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, [&] { reply_sized(req, daemon_of(req).fs.listxattr(ino), size); });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  guarded(req, [&] { fuse_reply_err(req, daemon_of(req).fs.removexattr(ino, name).err()); });
}

}  // namespace

void assign_xattr_operations(fuse_lowlevel_ops& ops) {
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
}

}  // namespace volfs
