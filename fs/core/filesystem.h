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
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "accounting.h"
#include "file_state.h"
#include "options.h"
#include "privileges.h"
#include "purge_queue.h"
#include "purge_worker.h"
#include "result.h"
#include "rw_mutex.h"
#include "slot_table.h"
#include "store.h"

namespace volfs::core {

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
  // Drop the kernel's cached attributes of an inode: for a change that no
  // reply carries (setuid/setgid cleared by an OPEN with O_TRUNC).
  virtual void invalidate_attributes(uint64_t /*ino*/) {}
};

// Seam for the request loop (fs/request_loop.h): requests the daemon has
// read but not served. The kernel queues requests first in, first out; a
// RELEASE it sent before the request being served may sit, read, in a
// worker that has not run yet.
class ReadBarrier {
 public:
  virtual ~ReadBarrier() = default;
  // Returns once every RELEASE or FORGET read before the caller's own
  // request has been served, or at `until`.
  virtual void wait(std::chrono::steady_clock::time_point until) = 0;
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

enum class IoMode : uint8_t { kUndecided, kPassthrough, kCached };

class Inode {
 public:
  Inode(uint64_t ino, mode_t mode) : ino(ino), type(mode & S_IFMT) {}

  const uint64_t ino;
  const mode_t type;

  // Shared while data moves between the store and the kernel (READ replies
  // are built under it); exclusive while the store's pages are taken away
  // (purge, truncate, punch), so no reply carries a page the purge freed.
  // Writer-preferring (RwMutex): a file read in a loop must not starve them.
  RwMutex io_mu;
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
  uint64_t xattr_bytes = 0;                    // charged against size= (filesystem_xattr.cc)
  std::string symlink_target;                  // immutable after creation
  std::unique_ptr<Store> store;                // regular files
  std::unique_ptr<FileState> state;            // regular files
  std::vector<std::function<void()>> waiters;  // unmarks waiting for a purge to finish
  int settling = 0;  // purges between clearing PURGING and their last invalidation
  // Write-back errors (cached io mode): pages whose dirty kernel copy the
  // daemon could not store (ENOSPC at a full mount), and the errno. FSYNC
  // reports wb_err while any such page is left; a later successful write
  // of a page, or a truncate or punch that removes it, clears it
  // (docs/design.md, "Write-back errors").
  int wb_err = 0;
  std::vector<PageRange> wb_failed;  // disjoint, sorted, at most kMaxWritebackRanges
  // Io mode (docs/design.md, "Io modes"), fixed by the first open for the
  // inode's life: the kernel refuses to mix passthrough and cached opens,
  // and a passthrough mapping outlives its open file (the kernel maps the
  // store itself and releases the FUSE file at close), so no moment is
  // known after which nothing stores into the store behind the daemon.
  IoMode io_mode = IoMode::kUndecided;
  bool prefer_cached = false;  // user.volfs.iomode=cached
  int passthrough_opens = 0;
  int backing_id = 0;  // the kernel's id of the store while passthrough_opens > 0
  // Open files of the inode, in either io mode. A regular file's data is
  // dropped (data_dropped; an open then says ENOENT) once nothing can reach
  // it (Filesystem::drop_if_unreachable; docs/design.md, "When a deleted
  // file's memory comes back").
  int opens = 0;
  bool data_dropped = false;
  bool passthrough() const { return io_mode == IoMode::kPassthrough; }
  // Slots of the file (docs/volatile-ranges.md, "Slots"), from the first
  // slot ioctl on; guarded by mu, and their data and words change only
  // under io_mu exclusive too (register, unregister, truncate, punch, purge).
  std::unique_ptr<SlotTable> slots;

  // GUARDED_BY(Filesystem::ns_mu_)
  Directory dir;         // directories
  uint64_t nlookup = 0;  // the kernel's references (lookup/forget protocol)

  bool is_dir() const { return type == S_IFDIR; }
  bool is_reg() const { return type == S_IFREG; }

  // Clears setuid/setgid as a change `why` by `who()` should, asking who()
  // only if one of them is set; returns the bits cleared. mu held.
  mode_t kill_privileges(PrivilegeKill why, const std::function<Credentials()>& who) {
    if (why == PrivilegeKill::kNone || !who || !(mode & (S_ISUID | S_ISGID))) return 0;
    mode_t dropped = privileges_dropped(mode, gid, why, who());
    mode &= ~dropped;
    return dropped;
  }
};

// An open file: the inode and the access mode of the open (the kernel does
// not check it before fallocate or ioctl, so the daemon must).
struct OpenFile {
  std::shared_ptr<Inode> inode;
  int flags = 0;
  bool passthrough = false;  // the kernel passes reads, writes and mmap to the store
  bool decided = false;      // the first open of the inode: it chose the io mode
  bool slot_holder = false;  // it has a pin bit in the inode's SlotTable
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
  // Clear setuid/setgid as this change by `credentials()` should (read only
  // when the file has one of them); see privileges.h.
  PrivilegeKill kill = PrivilegeKill::kNone;
  std::function<Credentials()> credentials;
};

// A byte range of a volatile-range request, as the ABI gives it.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: to the end of the file
};

inline constexpr uint8_t kDefaultPriority = 4;  // VOLFS_PRIORITY_DEFAULT
inline constexpr uint8_t kMaxPriority = 7;

// How a range is marked: the adapter decodes the ABI's flag bits into this.
struct MarkOptions {
  uint8_t prio = kDefaultPriority;  // 0..kMaxPriority, lower is purged first
  bool strict = false;              // purged pages fail (EIO, SIGBUS) instead of reading zeros
};

// VOLFS_IOC_SLOT_REGISTER, decoded.
struct SlotRequest {
  ByteRange data;            // of the first slot; length > 0
  uint64_t word_offset = 0;  // of the first slot's word
  uint32_t count = 1;        // slot k: data shifted by k lengths, word by k words
  uint8_t prio = kDefaultPriority;
};
struct SlotRegistration {
  uint32_t holder = 0;
  bool created = false;  // else attached
};

class Filesystem {
 public:
  Filesystem(const MountOptions& options, uint64_t page_size, Backing backing = Backing::memfds());
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
  // Set while the request loop runs (nullptr: none); must outlive its use.
  void set_read_barrier(ReadBarrier* b) { read_barrier_.store(b); }

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

  // Files. The first open of a regular file fixes its io mode: passthrough
  // if enabled and the file does not prefer the cached mode.
  // With O_TRUNC and `truncating` given, the truncation clears setuid/setgid
  // as a write by truncating() would (privileges.h).
  Result<std::unique_ptr<OpenFile>> open(uint64_t ino, int flags,
                                         const std::function<Credentials()>& truncating = {});
  // A passthrough open needs the kernel's id of the store: register(fd)
  // makes one (> 0) or fails (<= 0). On failure the first open of a file
  // falls back to the cached mode (f.passthrough turns false, and 0 comes
  // back) and passthrough is off for later files; any other open fails.
  Result<int> backing_id(OpenFile& f, const std::function<int(int fd)>& register_fd);
  // The kernel released f. If f was the inode's last passthrough open,
  // unregister(id) is called with the kernel's id of the store. If the file
  // has no name and no open file left, its data is freed before this
  // returns.
  void release(OpenFile& f, const std::function<void(int id)>& unregister);
  // Whether opens may use FUSE passthrough (the kernel agreed at INIT and the
  // store lives on a private tmpfs that enforces size=).
  void set_passthrough(bool on) { passthrough_.store(on, std::memory_order_relaxed); }
  bool passthrough() const { return passthrough_.load(std::memory_order_relaxed); }
  const Backing& backing() const { return backing_; }
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
  // FSYNC: the data is in memory already; reports a write-back error that
  // is still standing (see Inode::wb_failed).
  Status fsync(const OpenFile& f);

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
    MarkOptions options;
  };
  void mark(const OpenFile& f, ByteRange r, MarkOptions o, MarkDone done);
  void unmark(const OpenFile& f, ByteRange r, UnmarkDone done);
  // Batches: every range is checked before any is applied (one bad range:
  // its error, and nothing changed), then they are applied in order, as that
  // many single calls would be.
  void mark_batch(const OpenFile& f, const std::vector<MarkRequest>& ranges, MarkDone done);
  void unmark_batch(const OpenFile& f, const std::vector<ByteRange>& ranges, UnmarkBatchDone done);
  // `done` may run later, on the purge worker: while a purge of the range is
  // finishing, the kernel may still serve pages that the status would call
  // purged, so the answer waits for it, as an unmark does.
  using StatusDone = std::function<void(Result<RangeStatus>)>;
  void range_status(const OpenFile& f, ByteRange r, StatusDone done);
  // Slots (docs/volatile-ranges.md, "Slots"); files in passthrough only.
  Result<SlotRegistration> register_slots(OpenFile& f, const SlotRequest& r);
  Result<uint32_t> slot_holder(OpenFile& f);
  // Returns whether the slot's data was purged (as UNMARK would).
  Result<bool> unregister_slot(OpenFile& f, uint64_t word_offset);

  // Exact at the moment it is taken: files in passthrough are synced with
  // their stores (and slot words) first.
  AccountingSnapshot stats();
  // What the pressure sources last saw (all zero before start()).
  PressureStatus pressure() const;
  // Purges up to max_bytes in purge order; done(bytes purged) after every
  // mapping sees the purged state.
  void purge(uint64_t max_bytes, PurgeDone done);

  uint64_t page_size() const { return page_size_; }
  const MountOptions& options() const { return options_; }

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
  void try_status(std::shared_ptr<Inode> i, PageRange r, StatusDone done);
  void finish_mark(const std::vector<PurgeEntry>& entries, const MarkDone& done);  // purge_on_mark
  // Drops the kernel's copies of pages that just became strict purged (see
  // mark_batch), with the inode settling meanwhile, then answers the mark.
  // Allocated before the marks commit (see PurgeFinish).
  struct MarkInvalidation {
    std::shared_ptr<Inode> inode;
    std::vector<PageRange> ranges;
    std::vector<PurgeEntry> entries;
    int err = 0;
    MarkDone done;
  };
  void run_invalidation(MarkInvalidation& m);

  std::shared_ptr<Inode> find(uint64_t ino) const;  // takes ns_mu_
  std::shared_ptr<Inode> find_locked(uint64_t ino) const;
  struct stat stat_of(Inode& i);  // takes i.mu
  Result<Entry> make_node(uint64_t parent, std::string_view name, mode_t mode, dev_t rdev,
                          const Caller& c, std::string_view target);
  Result<Entry> make_node_charged(Inode& dir, uint64_t parent, std::string_view name, mode_t mode,
                                  dev_t rdev, const Caller& c, std::string_view target);
  void add_entry(Inode& dir, std::string_view name, uint64_t ino);

  void remove_entry(Inode& dir, std::string_view name);
  bool drop_link(const std::shared_ptr<Inode>& i);      // nlink--; true: destroyed
  bool maybe_destroy(const std::shared_ptr<Inode>& i);  // true: destroyed
  // What may have been the last way to a file's data.
  enum class LastLink { kName, kClosed, kForgotten };
  // Frees a regular file's data once nothing can reach it: it has neither a
  // name nor an open file, and either the kernel forgot it or it has no
  // passthrough mapping (mapped_elsewhere). The store's pages go first,
  // then the counts, so whoever finds the room in the stats or the charge
  // finds it in the private tmpfs too. Takes io_mu and mu; no lock may be
  // held (freeing gigabytes is slow).
  void drop_if_unreachable(Inode& i, LastLink why) noexcept;
  static bool mapped_elsewhere(const Store& store, bool just_closed);
  // Declares, for as long as it lives, a call that may free a file's data:
  // a write or an open that finds the mount full waits for it
  // (wait_for_drops).
  class DropInProgress {
   public:
    explicit DropInProgress(Filesystem& f);
    ~DropInProgress();
    DropInProgress(const DropInProgress&) = delete;
    DropInProgress& operator=(const DropInProgress&) = delete;

   private:
    Filesystem& fs_;
    uint64_t ticket_;
  };
  // Calls drop_if_unreachable(*inode, why) when it goes out of scope. A
  // request that may take a file's last name (or its last lookup) declares
  // one before it takes ns_mu_, so the data is freed after the namespace
  // lock is released and before the request answers.
  struct OrphanCheck {
    Filesystem& fs;
    std::shared_ptr<Inode> inode;
    LastLink why = LastLink::kName;
    explicit OrphanCheck(Filesystem& f) : fs(f) {}
    ~OrphanCheck() {
      if (inode) fs.drop_if_unreachable(*inode, why);
    }
    OrphanCheck(const OrphanCheck&) = delete;
    OrphanCheck& operator=(const OrphanCheck&) = delete;
  };
  void touch_dir(Inode& dir);
  void inherit_iomode(const Inode& dir, Inode& child);  // dir.mu held
  // The size= pages that xattr_bytes of xattrs take.
  uint64_t xattr_pages(uint64_t bytes) const { return (bytes + page_size_ - 1) / page_size_; }

  Status truncate_locked(Inode& i, uint64_t size);  // io_mu exclusive + mu held
  Result<size_t> write_pages(Inode& i, const char* buf, size_t size, uint64_t off, bool writeback);
  // Write-back errors (Inode::wb_failed); mu held.
  static void forget_wb_failed(Inode& i, PageRange r);
  void note_wb_failed(Inode& i, PageRange r, int err);
  // Passthrough writes and stores reach the store without the daemon: for an
  // inode in passthrough, bring its size and times, and the resident bits
  // of r (none if r is empty) in line with the store. mu held.
  void sync_with_store(Inode& i, PageRange r);
  void sync_passthrough_files();  // every file in passthrough, whole
  // Slots: bring the file's FileState in line with its slot words (pinned:
  // non-volatile; unpinned: marked volatile, in the order of their unpins;
  // a word turned NONE: the slot is gone). mu held.
  void sync_slots(Inode& i);
  void sync_slot_files();                                 // every file with slots
  void set_slot_pinned(Inode& i, SlotTable::Slot& s);     // mu held
  void make_slot_volatile(Inode& i, SlotTable::Slot& s);  // mu held
  // Purge of a slot's queue entry: take the word, punch, record PURGED.
  // io_mu exclusive and mu held.
  uint64_t purge_slot(Inode& i, SlotTable::Slot& s);
  // Before a truncate to `size`, or a punch of [off, off + len), of a file
  // with slots: slots whose word or (truncate) data goes are unregistered;
  // unpinned slots whose data a punch takes are taken for purge, returned,
  // for end_purge after the punch. io_mu exclusive and mu held.
  void slots_before_truncate(Inode& i, uint64_t size);
  std::vector<SlotTable::Slot*> slots_before_punch(Inode& i, uint64_t off, uint64_t len);
  Result<PageRange> volatile_range(const Inode& i, ByteRange r, bool for_mark) const;

  // Purge phase 1: under the inode's locks, take purgeable pages, punch them
  // out of the store and record them purged and PURGING.
  uint64_t purge_pages(uint64_t max_pages, std::vector<PurgeBatch>& out);
  uint64_t purge_entry(const PurgeEntry& e, uint64_t max_pages, std::vector<PurgeBatch>& out);
  // Purge phase 2: invalidate, clear PURGING, invalidate again, then run the
  // waiters. Runs on the purge worker, with no lock held across invalidation.
  // Never fails: PURGING is cleared in place (FileState::finish_purge).
  void finish_purge(const std::vector<PurgeBatch>& batches);
  // A purge's phase 2, allocated before its phase 1 commits anything, so
  // that no allocation failure can leave pages PURGING for good: phase 1
  // fills in batches and pages, then post_finish() hands it to the worker
  // (or runs it here, without a worker); then(pages) runs after phase 2.
  struct PurgeFinish {
    std::vector<PurgeBatch> batches;
    uint64_t pages = 0;
    std::function<void(uint64_t pages)> then;
  };
  struct PendingFinish {
    std::shared_ptr<PurgeFinish> state;
    PurgeWorker::Job job;
  };
  PendingFinish prepare_finish(std::function<void(uint64_t pages)> then);
  void post_finish(PendingFinish&& f);
  // Makes room for `pages` more: purges, else waits for files being dropped
  // right now (their room is coming). False: no room came.
  bool purge_for_space(uint64_t pages);
  bool room_for(uint64_t pages) const;  // the charge of `pages` would fit now
  // Passes the read barrier, then waits until every drop or release under
  // way then is over (at most kDropWait in all); true if there was one.
  bool wait_for_drops();
  // While a file deleted while open exists, waits (up to kReleaseGrace) for
  // a release or drop to finish; true if one did.
  bool wait_for_a_last_close();
  // For the pressure sources: with a private tmpfs, its own count of used
  // pages bounds the charge from below (passthrough writes are found late).
  AccountingSnapshot pressure_snapshot() const;
  // The private tmpfs holds more than 7/8 of size= (false with memfds).
  bool nearly_full() const;
  // size= of the private tmpfs: the mount's size plus its volatile resident
  // data, so that a passthrough write fails with ENOSPC only when nothing
  // volatile is left to purge; the purge worker takes back what stands
  // above size= (docs/design.md, "size= in passthrough").
  // Returns whether the store holds more than size= now.
  bool fit_backing();

  const MountOptions options_;
  const uint64_t page_size_;
  Backing backing_;
  std::atomic<bool> passthrough_{false};  // relaxed: set once at INIT, before any open
  Accounting acc_;
  PurgeQueue queue_;
  std::atomic<uint64_t> next_seq_{1};       // mark order; relaxed: only uniqueness matters
  std::atomic<uint32_t> next_purge_id_{1};  // relaxed: only uniqueness matters

  // Guards the inode table, every Directory, nlookup and the link structure.
  mutable std::shared_mutex ns_mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Inode>> inodes_;  // GUARDED_BY(ns_mu_)
  uint64_t next_ino_ = kRootIno + 1;                             // GUARDED_BY(ns_mu_)

  // DropInProgress: drops (and releases) under way, by ticket in the order
  // they began, for wait_for_drops. A leaf lock.
  std::mutex drops_mu_;
  std::condition_variable drops_cv_;
  std::set<uint64_t> drops_under_way_;               // GUARDED_BY(drops_mu_)
  uint64_t drops_started_ = 0, drops_finished_ = 0;  // GUARDED_BY(drops_mu_)
  std::atomic<ReadBarrier*> read_barrier_{nullptr};
  // Regular files without a name that are still open: their last close
  // will give their room back.
  std::atomic<uint64_t> deleted_open_{0};

  // Files that have a SlotTable, for sync_slot_files. A leaf lock.
  std::mutex slot_files_mu_;
  std::vector<std::weak_ptr<Inode>> slot_files_;  // GUARDED_BY(slot_files_mu_)

  CacheInvalidator* invalidator_ = nullptr;
  std::unique_ptr<PurgeWorker> worker_;
};

}  // namespace volfs::core
