/* The C client API: see volfs/client.h. */
#include <volfs/client.h>

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

int volfs_mark(int fd, uint64_t offset, uint64_t length, uint32_t flags) {
  struct volfs_range r = {offset, length, flags, 0};
  return ioctl(fd, VOLFS_IOC_MARK_VOLATILE, &r) < 0 ? -1 : 0;
}

int volfs_unmark(int fd, uint64_t offset, uint64_t length, int* purged) {
  struct volfs_range r = {offset, length, 0, 0};
  if (ioctl(fd, VOLFS_IOC_UNMARK_VOLATILE, &r) < 0) return -1;
  if (purged) *purged = r.result == VOLFS_PURGED;
  return 0;
}

/* Copies ranges into a batch for `cmd`; NULL with errno EINVAL for a bad count. */
static int send_batch(int fd, unsigned long cmd, struct volfs_range_batch* b,
                      const struct volfs_range* ranges, uint32_t count) {
  if (count == 0 || count > VOLFS_BATCH_MAX) {
    errno = EINVAL;
    return -1;
  }
  memset(b, 0, sizeof(*b));
  b->count = count;
  memcpy(b->ranges, ranges, count * sizeof(*ranges));
  return ioctl(fd, cmd, b) < 0 ? -1 : 0;
}

int volfs_mark_batch(int fd, const struct volfs_range* ranges, uint32_t count) {
  struct volfs_range_batch b;
  return send_batch(fd, VOLFS_IOC_MARK_BATCH, &b, ranges, count);
}

int volfs_unmark_batch(int fd, struct volfs_range* ranges, uint32_t count) {
  struct volfs_range_batch b;
  if (send_batch(fd, VOLFS_IOC_UNMARK_BATCH, &b, ranges, count) < 0) return -1;
  for (uint32_t k = 0; k < count; ++k) ranges[k].result = b.ranges[k].result;
  return 0;
}

int volfs_get_status(int fd, uint64_t offset, uint64_t length, struct volfs_status* out) {
  memset(out, 0, sizeof(*out));
  out->offset = offset;
  out->length = length;
  return ioctl(fd, VOLFS_IOC_GET_STATUS, out) < 0 ? -1 : 0;
}

int volfs_get_stats(int fd, struct volfs_stats* out) {
  memset(out, 0, sizeof(*out));
  if (ioctl(fd, VOLFS_IOC_STATS, out) == 0) return 0;
  /* A daemon older than version 2 knows only the version 1 number. */
  if (errno != ENOTTY && errno != EINVAL) return -1;
  memset(out, 0, sizeof(*out));
  return ioctl(fd, VOLFS_IOC_STATS_V1, out) < 0 ? -1 : 0;
}

int volfs_purge(int fd, uint64_t bytes, uint64_t* purged) {
  struct volfs_purge p;
  memset(&p, 0, sizeof(p));
  p.bytes = bytes;
  if (ioctl(fd, VOLFS_IOC_PURGE, &p) < 0) return -1;
  if (purged) *purged = p.purged;
  return 0;
}
