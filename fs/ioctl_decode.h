// Decoding of a volfs ioctl (client/include/volfs/volfs.h) from the command number and the raw
// buffers FUSE hands over, before any rights check or core call. No FUSE and no core here, so
// it is unit-tested and fuzzed alone. Invariant: a request decoded without error names a known
// command, carries exactly the caller's input struct (or zeros for an output-only one) and, for
// a batch, a count in 1..VOLFS_BATCH_MAX, so `ranges[0..count)` is always in bounds.
#pragma once

#include <volfs/volfs.h>

#include <cstddef>

namespace volfs {

struct IoctlRequest {
  int err = 0;            // non-zero: answer with this errno (ENOTTY, EINVAL) and do nothing else
  unsigned cmd = 0;       // when err == 0: the VOLFS_IOC_* command; its argument is one of:
                          // VOLFS_IOC_STATS (any size, is_stats): output only, no argument
  volfs_purge purge{};    // VOLFS_IOC_PURGE
  volfs_status status{};  // VOLFS_IOC_GET_STATUS
  volfs_range range{};    // VOLFS_IOC_MARK_VOLATILE, VOLFS_IOC_UNMARK_VOLATILE
  volfs_range_batch batch{};                // VOLFS_IOC_MARK_BATCH, VOLFS_IOC_UNMARK_BATCH
  volfs_slot_register slot_register{};      // VOLFS_IOC_SLOT_REGISTER
  volfs_slot_unregister slot_unregister{};  // VOLFS_IOC_SLOT_UNREGISTER
                                            // VOLFS_IOC_SLOT_HOLDER: output only
};

// `on_open_file`: the ioctl came on a regular file opened by open(2), which the per-file
// commands need (STATS and PURGE work on any file of the mount). `in` holds `in_size` bytes;
// `out_size` is the room the caller gave for the answer. Errors, first match wins:
//   STATS (is_stats), PURGE with buffers too small        EINVAL
//   not a volfs command, or a per-file one elsewhere       ENOTTY
//   buffers too small; a batch count out of 1..VOLFS_BATCH_MAX or reserved words set
//   (batches, SLOT_REGISTER, SLOT_UNREGISTER);
//   UNMARK (single or batch) with flags                    EINVAL
//   MARK (single or batch) with flags that are not VOLFS_MARK_VALID_FLAGS, or priority bits
//   without VOLFS_MARK_HAS_PRIORITY; SLOT_REGISTER with flags other than a priority
//                                                          EINVAL
// The core never sees the flag bits: mark_options() turns valid ones into what they mean.
// STATS of any size from version 1's up (the size is part of the command number):
// VOLFS_IOC_STATS_V1 of old clients, VOLFS_IOC_STATS, and larger ones of clients newer than this
// daemon, which get what it knows.
bool is_stats(unsigned cmd);

// What valid VOLFS_MARK_* flags ask for.
struct MarkFlags {
  uint8_t prio = VOLFS_PRIORITY_DEFAULT;  // 0..7, lower is purged first
  bool strict = false;                    // VOLFS_MARK_STRICT
};
bool valid_mark_flags(uint32_t flags);
MarkFlags mark_flags(uint32_t valid_flags);

IoctlRequest decode_ioctl(unsigned cmd, bool on_open_file, const void* in, size_t in_size,
                          size_t out_size);

}  // namespace volfs
