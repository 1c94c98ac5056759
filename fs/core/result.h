// Result<T>: a value or an errno, the core's way of failing. The FUSE adapter
// turns the errno into fuse_reply_err; nothing in the core throws for I/O.
#pragma once

#include <cassert>
#include <utility>

namespace volfs::core {

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)), err_(0) {}  // NOLINT: implicit by design
  static Result error(int err) {
    assert(err > 0);
    return Result(err, 0);
  }
  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  T& operator*() {
    assert(ok());
    return value_;
  }
  const T& operator*() const {
    assert(ok());
    return value_;
  }
  T* operator->() { return &**this; }
  const T* operator->() const { return &**this; }

 private:
  Result(int err, int) : value_(), err_(err) {}
  T value_;
  int err_;
};

// Status: success or an errno.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status error(int err) { return Status(err); }
  bool ok() const { return err_ == 0; }
  int err() const { return err_; }

 private:
  explicit Status(int err) : err_(err) {}
  int err_ = 0;
};

// Error helper for both: `return Err(ENOENT);`
struct Err {
  int err;
  template <class T>
  operator Result<T>() const {  // NOLINT: implicit by design
    return Result<T>::error(err);
  }
  operator Status() const { return Status::error(err); }  // NOLINT
};

}  // namespace volfs::core
