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

/* Purge sources: index into volfs_stats.sources[]. Every purge is counted
 * under the trigger that asked for it. */
#define VOLFS_SOURCE_SIZE_LIMIT 0u /* a write that needed room under size= */
#define VOLFS_SOURCE_WATERMARK 1u  /* -o purge_high=/purge_low= */
#define VOLFS_SOURCE_IOCTL 2u      /* VOLFS_IOC_PURGE */
#define VOLFS_SOURCE_ON_MARK 3u    /* -o purge_on_mark */
#define VOLFS_SOURCE_MEMAVAIL 4u   /* MemAvailable below -o mem_min= */
#define VOLFS_SOURCE_PSI 5u        /* a PSI trigger on /proc/pressure/memory */
#define VOLFS_SOURCE_CGROUP 6u     /* the daemon's memory cgroup near its limit */
#define VOLFS_SOURCES 8u           /* slots; the last one is spare (zero) */
#define VOLFS_SOURCE_BIT(i) (1u << (i))

struct volfs_source_stats {
  uint64_t signals;      /* times the source asked for a purge */
  uint64_t purges;       /* of those, the ones that purged at least a page */
  uint64_t purged_bytes; /* bytes purged for it */
};

/* Version 2 grew the struct from 168 to 360 bytes: the system pressure
 * figures took version 1's reserved words, the per-source counters follow.
 * The command number carries the size, so VOLFS_IOC_STATS changed with it;
 * the daemon also answers VOLFS_IOC_STATS_V1 (the old number) with exactly
 * the version 1 reply, and any larger size with as much as it knows. `size`
 * and `version` say what was filled in; the client library falls back to
 * VOLFS_IOC_STATS_V1 against a daemon that predates version 2. */
#define VOLFS_STATS_VERSION 2u
#define VOLFS_STATS_V1_SIZE 168u

/* Global accounting of a mount, for VOLFS_IOC_STATS. Pages are counted once
 * however many processes map them. */
struct volfs_stats {
  uint32_t size;    /* out: bytes filled in (sizeof as the daemon knows it, or less) */
  uint32_t version; /* out: VOLFS_STATS_VERSION of that layout */
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
  /* Version 2 (zero in a version 1 reply): what the pressure sources last
   * saw; 0 where a source is off. */
  uint64_t mem_available_bytes; /* MemAvailable at the last look */
  uint64_t mem_min_bytes;       /* the floor kept (-o mem_min=) */
  uint64_t cgroup_limit_bytes;  /* the tightest memory cgroup limit over the daemon */
  uint64_t cgroup_used_bytes;   /* its usage less inactive file cache */
  uint64_t cgroup_min_bytes;    /* the headroom kept below that limit */
  uint64_t psi_step_bytes;      /* what the next PSI stall will purge */
  uint32_t sources_active;      /* VOLFS_SOURCE_BIT(i) for each source that is on */
  uint32_t reserved32;
  uint64_t reserved;
  struct volfs_source_stats sources[VOLFS_SOURCES];
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
/* The version 1 number (a 168-byte struct volfs_stats), still answered. */
#define VOLFS_IOC_STATS_V1 _IOC(_IOC_READ, VOLFS_IOC_MAGIC, 4, VOLFS_STATS_V1_SIZE)
#define VOLFS_IOC_PURGE _IOWR(VOLFS_IOC_MAGIC, 5, struct volfs_purge)
#define VOLFS_IOC_MARK_BATCH _IOWR(VOLFS_IOC_MAGIC, 6, struct volfs_range_batch)
#define VOLFS_IOC_UNMARK_BATCH _IOWR(VOLFS_IOC_MAGIC, 7, struct volfs_range_batch)

/* The layout is the ABI: the same on every architecture. */
#ifdef __cplusplus
static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
static_assert(sizeof(struct volfs_source_stats) == 24, "volfs_source_stats layout");
static_assert(sizeof(struct volfs_stats) == 360, "volfs_stats layout");
static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
#else
_Static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
_Static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
_Static_assert(sizeof(struct volfs_source_stats) == 24, "volfs_source_stats layout");
_Static_assert(sizeof(struct volfs_stats) == 360, "volfs_stats layout");
_Static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
_Static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* VOLFS_VOLFS_H_ */
