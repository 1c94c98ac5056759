// counted_operations.h: counts every FUSE request the daemon serves, in one
// place. counted_operations() turns the handler table into one whose every
// entry bumps Daemon::requests and then calls the real handler, kept in
// Daemon::handlers. Invariant: every handler the table holds is counted.
#pragma once

#include <type_traits>

#include "daemon.h"

namespace volfs {
namespace counted_detail {

inline Daemon& daemon_from(fuse_req_t req) { return daemon_of(req); }
// init and destroy get the session's userdata instead of a request.
inline Daemon& daemon_from(void* userdata) { return *static_cast<Daemon*>(userdata); }

template <auto Member, class Handler>
struct Counted;

// Handler = void (*)(First, Args...), First being fuse_req_t or void*.
template <auto Member, class First, class... Args>
struct Counted<Member, void (*)(First, Args...)> {
  static void call(First first, Args... args) {
    Daemon& d = daemon_from(first);
    d.count_request();
    (d.handlers.*Member)(first, args...);
  }
};

template <auto Member>
void count(Daemon& d, fuse_lowlevel_ops& ops) {
  using Handler = std::remove_reference_t<decltype(ops.*Member)>;
  if (d.handlers.*Member) ops.*Member = &Counted<Member, Handler>::call;
}

}  // namespace counted_detail

// Keeps `real` in d.handlers (read-only from here on: the session's threads
// read it without a lock) and returns the table to give fuse_session_new.
inline fuse_lowlevel_ops counted_operations(Daemon& d, const fuse_lowlevel_ops& real) {
  using counted_detail::count;
  using O = fuse_lowlevel_ops;
  // Every member of libfuse's table is listed: if this fires, libfuse grew
  // an operation; list it below, or its requests go uncounted.
  static_assert(sizeof(O) == 45 * sizeof(void (*)()), "fuse_lowlevel_ops changed: update the list");
  d.handlers = real;
  fuse_lowlevel_ops ops{};
  count<&O::init>(d, ops);
  count<&O::destroy>(d, ops);
  count<&O::lookup>(d, ops);
  count<&O::forget>(d, ops);
  count<&O::getattr>(d, ops);
  count<&O::setattr>(d, ops);
  count<&O::readlink>(d, ops);
  count<&O::mknod>(d, ops);
  count<&O::mkdir>(d, ops);
  count<&O::unlink>(d, ops);
  count<&O::rmdir>(d, ops);
  count<&O::symlink>(d, ops);
  count<&O::rename>(d, ops);
  count<&O::link>(d, ops);
  count<&O::open>(d, ops);
  count<&O::read>(d, ops);
  count<&O::write>(d, ops);
  count<&O::flush>(d, ops);
  count<&O::release>(d, ops);
  count<&O::fsync>(d, ops);
  count<&O::opendir>(d, ops);
  count<&O::readdir>(d, ops);
  count<&O::releasedir>(d, ops);
  count<&O::fsyncdir>(d, ops);
  count<&O::statfs>(d, ops);
  count<&O::setxattr>(d, ops);
  count<&O::getxattr>(d, ops);
  count<&O::listxattr>(d, ops);
  count<&O::removexattr>(d, ops);
  count<&O::access>(d, ops);
  count<&O::create>(d, ops);
  count<&O::getlk>(d, ops);
  count<&O::setlk>(d, ops);
  count<&O::bmap>(d, ops);
  count<&O::ioctl>(d, ops);
  count<&O::poll>(d, ops);
  count<&O::write_buf>(d, ops);
  count<&O::retrieve_reply>(d, ops);
  count<&O::forget_multi>(d, ops);
  count<&O::flock>(d, ops);
  count<&O::fallocate>(d, ops);
  count<&O::readdirplus>(d, ops);
  count<&O::copy_file_range>(d, ops);
  count<&O::lseek>(d, ops);
  count<&O::tmpfile>(d, ops);
  return ops;
}

}  // namespace volfs
