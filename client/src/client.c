/* The C client API: see volfs/client.h. */
#include <volfs/client.h>

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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

int volfs_register_slot(int fd, uint64_t offset, uint64_t length, uint64_t word_offset,
                        uint32_t flags, uint32_t* holder, int* created) {
  return volfs_register_slots(fd, offset, length, word_offset, 1, flags, holder, created);
}

int volfs_register_slots(int fd, uint64_t offset, uint64_t length, uint64_t word_offset,
                         uint32_t count, uint32_t flags, uint32_t* holder, int* created) {
  struct volfs_slot_register r;
  memset(&r, 0, sizeof(r));
  r.offset = offset;
  r.length = length;
  r.word_offset = word_offset;
  r.count = count;
  r.flags = flags;
  if (ioctl(fd, VOLFS_IOC_SLOT_REGISTER, &r) < 0) return -1;
  if (holder) *holder = r.holder;
  if (created) *created = r.result == VOLFS_SLOT_CREATED;
  return 0;
}

int volfs_get_slot_holder(int fd, uint32_t* holder) {
  struct volfs_slot_holder h;
  memset(&h, 0, sizeof(h));
  if (ioctl(fd, VOLFS_IOC_SLOT_HOLDER, &h) < 0) return -1;
  *holder = h.holder;
  return 0;
}

int volfs_unregister_slot(int fd, uint64_t word_offset, int* purged) {
  struct volfs_slot_unregister u;
  memset(&u, 0, sizeof(u));
  u.word_offset = word_offset;
  if (ioctl(fd, VOLFS_IOC_SLOT_UNREGISTER, &u) < 0) return -1;
  if (purged) *purged = u.result == VOLFS_PURGED;
  return 0;
}

/* volfs_slot.pins: the holder's pin count, or kPinsBusy while one thread
 * changes the word for the holder (its first pin or its last unpin); the
 * other threads wait for that, so the word's bit and the count agree
 * whenever the count is not busy. */
static const uint32_t kPinsBusy = UINT32_C(1) << 31;

void volfs_slot_init(struct volfs_slot* s, struct volfs_slot_word* word, uint32_t holder,
                     int pinned) {
  s->word = &word->word;
  s->bit = UINT64_C(1) << (holder % VOLFS_SLOT_HOLDERS);
  s->pins = pinned ? 1u : 0u;
  s->reserved = 0;
}

/* Waits (at most a millisecond, then the caller looks again) while the
 * daemon purges the slot: it wakes the futex on the word's high half when
 * the word turns PURGED. The futex is shared: both sides map the same page. */
static void wait_for_purge(uint64_t* word, uint64_t seen) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint32_t* high = (uint32_t*)word + 1;
#else
  uint32_t* high = (uint32_t*)word;
#endif
  struct timespec t = {0, 1000000};
  syscall(SYS_futex, high, FUTEX_WAIT, (uint32_t)(seen >> 32), &t, NULL, 0);
}

/* The holder's first pin: set its bit. */
static int word_pin(uint64_t* word, uint64_t bit) {
  uint64_t w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
  for (;;) {
    uint64_t want;
    int result;
    switch (VOLFS_SLOT_STATE(w)) {
      case VOLFS_SLOT_LIVE:
        want = w | bit;
        result = VOLFS_INTACT;
        break;
      case VOLFS_SLOT_PURGED:
        want = VOLFS_SLOT_WORD(VOLFS_SLOT_LIVE) | bit;
        result = VOLFS_PURGED;
        break;
      case VOLFS_SLOT_PURGING:
        wait_for_purge(word, w);
        w = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        continue;
      default:
        errno = ESTALE;
        return -1;
    }
    /* Acquire: the data read after an INTACT pin is what was there before
     * the unpin that made it purgeable (release), never a punched page. */
    if (__atomic_compare_exchange_n(word, &w, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      return result;
    }
  }
}

/* The holder's last unpin: clear its bit. A bit the daemon cleared already
 * (the open file was released, the slot unregistered) leaves nothing to do. */
static void word_unpin(uint64_t* word, uint64_t bit) {
  uint64_t w = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    if (VOLFS_SLOT_STATE(w) != VOLFS_SLOT_LIVE || !(w & bit)) return;
    if ((w & VOLFS_SLOT_PIN_BITS) == bit) {
      /* The last pin of all: when, for the purge order. Advisory, so it may
       * land even if the swap below finds another pin and retries. */
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
      __atomic_store_n(word + 1, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec,
                       __ATOMIC_RELAXED);
    }
    /* Release: every store into the data made while pinned is visible to
     * whoever takes the word next, the daemon's purge included. */
    if (__atomic_compare_exchange_n(word, &w, w & ~bit, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
      return;
    }
  }
}

/* The holder's pin count, once no other thread is changing the word for
 * the holder (that takes a compare-and-swap, or a purge's microseconds). */
static uint32_t settled_pins(struct volfs_slot* s) {
  unsigned spins = 0;
  uint32_t p;
  while ((p = __atomic_load_n(&s->pins, __ATOMIC_ACQUIRE)) & kPinsBusy) {
    if (++spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      sched_yield();
    }
  }
  return p;
}

int volfs_slot_pin(struct volfs_slot* s) {
  for (;;) {
    uint32_t p = settled_pins(s);
    if (p != 0) {
      /* The holder's bit is set already: one more pin of an intact slot. */
      if (p + 1 == kPinsBusy) {
        errno = EOVERFLOW;
        return -1;
      }
      if (__atomic_compare_exchange_n(&s->pins, &p, p + 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)) {
        return VOLFS_INTACT;
      }
    } else if (__atomic_compare_exchange_n(&s->pins, &p, kPinsBusy, 0, __ATOMIC_ACQUIRE,
                                           __ATOMIC_ACQUIRE)) {
      break;
    }
  }
  int result = word_pin(s->word, s->bit);
  __atomic_store_n(&s->pins, result < 0 ? 0u : 1u, __ATOMIC_RELEASE);
  return result;
}

int volfs_slot_unpin(struct volfs_slot* s) {
  for (;;) {
    uint32_t p = settled_pins(s);
    if (p == 0) {
      errno = EINVAL;
      return -1;
    }
    if (p > 1) {
      if (__atomic_compare_exchange_n(&s->pins, &p, p - 1, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE)) {
        return 0;
      }
    } else if (__atomic_compare_exchange_n(&s->pins, &p, kPinsBusy, 0, __ATOMIC_ACQ_REL,
                                           __ATOMIC_ACQUIRE)) {
      break;
    }
  }
  word_unpin(s->word, s->bit);
  __atomic_store_n(&s->pins, 0u, __ATOMIC_RELEASE);
  return 0;
}
