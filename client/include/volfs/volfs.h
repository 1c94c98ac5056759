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
  /* Slots whose data range overlaps the range (zero from a daemon without
   * slots): all of them, those pinned now, those whose data was purged and
   * not pinned since. */
  uint64_t slots;
  uint64_t pinned_slots;
  uint64_t purged_slots;
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
  uint64_t requests; /* FUSE requests the daemon has served since it started (0: not counted) */
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

/* Slots (docs/volatile-ranges.md, "Slots"): pin and unpin without a system
 * call. A slot is a page-aligned data range of a file plus a lock word, a
 * struct volfs_slot_word at a 16-byte aligned offset of the same file, which
 * the client maps MAP_SHARED and the daemon maps from the store (the file
 * must be in passthrough, so both see the same page). Every open file of the
 * slot's file that takes part is a *holder* with one pin bit, 0..61; a
 * holder pins by setting its bit with a compare-and-swap and unpins by
 * clearing it. A word without pin bits is purgeable: the daemon swaps it
 * LIVE -> PURGING with a compare-and-swap before it punches the data, and
 * stores PURGED after, so a pin either wins (the data stays) or sees the
 * purge. When the kernel releases a holder's open file (its last close, or
 * its process's death) the daemon clears its bit in every word of the file.
 *
 * word = state << VOLFS_SLOT_STATE_SHIFT | pin bits. The client library
 * (volfs/client.h: volfs_slot_pin/unpin) implements the protocol. */
#define VOLFS_SLOT_HOLDERS 62u
#define VOLFS_SLOT_STATE_SHIFT 62
#define VOLFS_SLOT_PIN_BITS ((UINT64_C(1) << VOLFS_SLOT_STATE_SHIFT) - 1)
#define VOLFS_SLOT_STATE(w) ((uint32_t)((uint64_t)(w) >> VOLFS_SLOT_STATE_SHIFT))
#define VOLFS_SLOT_NONE 0u /* not a slot: never registered, unregistered, or overwritten */
#define VOLFS_SLOT_LIVE 1u /* data intact; pinned while a pin bit is set, else purgeable */
#define VOLFS_SLOT_PURGING                                                                 \
  2u                         /* the daemon is punching the data; a pin waits (futex on the \
                              * word's high 32 bits, woken when it turns PURGED) */
#define VOLFS_SLOT_PURGED 3u /* data lost; the next pin makes it LIVE and learns PURGED */
#define VOLFS_SLOT_WORD(state) ((uint64_t)(state) << VOLFS_SLOT_STATE_SHIFT)

struct volfs_slot_word {
  uint64_t word;        /* atomic; see above */
  uint64_t unpinned_ns; /* CLOCK_MONOTONIC_COARSE of the unpin that cleared the last pin bit:
                         * the purge order among slots (advisory) */
};

/* VOLFS_IOC_SLOT_REGISTER: makes [offset, offset + length) a slot with its
 * word at word_offset, or attaches to the slot already there. Creating one
 * sets the word LIVE, pinned by this open file; attaching leaves it alone.
 * The data range must lie inside the file and hold no volatile page; the word
 * must lie inside the file, outside every slot's data and every volatile
 * range, and is never purged. `count` > 1 registers that many slots in one
 * call, slot k at offset + k * length with its word at word_offset + 16 * k:
 * all are created, or all existed with this geometry and are attached
 * (anything else: EBUSY, and nothing changes). */
#define VOLFS_SLOT_CREATED 0u  /* result: a new slot, pinned by the caller's bit */
#define VOLFS_SLOT_ATTACHED 1u /* result: the slot existed with this geometry */
struct volfs_slot_register {
  uint64_t offset;      /* in: page aligned */
  uint64_t length;      /* in: a positive multiple of the page size */
  uint64_t word_offset; /* in: 16-byte aligned */
  uint32_t flags;       /* in: 0 or VOLFS_MARK_PRIORITY(p) */
  uint32_t holder;      /* out: this open file's pin bit */
  uint32_t result;      /* out: VOLFS_SLOT_CREATED or VOLFS_SLOT_ATTACHED */
  uint32_t count;       /* in: slots, 0 or 1 for one, at most VOLFS_SLOT_REGISTER_MAX */
  uint64_t reserved[2]; /* zero */
};
#define VOLFS_SLOT_REGISTER_MAX 65536u

/* VOLFS_IOC_SLOT_HOLDER: this open file's pin bit, taken on first use. */
struct volfs_slot_holder {
  uint32_t holder;      /* out */
  uint32_t reserved32;  /* zero */
  uint64_t reserved[3]; /* zero */
};

/* VOLFS_IOC_SLOT_UNREGISTER: the slot whose word is at word_offset stops
 * being one (its word turns VOLFS_SLOT_NONE) and its data range becomes
 * plain non-volatile data, as after UNMARK, with the same answer. EBUSY
 * while another open file pins it. */
struct volfs_slot_unregister {
  uint64_t word_offset; /* in */
  uint32_t result;      /* out: VOLFS_INTACT or VOLFS_PURGED */
  uint32_t reserved32;  /* zero */
  uint64_t reserved[2]; /* zero */
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
#define VOLFS_IOC_SLOT_REGISTER _IOWR(VOLFS_IOC_MAGIC, 8, struct volfs_slot_register)
#define VOLFS_IOC_SLOT_HOLDER _IOR(VOLFS_IOC_MAGIC, 9, struct volfs_slot_holder)
#define VOLFS_IOC_SLOT_UNREGISTER _IOWR(VOLFS_IOC_MAGIC, 10, struct volfs_slot_unregister)

/* The layout is the ABI: the same on every architecture. */
#ifdef __cplusplus
static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
static_assert(sizeof(struct volfs_source_stats) == 24, "volfs_source_stats layout");
static_assert(sizeof(struct volfs_stats) == 360, "volfs_stats layout");
static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
static_assert(sizeof(struct volfs_slot_word) == 16, "volfs_slot_word layout");
static_assert(sizeof(struct volfs_slot_register) == 56, "volfs_slot_register layout");
static_assert(sizeof(struct volfs_slot_holder) == 32, "volfs_slot_holder layout");
static_assert(sizeof(struct volfs_slot_unregister) == 32, "volfs_slot_unregister layout");
#else
_Static_assert(sizeof(struct volfs_range) == 24, "volfs_range layout");
_Static_assert(sizeof(struct volfs_status) == 80, "volfs_status layout");
_Static_assert(sizeof(struct volfs_source_stats) == 24, "volfs_source_stats layout");
_Static_assert(sizeof(struct volfs_stats) == 360, "volfs_stats layout");
_Static_assert(sizeof(struct volfs_purge) == 32, "volfs_purge layout");
_Static_assert(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch layout");
_Static_assert(sizeof(struct volfs_slot_word) == 16, "volfs_slot_word layout");
_Static_assert(sizeof(struct volfs_slot_register) == 56, "volfs_slot_register layout");
_Static_assert(sizeof(struct volfs_slot_holder) == 32, "volfs_slot_holder layout");
_Static_assert(sizeof(struct volfs_slot_unregister) == 32, "volfs_slot_unregister layout");
#endif

#ifdef __cplusplus
}
#endif

#endif /* VOLFS_VOLFS_H_ */
