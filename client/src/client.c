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

int volfs_get_status(int fd, uint64_t offset, uint64_t length, struct volfs_status* out) {
  memset(out, 0, sizeof(*out));
  out->offset = offset;
  out->length = length;
  return ioctl(fd, VOLFS_IOC_GET_STATUS, out) < 0 ? -1 : 0;
}

int volfs_get_stats(int fd, struct volfs_stats* out) {
  memset(out, 0, sizeof(*out));
  return ioctl(fd, VOLFS_IOC_STATS, out) < 0 ? -1 : 0;
}

int volfs_purge(int fd, uint64_t bytes, uint64_t* purged) {
  struct volfs_purge p;
  memset(&p, 0, sizeof(p));
  p.bytes = bytes;
  if (ioctl(fd, VOLFS_IOC_PURGE, &p) < 0) return -1;
  if (purged) *purged = p.purged;
  return 0;
}
