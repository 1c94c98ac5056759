/* consumer.c: a C program built against the installed volfs package. It needs
 * no mount: on a file that is not on volfs, every call returns -1 with errno
 * ENOTTY. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <volfs/client.h>

static int expect_enotty(const char* what, int ret) {
  if (ret == -1 && errno == ENOTTY) return 0;
  fprintf(stderr, "consumer_c: %s returned %d, errno %d; expected -1, ENOTTY\n", what, ret, errno);
  return 1;
}

int main(int argc, char** argv) {
  struct volfs_stats stats;
  struct volfs_status status;
  int purged = 0, failures = 0, fd;
  uint64_t bytes = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: consumer_c FILE-NOT-ON-VOLFS\n");
    return 2;
  }
  fd = open(argv[1], O_RDWR);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  failures += expect_enotty("volfs_mark", volfs_mark(fd, 0, 0, VOLFS_MARK_PRIORITY(2)));
  failures += expect_enotty("volfs_unmark", volfs_unmark(fd, 0, 0, &purged));
  failures += expect_enotty("volfs_get_status", volfs_get_status(fd, 0, 0, &status));
  failures += expect_enotty("volfs_get_stats", volfs_get_stats(fd, &stats));
  failures += expect_enotty("volfs_purge", volfs_purge(fd, VOLFS_PURGE_ALL, &bytes));
  close(fd);
  if (failures) return 1;
  printf("consumer_c: ok\n");
  return 0;
}
