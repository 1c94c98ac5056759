// Filesystem: the FUSE-free core of volfs. Inode table, directories, file data
// in per-file Stores, page state and volatile ranges, and the purge engine.
// The FUSE adapter decodes requests, calls these methods and replies; every
// method returns a Result/Status carrying an errno and never throws for I/O.
//
// Lock order (each lock is only taken while holding locks to its left):
//   ns_mu_ -> Inode::io_mu -> Inode::mu -> PurgeQueue / PurgeWorker mutexes.
// No lock is held while calling the CacheInvalidator (see docs/design.md).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "accounting.h"
#include "file_state.h"
#include "options.h"
#include "purge_queue.h"
#include "purge_worker.h"
#include "result.h"
#include "store.h"

namespace volfs {

inline constexpr uint64_t kRootIno = 1;

// Who is asking: the credentials of the calling process.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

// Seam for the kernel notification channel: drop the kernel's cached pages of
// a byte range of an inode (dirty ones are written back to us first).
class CacheInvalidator {
 public:
  virtual ~CacheInvalidator() = default;
  virtual void invalidate(uint64_t ino, uint64_t off, uint64_t len) = 0;
};

struct DirEntry {
  uint64_t ino = 0;
  uint64_t cookie = 0;  // readdir offset of the entry after this one
};

// Directory entries. Cookies grow monotonically, so a readdir that resumes at
// an offset neither repeats nor skips entries that stayed in place.
struct Directory {
  uint64_t parent = kRootIno;
  std::map<std::string, DirEntry, std::less<>> entries;
  std::map<uint64_t, std::string> by_cookie;
  uint64_t next_cookie = 3;  // 1 and 2 are "." and ".."
};

class Inode {
 public:
  Inode(uint64_t ino, mode_t mode) : ino(ino), type(mode & S_IFMT) {}

  const uint64_t ino;
  const mode_t type;

  // Shared while data moves between the store and the kernel (READ replies
  // are built under it); exclusive while the store's pages are taken away
  // (purge, truncate, punch), so no reply carries a page the purge freed.
  std::shared_mutex io_mu;
  // Guards the attributes, xattrs, the page state and the unmark waiters.
  std::mutex mu;
  mode_t mode = 0;  // GUARDED_BY(mu), type bits included
  uid_t uid = 0;
  gid_t gid = 0;
  nlink_t nlink = 0;
  dev_t rdev = 0;
  uint64_t size = 0;
  timespec atime{}, mtime{}, ctime{};
  std::map<std::string, std::string, std::less<>> xattrs;
  std::string symlink_target;                  // immutable after creation
  std::unique_ptr<Store> store;                // regular files
  std::unique_ptr<FileState> state;            // regular files
  std::vector<std::function<void()>> waiters;  // unmarks waiting for a purge to finish
  int settling = 0;  // purges between clearing PURGING and their last invalidation

  // GUARDED_BY(Filesystem::ns_mu_)
  Directory dir;         // directories
  uint64_t nlookup = 0;  // the kernel's references (lookup/forget protocol)

  bool is_dir() const { return type == S_IFDIR; }
  bool is_reg() const { return type == S_IFREG; }
};

// An open file: the inode and the access mode of the open (the kernel does
// not check it before fallocate or ioctl, so the daemon must).
struct OpenFile {
  std::shared_ptr<Inode> inode;
  int flags = 0;
  bool writable() const { return (flags & O_ACCMODE) != O_RDONLY; }
};

struct Entry {
  uint64_t ino = 0;
  struct stat attr {};
};

struct SetAttr {
  bool set_mode = false, set_uid = false, set_gid = false, set_size = false;
  bool set_atime = false, set_mtime = false, atime_now = false, mtime_now = false;
  bool set_ctime = false;
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  timespec atime{}, mtime{}, ctime{};
};

// A byte range of a volatile-range request, as the ABI gives it.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: to the end of the file
};

class Filesystem {
 public:
  Filesystem(const MountOptions& options, uint64_t page_size);
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // Starts the purge worker; `invalidator` must outlive stop(). `system`:
  // the system memory-pressure sources (see pressure.h), polled beside the
  // watermarks of the options.
  void start(CacheInvalidator* invalidator,
             std::vector<std::unique_ptr<PressureSource>> system = {});
  // Runs pending purge completions and stops the worker.
  void stop();

  // Namespace. Every Entry returned counts one kernel lookup reference.
  Result<Entry> lookup(uint64_t parent, std::string_view name);
  void forget(uint64_t ino, uint64_t nlookup);
  Result<struct stat> getattr(uint64_t ino);
  Result<struct stat> setattr(uint64_t ino, const SetAttr& a);
  Result<Entry> mknod(uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                      const Caller& c);
  Result<Entry> mkdir(uint64_t parent, std::string_view name, mode_t mode, const Caller& c);
  Result<Entry> symlink(std::string_view target, uint64_t parent, std::string_view name,
                        const Caller& c);
  Result<Entry> link(uint64_t ino, uint64_t parent, std::string_view name);
  Status unlink(uint64_t parent, std::string_view name);
  Status rmdir(uint64_t parent, std::string_view name);
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, unsigned flags);
  Result<std::string> readlink(uint64_t ino);
  // Calls add(name, ino, type, next_offset) for the entries after `offset`
  // until it returns false.
  using DirFiller =
      std::function<bool(std::string_view name, uint64_t ino, mode_t type, uint64_t next)>;
  Status readdir(uint64_t ino, uint64_t offset, const DirFiller& add);
  Status opendir(uint64_t ino);
  struct statvfs statfs() const;

  // Files.
  Result<std::unique_ptr<OpenFile>> open(uint64_t ino, int flags);
  Result<Entry> create(uint64_t parent, std::string_view name, mode_t mode, const Caller& c);
  // Calls reply(fd, off, len) with the store's bytes while the store lock is
  // held; len is clamped to the file size. Errors come back without a reply.
  using ReadReply = std::function<void(int fd, uint64_t off, size_t len)>;
  Status read(const OpenFile& f, uint64_t off, size_t size, const ReadReply& reply);
  // `writeback`: dirty pages from the kernel's cache (FUSE_WRITE_CACHE), as
  // opposed to a write(2) being made now.
  Result<size_t> write(const OpenFile& f, const char* buf, size_t size, uint64_t off,
                       bool writeback = false);
  Status fallocate(const OpenFile& f, int mode, uint64_t off, uint64_t len);
  Result<uint64_t> lseek(const OpenFile& f, uint64_t off, int whence);

  // Extended attributes (user.* only).
  Status setxattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  Result<std::string> getxattr(uint64_t ino, std::string_view name);
  Result<std::string> listxattr(uint64_t ino);
  Status removexattr(uint64_t ino, std::string_view name);

  // Volatile ranges. `done` may run on another thread, later (after a purge
  // that overlaps the range has finished), exactly once.
  using MarkDone = std::function<void(Status)>;
  using UnmarkDone = std::function<void(Result<bool> purged)>;
  using UnmarkBatchDone = std::function<void(Result<std::vector<bool>> purged)>;
  using PurgeDone = std::function<void(uint64_t bytes)>;
  struct MarkRequest {
    ByteRange range;
    uint32_t flags = 0;  // VOLFS_MARK_*
  };
  void mark(const OpenFile& f, ByteRange r, uint32_t flags, MarkDone done);
  void unmark(const OpenFile& f, ByteRange r, UnmarkDone done);
  // Batches: every range is checked before any is applied (one bad range:
  // its error, and nothing changed), then they are applied in order, as that
  // many single calls would be.
  void mark_batch(const OpenFile& f, const std::vector<MarkRequest>& ranges, MarkDone done);
  void unmark_batch(const OpenFile& f, const std::vector<ByteRange>& ranges, UnmarkBatchDone done);
  Result<RangeStatus> range_status(const OpenFile& f, ByteRange r);
  AccountingSnapshot stats() const { return acc_.snapshot(); }
  // What the pressure sources last saw (all zero before start()).
  PressureStatus pressure() const;
  // Purges up to max_bytes in purge order; done(bytes purged) after every
  // mapping sees the purged state.
  void purge(uint64_t max_bytes, PurgeDone done);

  uint64_t page_size() const { return page_size_; }
  const MountOptions& options() const { return options_; }
  uint64_t owner_uid() const { return options_.uid; }

 private:
  struct PurgeBatch {
    std::shared_ptr<Inode> inode;
    uint32_t purge_id = 0;
    std::vector<PageRange> ranges;
  };

  struct UnmarkJob {
    std::shared_ptr<Inode> inode;
    std::vector<PageRange> ranges;
    size_t next = 0;           // ranges before it are unmarked
    std::vector<bool> purged;  // one answer per range unmarked
    UnmarkBatchDone done;
  };
  void try_unmark(std::shared_ptr<UnmarkJob> job);

  std::shared_ptr<Inode> find(uint64_t ino) const;  // takes ns_mu_
  std::shared_ptr<Inode> find_locked(uint64_t ino) const;
  struct stat stat_of(Inode& i);  // takes i.mu
  Result<Entry> make_node(uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                          const Caller& c, std::string_view target);
  void add_entry(Inode& dir, std::string_view name, uint64_t ino);
  void remove_entry(Inode& dir, std::string_view name);
  void drop_link(const std::shared_ptr<Inode>& i);  // nlink--, may destroy
  void maybe_destroy(const std::shared_ptr<Inode>& i);
  void touch_dir(Inode& dir);

  Status truncate_locked(Inode& i, uint64_t size);  // io_mu exclusive + mu held
  Result<PageRange> volatile_range(const Inode& i, ByteRange r, bool for_mark) const;

  // Purge phase 1: under the inode's locks, take purgeable pages, punch them
  // out of the store and record them purged and PURGING.
  uint64_t purge_pages(uint64_t max_pages, std::vector<PurgeBatch>& out);
  uint64_t purge_entry(const PurgeEntry& e, uint64_t max_pages, std::vector<PurgeBatch>& out);
  // Purge phase 2: invalidate, clear PURGING, invalidate again, then run the
  // waiters. Runs on the purge worker, with no lock held across invalidation.
  void finish_purge(const std::vector<PurgeBatch>& batches);
  void post_finish(std::vector<PurgeBatch> batches, std::function<void()> then);
  bool purge_for_space(uint64_t pages);

  const MountOptions options_;
  const uint64_t page_size_;
  Accounting acc_;
  PurgeQueue queue_;
  std::atomic<uint64_t> next_seq_{1};       // mark order; relaxed: only uniqueness matters
  std::atomic<uint32_t> next_purge_id_{1};  // relaxed: only uniqueness matters

  // Guards the inode table, every Directory, nlookup and the link structure.
  mutable std::shared_mutex ns_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Inode>> inodes_;  // GUARDED_BY(ns_mu_)
  uint64_t next_ino_ = kRootIno + 1;                             // GUARDED_BY(ns_mu_)

  CacheInvalidator* invalidator_ = nullptr;
  std::unique_ptr<PurgeWorker> worker_;
};

}  // namespace volfs
