// RwMutex: a shared mutex that prefers writers, for Inode::io_mu. With the
// reader-preferring std::shared_mutex of glibc, a file that always has a READ
// in flight never lets a purge or a truncate in; here a waiting writer stops
// new readers until it has had its turn. Meets the SharedMutex requirements,
// so std::shared_lock and std::unique_lock work with it; built on pthread's
// rwlock, which ThreadSanitizer understands. Not recursive: a thread holding
// it shared must not take it shared again (a waiting writer would deadlock it).
#pragma once

#include <pthread.h>

#include <cassert>
#include <system_error>

namespace volfs::core {

class RwMutex {
 public:
  RwMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int r = pthread_rwlock_init(&lock_, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (r != 0) throw std::system_error(r, std::generic_category(), "pthread_rwlock_init");
  }
  ~RwMutex() { pthread_rwlock_destroy(&lock_); }
  RwMutex(const RwMutex&) = delete;
  RwMutex& operator=(const RwMutex&) = delete;

  // Errors here (EDEADLK, EAGAIN) are bugs in the caller: assert loudly.
  void lock() { check(pthread_rwlock_wrlock(&lock_)); }
  bool try_lock() { return pthread_rwlock_trywrlock(&lock_) == 0; }
  void unlock() { check(pthread_rwlock_unlock(&lock_)); }
  void lock_shared() { check(pthread_rwlock_rdlock(&lock_)); }
  bool try_lock_shared() { return pthread_rwlock_tryrdlock(&lock_) == 0; }
  void unlock_shared() { check(pthread_rwlock_unlock(&lock_)); }

 private:
  static void check([[maybe_unused]] int r) { assert(r == 0); }
  pthread_rwlock_t lock_;
};

}  // namespace volfs::core
