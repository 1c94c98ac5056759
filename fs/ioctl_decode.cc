// decode_ioctl: the checks fuse_ioctl.cc used to make inline, in the same order, so that the
// errno a caller sees is unchanged.
#include "ioctl_decode.h"

#include <cerrno>
#include <cstring>

namespace volfs {
namespace {

// Copies the input struct of `cmd` into `out` (zeros for an output-only command), or returns
// false if the caller's buffers cannot hold a T.
template <class T>
bool decode(const void* in, size_t in_size, size_t out_size, unsigned cmd, T& out) {
  if (_IOC_SIZE(cmd) != sizeof(T)) return false;
  if ((_IOC_DIR(cmd) & _IOC_WRITE) && in_size < sizeof(T)) return false;
  if ((_IOC_DIR(cmd) & _IOC_READ) && out_size < sizeof(T)) return false;
  if (_IOC_DIR(cmd) & _IOC_WRITE) {
    std::memcpy(&out, in, sizeof(T));
  } else {
    out = T{};
  }
  return true;
}

bool is_per_file(unsigned cmd) {
  return cmd == VOLFS_IOC_MARK_VOLATILE || cmd == VOLFS_IOC_UNMARK_VOLATILE ||
         cmd == VOLFS_IOC_GET_STATUS || cmd == VOLFS_IOC_MARK_BATCH ||
         cmd == VOLFS_IOC_UNMARK_BATCH || cmd == VOLFS_IOC_SLOT_REGISTER ||
         cmd == VOLFS_IOC_SLOT_HOLDER || cmd == VOLFS_IOC_SLOT_UNREGISTER;
}

// Fills the argument of `cmd` in `r`; returns 0 or the errno to answer with.
int decode_into(unsigned cmd, bool on_open_file, const void* in, size_t in_size, size_t out_size,
                IoctlRequest& r) {
  if (is_stats(cmd)) return out_size >= _IOC_SIZE(cmd) ? 0 : EINVAL;
  if (cmd == VOLFS_IOC_PURGE) return decode(in, in_size, out_size, cmd, r.purge) ? 0 : EINVAL;
  if (_IOC_TYPE(cmd) != VOLFS_IOC_MAGIC || !is_per_file(cmd) || !on_open_file) return ENOTTY;
  if (cmd == VOLFS_IOC_GET_STATUS) {
    return decode(in, in_size, out_size, cmd, r.status) ? 0 : EINVAL;
  }
  if (cmd == VOLFS_IOC_SLOT_REGISTER) {
    volfs_slot_register& g = r.slot_register;
    if (!decode(in, in_size, out_size, cmd, g) || g.reserved[0] || g.reserved[1]) return EINVAL;
    return valid_mark_flags(g.flags) && !(g.flags & VOLFS_MARK_STRICT) ? 0 : EINVAL;
  }
  if (cmd == VOLFS_IOC_SLOT_HOLDER) {
    volfs_slot_holder h{};
    return decode(in, in_size, out_size, cmd, h) ? 0 : EINVAL;
  }
  if (cmd == VOLFS_IOC_SLOT_UNREGISTER) {
    volfs_slot_unregister& u = r.slot_unregister;
    if (!decode(in, in_size, out_size, cmd, u) || u.reserved32 || u.reserved[0] || u.reserved[1]) {
      return EINVAL;
    }
    return 0;
  }
  if (cmd == VOLFS_IOC_MARK_BATCH || cmd == VOLFS_IOC_UNMARK_BATCH) {
    volfs_range_batch& b = r.batch;
    if (!decode(in, in_size, out_size, cmd, b) || b.count == 0 || b.count > VOLFS_BATCH_MAX ||
        b.reserved[0] || b.reserved[1] || b.reserved[2]) {
      return EINVAL;
    }
    for (uint32_t k = 0; k < b.count; ++k) {
      const uint32_t flags = b.ranges[k].flags;
      if (cmd == VOLFS_IOC_UNMARK_BATCH ? flags != 0 : !valid_mark_flags(flags)) return EINVAL;
    }
    return 0;
  }
  if (!decode(in, in_size, out_size, cmd, r.range)) return EINVAL;
  if (cmd == VOLFS_IOC_UNMARK_VOLATILE && r.range.flags != 0) return EINVAL;
  if (cmd == VOLFS_IOC_MARK_VOLATILE && !valid_mark_flags(r.range.flags)) return EINVAL;
  return 0;
}

}  // namespace

bool valid_mark_flags(uint32_t flags) {
  if (flags & ~VOLFS_MARK_VALID_FLAGS) return false;
  return !(flags & VOLFS_MARK_PRIORITY_MASK) || (flags & VOLFS_MARK_HAS_PRIORITY);
}

MarkFlags mark_flags(uint32_t valid_flags) {
  MarkFlags m;
  if (valid_flags & VOLFS_MARK_HAS_PRIORITY) {
    m.prio =
        static_cast<uint8_t>((valid_flags & VOLFS_MARK_PRIORITY_MASK) >> VOLFS_MARK_PRIORITY_SHIFT);
  }
  m.strict = valid_flags & VOLFS_MARK_STRICT;
  return m;
}

bool is_stats(unsigned cmd) {
  return _IOC_TYPE(cmd) == VOLFS_IOC_MAGIC && _IOC_NR(cmd) == _IOC_NR(VOLFS_IOC_STATS) &&
         _IOC_DIR(cmd) == _IOC_READ && _IOC_SIZE(cmd) >= VOLFS_STATS_V1_SIZE;
}

IoctlRequest decode_ioctl(unsigned cmd, bool on_open_file, const void* in, size_t in_size,
                          size_t out_size) {
  IoctlRequest r;
  r.err = decode_into(cmd, on_open_file, in, in_size, out_size, r);
  if (r.err == 0) r.cmd = cmd;
  return r;
}

}  // namespace volfs
