// FUSE handlers for file data: open/create/release, read/write, fsync,
// fallocate, lseek. Passthrough opens hand the kernel the file's store; the
// data of cached opens moves between the kernel and the store through here.
#include <cerrno>
#include <cstring>

#include "daemon.h"

namespace volfs {
namespace {

void release(fuse_req_t req, OpenFile& file) {
  daemon_of(req).fs.release(file, [req](int id) { fuse_passthrough_close(req, id); });
}

void release_file(fuse_req_t req, uint64_t fh) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): FUSE's fh is our OpenFile's address
  release(req, *reinterpret_cast<OpenFile*>(fh));
  daemon_of(req).files.remove(fh);
}

void reply_opened(fuse_req_t req, fuse_file_info* fi, Result<std::unique_ptr<OpenFile>> f,
                  const fuse_entry_param* created) {
  if (!f.ok()) {
    fuse_reply_err(req, f.err());
    return;
  }
  Daemon& d = daemon_of(req);
  OpenFile& file = **f;
  if (file.passthrough) {
    // Reads, writes and mmap go straight to the store from now on.
    Result<int> id = d.fs.backing_id(file, [&](int fd) {
      int id = fuse_passthrough_open(req, fd);
      if (id <= 0) {
        fuse_log(FUSE_LOG_WARNING,
                 "volfs: the kernel refused a passthrough backing file (%s); "
                 "files opened from now on use the cached io mode\n",
                 std::strerror(errno));
      }
      return id;
    });
    if (!id.ok()) {
      release(req, file);
      fuse_reply_err(req, id.err());
      return;
    }
    fi->backing_id = *id;
  }
  // Cached opens: every change of the data passes through this kernel or is
  // announced by our invalidations, so its page cache stays valid across
  // opens. (The kernel refuses a passthrough open with any other flag.)
  fi->keep_cache = !file.passthrough;
  fi->fh = d.files.add(std::move(*f));
  int r = created ? fuse_reply_create(req, created, fi) : fuse_reply_open(req, fi);
  // The opener was interrupted (ENOENT), or the reply did not reach the
  // kernel: it will send no RELEASE for this open.
  if (r != 0) release_file(req, fi->fh);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, [&] {
    // With O_TRUNC (FUSE_CAP_ATOMIC_O_TRUNC) the truncation is the daemon's,
    // and under KILLPRIV_V2 so is the clearing of setuid/setgid it brings.
    reply_opened(req, fi, daemon_of(req).fs.open(ino, fi->flags, privilege_credentials_of(req)),
                 nullptr);
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  guarded(req, [&] {
    Daemon& d = daemon_of(req);
    Result<Entry> e = d.fs.create(parent, name, mode, caller_of(req));
    if (!e.ok()) {
      fuse_reply_err(req, e.err());
      return;
    }
    fuse_entry_param p{};
    p.ino = e->ino;
    p.attr = e->attr;
    p.attr_timeout = p.entry_timeout = d.timeout;
    reply_opened(req, fi, d.fs.open(e->ino, fi->flags & ~O_TRUNC), &p);
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  release_file(req, fi->fh);
  fuse_reply_err(req, 0);
}

// The data lives in memory already; dirty mmap pages reach us before FSYNC,
// which reports a write-back of them that failed (Filesystem::fsync).
void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info* fi) {
  guarded(req, [&] { fuse_reply_err(req, daemon_of(req).fs.fsync(file_of(fi)).err()); });
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  guarded(req, [&] {
    bool replied = false;
    Status s = daemon_of(req).fs.read(
        file_of(fi), static_cast<uint64_t>(off), size, [&](int fd, uint64_t pos, size_t len) {
          replied = true;
          if (len == 0) {
            fuse_reply_buf(req, nullptr, 0);
            return;
          }
          fuse_bufvec buf = FUSE_BUFVEC_INIT(len);
          buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
          buf.buf[0].fd = fd;
          buf.buf[0].pos = static_cast<off_t>(pos);
          // No FUSE_BUF_SPLICE_MOVE: the kernel must copy, never steal, the
          // store's pages.
          fuse_reply_data(req, &buf, static_cast<fuse_buf_copy_flags>(0));
        });
    if (!replied) fuse_reply_err(req, s.err() ? s.err() : EIO);
  });
}

void op_write(fuse_req_t req, fuse_ino_t, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  guarded(req, [&] {
    Result<size_t> n =
        daemon_of(req).fs.write(file_of(fi), buf, size, static_cast<uint64_t>(off), fi->writepage);
    if (!n.ok()) {
      fuse_reply_err(req, n.err());
      return;
    }
    fuse_reply_write(req, *n);
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t off, off_t len, fuse_file_info* fi) {
  guarded(req, [&] {
    if (off < 0 || len <= 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    fuse_reply_err(
        req,
        daemon_of(req)
            .fs.fallocate(file_of(fi), mode, static_cast<uint64_t>(off), static_cast<uint64_t>(len))
            .err());
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  guarded(req, [&] {
    if (off < 0) {
      fuse_reply_err(req, ENXIO);
      return;
    }
    Result<uint64_t> r = daemon_of(req).fs.lseek(file_of(fi), static_cast<uint64_t>(off), whence);
    if (!r.ok()) {
      fuse_reply_err(req, r.err());
      return;
    }
    fuse_reply_lseek(req, static_cast<off_t>(*r));
  });
}

}  // namespace

void assign_io_operations(fuse_lowlevel_ops& ops) {
  ops.open = op_open;
  ops.create = op_create;
  ops.release = op_release;
  // No flush handler: libfuse answers ENOSYS once and the kernel stops
  // sending FLUSH, saving a round trip per close(2). The kernel still writes
  // dirty mapped pages back on close before it looks at that answer.
  ops.fsync = op_fsync;
  ops.read = op_read;
  ops.write = op_write;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
}

}  // namespace volfs
