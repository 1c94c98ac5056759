/* volfs.h: the one definition of the volfs ioctl ABI (C and C++).
 *
 * Included by the daemon, the client library, volctl and the tests. Every
 * struct is fixed-size with explicit padding and no pointers, so that its
 * layout is identical for 32- and 64-bit callers (FUSE passes only such
 * "restricted" ioctls, see the kernel's fuse_do_ioctl). Growth: new fields go
 * into the reserved words, which callers must zero; a layout that cannot
 * grow that way gets a new command number.
 */
#ifndef VOLFS_VOLFS_H_
#define VOLFS_VOLFS_H_

#include <linux/ioctl.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VOLFS_IOC_MAGIC 'V'

/* volfs_range.flags for VOLFS_IOC_MARK_VOLATILE. */
/* A purged page raises SIGBUS through mmap and EIO through read/write until it
 * is unmarked (default: a purged page reads as zeros). */
#define VOLFS_MARK_STRICT 0x1u
/* Purge priority p in 0..7, lower is purged first; without this the range
 * gets VOLFS_PRIORITY_DEFAULT. */
#define VOLFS_MARK_PRIORITY_SHIFT 8
#define VOLFS_MARK_PRIORITY_MASK (0x7u << VOLFS_MARK_PRIORITY_SHIFT)
#define VOLFS_MARK_HAS_PRIORITY 0x800u
#define VOLFS_MARK_PRIORITY(p) \
  (VOLFS_MARK_HAS_PRIORITY | (((uint32_t)(p)&0x7u) << VOLFS_MARK_PRIORITY_SHIFT))
#define VOLFS_PRIORITY_DEFAULT 4u
#define VOLFS_MARK_VALID_FLAGS \
  (VOLFS_MARK_STRICT | VOLFS_MARK_PRIORITY_MASK | VOLFS_MARK_HAS_PRIORITY)

/* volfs_range.result after VOLFS_IOC_UNMARK_VOLATILE. */
#define VOLFS_INTACT 0u
#define VOLFS_PURGED 1u

/* A byte range of a file, fallocate-style. offset and length are multiples of
 * the page size; length 0 means "to the end of the file". */
struct volfs_range {
  uint64_t offset;
  uint64_t length;
  uint32_t flags;  /* in: VOLFS_MARK_* for MARK, 0 for UNMARK */
  uint32_t result; /* out: VOLFS_INTACT or VOLFS_PURGED for UNMARK */
};

/* Page counts of a range, for VOLFS_IOC_GET_STATUS. Every page of the range
 * is either non-volatile or volatile; purged pages are volatile pages whose
 * data was discarded since they were marked; resident counts pages whose data
 * is held in memory, whatever their state. */
struct volfs_status {
  uint64_t offset; /* in */
  uint64_t length; /* in; 0 means to the end of the file */
  uint64_t nonvolatile_pages;
  uint64_t volatile_pages;
  uint64_t purged_pages;
  uint64_t resident_pages;
  uint64_t strict_pages; /* volatile pages marked VOLFS_MARK_STRICT */
  uint64_t reserved[3];
};

#define VOLFS_STATS_VERSION 1u

/* Global accounting of a mount, for VOLFS_IOC_STATS. Pages are counted once
 * however many processes map them. */
struct volfs_stats {
  uint32_t size;    /* out: sizeof(struct volfs_stats) as the daemon knows it */
  uint32_t version; /* out: VOLFS_STATS_VERSION */
  uint64_t page_size;
  uint64_t size_limit_bytes;
  uint64_t files; /* regular files, including unlinked ones still open */
  uint64_t resident_pages;
  uint64_t volatile_pages;
  uint64_t volatile_resident_pages;
  uint64_t purged_pages; /* volatile pages purged and not yet unmarked */
  uint64_t pages_purged_total;
  uint64_t purge_events_total;
  uint64_t false_purged_total; /* reserved: always 0 (no false PURGED) */
  uint64_t unmark_purged_total;
  uint64_t unmark_intact_total;
  uint64_t reserved[8];
};

/* For VOLFS_IOC_PURGE: purge up to `bytes` of volatile data in purge order
 * (VOLFS_PURGE_ALL for all of it); `purged` says how many bytes were. */
#define VOLFS_PURGE_ALL UINT64_MAX
struct volfs_purge {
  uint64_t bytes;  /* in */
  uint64_t purged; /* out */
  uint64_t reserved[2];
};

/* For VOLFS_IOC_MARK_BATCH and VOLFS_IOC_UNMARK_BATCH: up to VOLFS_BATCH_MAX
 * ranges of one file in one call, one FUSE round trip instead of `count`.
 * Each range is as for the single call (flags in, result out). Every range
 * is checked before any is applied, so one bad range fails the call with
 * EINVAL and changes nothing; then they are applied in order, as that many
 * single calls would be. */
#define VOLFS_BATCH_MAX 64u
struct volfs_range_batch {
  uint32_t count;       /* in: 1..VOLFS_BATCH_MAX */
  uint32_t reserved[3]; /* zero */
  struct volfs_range ranges[VOLFS_BATCH_MAX];
};

#define VOLFS_IOC_MARK_VOLATILE _IOWR(VOLFS_IOC_MAGIC, 1, struct volfs_range)
#define VOLFS_IOC_UNMARK_VOLATILE _IOWR(VOLFS_IOC_MAGIC, 2, struct volfs_range)
#define VOLFS_IOC_GET_STATUS _IOWR(VOLFS_IOC_MAGIC, 3, struct volfs_status)
#define VOLFS_IOC_STATS _IOR(VOLFS_IOC_MAGIC, 4, struct volfs_stats)
#define VOLFS_IOC_PURGE _IOWR(VOLFS_IOC_MAGIC, 5, struct volfs_purge)
#define VOLFS_IOC_MARK_BATCH _IOWR(VOLFS_IOC_MAGIC, 6, struct volfs_range_batch)
#define VOLFS_IOC_UNMARK_BATCH _IOWR(VOLFS_IOC_MAGIC, 7, struct volfs_range_batch)

/* The layout is the ABI: the same on every architecture. */
#ifdef __cplusplus
static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
static_assert(sizeof(struct volfs_stats) == 168, "volfs_stats layout");
static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
#else
_Static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
_Static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
_Static_assert(sizeof(struct volfs_stats) == 168, "volfs_stats layout");
_Static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
_Static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* VOLFS_VOLFS_H_ */
