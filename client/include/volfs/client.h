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

#ifdef __cplusplus
}
#endif

#endif /* VOLFS_CLIENT_H_ */
