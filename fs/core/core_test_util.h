// Synchronous wrappers around the Filesystem's callback API, for the core's
// unit tests: each waits for its answer, which comes from the purge worker
// when a purge is involved.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <thread>

#include "filesystem.h"

namespace volfs::core::test {

inline constexpr MarkOptions kStrict{.prio = kDefaultPriority, .strict = true};
inline constexpr MarkOptions priority(uint8_t p) { return MarkOptions{.prio = p, .strict = false}; }

template <class T>
T wait_for(const std::shared_ptr<std::atomic<T>>& v, T pending) {
  while (v->load() == pending) std::this_thread::yield();
  return v->load();
}

inline Status mark(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len,
                   MarkOptions o = {}) {
  auto out = std::make_shared<std::atomic<int>>(-1);
  fs.mark(f, ByteRange{off, len}, o, [out](Status s) { *out = s.err(); });
  int err = wait_for(out, -1);
  return err ? Status::error(err) : Status();
}

// Returns 1 purged, 0 intact, -errno on error.
inline int unmark(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len) {
  auto out = std::make_shared<std::atomic<int>>(-EINPROGRESS);
  fs.unmark(f, ByteRange{off, len}, [out](Result<bool> r) { *out = r.ok() ? int{*r} : -r.err(); });
  return wait_for(out, -EINPROGRESS);
}

// GET_STATUS, waiting for the answer (it waits for a settling purge).
inline Result<RangeStatus> status(Filesystem& fs, const OpenFile& f, uint64_t off, uint64_t len) {
  auto out = std::make_shared<std::atomic<bool>>(false);
  auto st = std::make_shared<Result<RangeStatus>>(Err{EINPROGRESS});
  fs.range_status(f, ByteRange{off, len}, [out, st](Result<RangeStatus> r) {
    *st = r;
    *out = true;
  });
  wait_for(out, false);
  return *st;
}

inline uint64_t purge(Filesystem& fs, uint64_t bytes) {
  auto out = std::make_shared<std::atomic<uint64_t>>(UINT64_MAX);
  fs.purge(bytes, [out](uint64_t b) { *out = b; });
  return wait_for(out, UINT64_MAX);
}

}  // namespace volfs::core::test
