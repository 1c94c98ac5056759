/* volfs/client.h: the C client API, a thin errno-style layer over the ioctls
 * of volfs/volfs.h. Every function returns 0 on success and -1 with errno
 * set on failure; ENOTTY means "not a file on a volfs mount". */
#ifndef VOLFS_CLIENT_H_
#define VOLFS_CLIENT_H_

#include <stdint.h>
#include <volfs/volfs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks [offset, offset + length) volatile; flags are VOLFS_MARK_*.
 * ENOSPC: the file would hold more than 262144 runs of distinct page state
 * (docs/volatile-ranges.md); a batch fails whole. */
int volfs_mark(int fd, uint64_t offset, uint64_t length, uint32_t flags);
/* Unmarks the range; *purged is set to 1 if data in it was lost, else 0. */
int volfs_unmark(int fd, uint64_t offset, uint64_t length, int* purged);
/* Marks ranges[0..count) volatile in one call, 1 <= count <= VOLFS_BATCH_MAX:
 * all of them, or on an error none. */
int volfs_mark_batch(int fd, const struct volfs_range* ranges, uint32_t count);
/* Unmarks ranges[0..count) in one call, in order, 1 <= count <=
 * VOLFS_BATCH_MAX; ranges[k].result is set to VOLFS_PURGED or VOLFS_INTACT.
 * A bad range fails the call before any range is unmarked. */
int volfs_unmark_batch(int fd, struct volfs_range* ranges, uint32_t count);
/* Page counts of the range. */
int volfs_get_status(int fd, uint64_t offset, uint64_t length, struct volfs_status* out);
/* Global accounting of the mount fd is on (any file or directory fd). */
int volfs_get_stats(int fd, struct volfs_stats* out);
/* Purges up to `bytes` (VOLFS_PURGE_ALL: all); *purged gets the bytes purged. */
int volfs_purge(int fd, uint64_t bytes, uint64_t* purged);

/* Slots (volfs/volfs.h, docs/volatile-ranges.md "Slots"). The file must be
 * in passthrough io mode (EOPNOTSUPP otherwise). */

/* Registers [offset, offset + length) as a slot with its word at
 * word_offset, or attaches to that slot; *holder gets fd's pin bit and
 * *created whether the slot is new (then it is pinned by fd's bit: see
 * volfs_slot_init). EBUSY: the range or the word overlaps another slot or a
 * volatile range; EUSERS: VOLFS_SLOT_HOLDERS open files of the file hold
 * pin bits already. */
int volfs_slot_register(int fd, uint64_t offset, uint64_t length, uint64_t word_offset,
                        uint32_t flags, uint32_t* holder, int* created);
/* The same for `count` slots at once (see struct volfs_slot_register). */
int volfs_slot_register_many(int fd, uint64_t offset, uint64_t length, uint64_t word_offset,
                             uint32_t count, uint32_t flags, uint32_t* holder, int* created);
/* fd's pin bit (taken on first use; held until the open file is released). */
int volfs_slot_holder(int fd, uint32_t* holder);
/* The slot at word_offset stops being one; *purged as for volfs_unmark. */
int volfs_slot_unregister(int fd, uint64_t word_offset, int* purged);

/* One slot as one holder sees it. One struct per slot and holder, shared by
 * the holder's threads: it counts their pins, and the word carries the
 * holder's bit while that count is positive. The open file whose bit it is
 * must stay open while a pin is held (its release drops the pins). */
struct volfs_slot {
  uint64_t* word; /* &volfs_slot_word.word in a MAP_SHARED mapping of the file */
  uint64_t bit;   /* UINT64_C(1) << holder */
  uint32_t pins;  /* atomic: this holder's pins; bit 31 while the word is changing */
  uint32_t reserved;
};
/* `pinned`: the slot was just created through this holder (its bit is set),
 * which counts as one pin to unpin. */
void volfs_slot_init(struct volfs_slot* s, struct volfs_slot_word* word, uint32_t holder,
                     int pinned);
/* Pins the slot: VOLFS_INTACT, or VOLFS_PURGED when its data was purged
 * since it was last pinned (the range then reads as zeros and is pinned:
 * refill it). No system call unless a purge of the slot is running (then it
 * waits for that purge, microseconds). -1 with errno ESTALE: the word is no
 * slot (unregistered, or its page truncated or overwritten). */
int volfs_slot_pin(struct volfs_slot* s);
/* Drops one pin; the last one of the holder makes the data purgeable again.
 * -1 with errno EINVAL: the holder holds no pin. */
int volfs_slot_unpin(struct volfs_slot* s);

#ifdef __cplusplus
}
#endif

#endif /* VOLFS_CLIENT_H_ */
