// shared_cache.cc: SharedCache over a CacheIndex and one volfs file per
// value. The pin protocol: a value's file is volatile only while its entry is
// live and no pin lease is held on it; the first pin unmarks it and the last
// release marks it again, both under the index lock, so a reader never reads
// a value that may be purged. Values are immutable once published.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <volfs/file.h>
#include <volfs/shared_cache.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cache_index.h"
#include "checksum.h"
#include "fault_point.h"
#include "process_identity.h"
#include "shared_cache_testing.h"

namespace volfs {

struct ValueView::Pin {
  std::shared_ptr<cache_detail::CacheImpl> cache;
  std::shared_ptr<File> file;
  Mapping mapping;
  uint32_t lease;
  uint64_t serial;
  pid_t pid;
  uint64_t value_id;
  uint64_t size;
};

namespace cache_detail {
namespace {

constexpr size_t kMaxNameSize = 200;
constexpr int kGetAttempts = 8;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "volfs cache: " + what);
}

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

std::string value_file_name(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

// The value id a file name in the values directory stands for, or 0.
uint64_t parse_value_file_name(const char* name) {
  if (std::strlen(name) != 16) return 0;
  uint64_t id = 0;
  auto [end, ec] = std::from_chars(name, name + 16, id, 16);
  return ec == std::errc() && end == name + 16 ? id : 0;
}

void check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameSize || name == "." || name == ".." ||
      name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    throw_errno(EINVAL, "bad cache name \"" + std::string(name) + "\"");
  }
}

void check_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeySize) {
    throw_errno(EINVAL, "key of " + std::to_string(key.size()) + " bytes (must be 1.." +
                            std::to_string(kMaxKeySize) + ")");
  }
}

uint64_t key_hash_of(std::string_view key) { return checksum64(key.data(), key.size()); }

struct LocalCounters {
  // Relaxed: statistics, read without ordering against anything else.
  std::atomic<uint64_t> hits{0}, misses{0}, purged_misses{0}, corrupt_misses{0}, puts{0}, erases{0},
      evictions{0};
};

}  // namespace

class CacheImpl : public std::enable_shared_from_this<CacheImpl> {
 public:
  CacheImpl(const std::filesystem::path& dir, std::string_view name,
            const SharedCacheOptions& options);

  void put(std::string_view key, std::span<const std::byte> value);
  std::optional<ValueView> get(std::string_view key);
  bool erase(std::string_view key);
  SharedCacheStats stats();
  SharedCacheStats local_stats() const;
  size_t reclaim_dead_leases();
  void release(ValueView::Pin& pin) noexcept;

  CacheIndex& index() { return *index_; }
  std::chrono::milliseconds lock_timeout() const { return options_.lock_timeout; }
  std::filesystem::path value_path(uint64_t id) const { return values_dir_ / value_file_name(id); }
  const std::filesystem::path& index_path() const { return index_->path(); }
  const std::filesystem::path& values_dir() const { return values_dir_; }

 private:
  Range value_range(uint64_t size) const {
    return Range{0, (size + page_size_ - 1) / page_size_ * page_size_};
  }
  // Runs the periodic duties of a fresh lock holder.
  void after_lock(const IndexLock& lock);
  size_t reap_locked();
  void collect_garbage_locked();
  void remove_stale_temporaries();
  // Marks the value of live entry e volatile (its last pin is gone).
  void mark_released_locked(uint32_t e);
  void unlink_values(const std::vector<uint64_t>& ids);

  std::shared_ptr<File> write_value_file(uint64_t id, std::span<const std::byte> value);
  std::shared_ptr<File> open_value_file(uint64_t id);
  // The per-process cache of open value files: value ids are never reused,
  // so a cached file is always the right one, even if unlinked since.
  std::shared_ptr<File> cached_file(uint64_t id);
  void remember_file(uint64_t id, std::shared_ptr<File> file);
  void forget_file(uint64_t id);

  SharedCacheOptions options_;
  std::filesystem::path values_dir_;
  std::string index_name_;
  uint64_t page_size_;
  std::unique_ptr<CacheIndex> index_;
  LocalCounters local_;

  // Guards files_. A leaf: never held while taking the index lock or doing
  // I/O.
  std::mutex files_mu_;
  std::vector<std::pair<uint64_t, std::shared_ptr<File>>> files_;  // LRU order, newest last
};

CacheImpl::CacheImpl(const std::filesystem::path& dir, std::string_view name,
                     const SharedCacheOptions& options)
    : options_(options), page_size_(File::page_size()) {
  check_name(name);
  if (options.priority < 0 || options.priority > 7) throw_errno(EINVAL, "priority not in 0..7");
  // Refuses (ENOTTY) a directory that is not on volfs: values would never be
  // purged, and volatile ranges would fail on every put.
  (void)volfs::stats(dir);
  values_dir_ = dir / (std::string(name) + ".values");
  index_name_ = std::string(name) + ".index";
  mode_t dir_mode = options.mode | ((options.mode & 0444) >> 2) | 0700;
  if (::mkdir(values_dir_.c_str(), dir_mode) < 0 && errno != EEXIST) {
    throw_errno(errno, "create " + values_dir_.string());
  }
  IndexGeometry g{options.max_entries, options.max_leases};
  index_ = CacheIndex::open(dir / index_name_, g, options.create, options.mode);
  remove_stale_temporaries();
  IndexLock lock(*index_, options_.lock_timeout);
  reap_locked();
  collect_garbage_locked();
}

void CacheImpl::after_lock(const IndexLock& lock) {
  IndexHeader& h = index_->header();
  uint64_t now = monotonic_ns();
  uint64_t interval = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.reap_interval).count());
  if (lock.recovered() || now - h.last_reap_ns >= interval) reap_locked();
  // A crash inside a critical section may have left value files that no
  // entry names (a replaced value whose unlink never came).
  if (lock.recovered()) collect_garbage_locked();
}

size_t CacheImpl::reap_locked() {
  index_->header().last_reap_ns = monotonic_ns();
  CacheIndex::Reclaimed r = index_->reclaim_leases(process_alive);
  for (uint32_t e : r.unpinned) mark_released_locked(e);
  unlink_values(r.abandoned_values);
  return r.leases;
}

void CacheImpl::mark_released_locked(uint32_t e) {
  const Entry& en = index_->entry(e);
  if (en.size == 0) return;
  try {
    std::shared_ptr<File> f = cached_file(en.value_id);
    if (!f) {
      f = open_value_file(en.value_id);
      remember_file(en.value_id, f);
    }
    f->mark_volatile(value_range(en.size), MarkOptions{false, options_.priority});
  } catch (const std::system_error&) {
    // The value stays non-volatile: it is never purged, nothing is lost.
  }
}

void CacheImpl::unlink_values(const std::vector<uint64_t>& ids) {
  for (uint64_t id : ids) {
    if (id == 0) continue;
    forget_file(id);
    // ENOENT: another process (garbage collection) got there first.
    (void)::unlink(value_path(id).c_str());
  }
}

// Value files that no live entry and no lease names belong to nobody: a
// writer that died before publishing (its lease reclaimed), an index that was
// removed and recreated, or an unlink lost to a crash. Under the lock, since
// new ids and their leases are made under it too.
void CacheImpl::collect_garbage_locked() {
  std::vector<uint64_t> known;
  for (uint32_t i = 0; i < index_->max_entries(); ++i) {
    const Entry& e = index_->entry(i);
    if (e.state == kEntryLive && e.value_id != 0) known.push_back(e.value_id);
  }
  for (uint32_t l = 0; l < index_->max_leases(); ++l) {
    const Lease& lz = index_->lease(l);
    if (lz.kind != kLeaseFree) known.push_back(lz.value_id);
  }
  std::sort(known.begin(), known.end());
  DIR* d = ::opendir(values_dir_.c_str());
  if (!d) return;
  std::vector<uint64_t> orphans;
  while (dirent* de = ::readdir(d)) {
    uint64_t id = parse_value_file_name(de->d_name);
    if (id != 0 && !std::binary_search(known.begin(), known.end(), id)) orphans.push_back(id);
  }
  ::closedir(d);
  unlink_values(orphans);
}

// NAME.index.tmp.PID.N of a creator that died before renaming it.
void CacheImpl::remove_stale_temporaries() {
  std::filesystem::path dir = index_->path().parent_path();
  std::string prefix = index_name_ + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* de = ::readdir(d)) {
    std::string_view n(de->d_name);
    if (n.substr(0, prefix.size()) != prefix) continue;
    long pid = std::strtol(de->d_name + prefix.size(), nullptr, 10);
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) < 0 && errno == ESRCH) {
      stale.emplace_back(n);
    }
  }
  ::closedir(d);
  for (const std::string& n : stale) (void)::unlink((dir / n).c_str());
}

std::shared_ptr<File> CacheImpl::cached_file(uint64_t id) {
  std::lock_guard<std::mutex> g(files_mu_);
  for (auto it = files_.begin(); it != files_.end(); ++it) {
    if (it->first == id) {
      std::shared_ptr<File> f = it->second;
      std::rotate(it, it + 1, files_.end());
      return f;
    }
  }
  return nullptr;
}

void CacheImpl::remember_file(uint64_t id, std::shared_ptr<File> file) {
  if (options_.open_files == 0) return;
  std::shared_ptr<File> evicted;  // closed after the lock is dropped
  std::lock_guard<std::mutex> g(files_mu_);
  for (auto& [fid, f] : files_) {
    if (fid == id) return;
  }
  if (files_.size() >= options_.open_files) {
    evicted = std::move(files_.front().second);
    files_.erase(files_.begin());
  }
  files_.emplace_back(id, std::move(file));
}

void CacheImpl::forget_file(uint64_t id) {
  std::shared_ptr<File> f;
  std::lock_guard<std::mutex> g(files_mu_);
  for (auto it = files_.begin(); it != files_.end(); ++it) {
    if (it->first == id) {
      f = std::move(it->second);
      files_.erase(it);
      return;
    }
  }
}

std::shared_ptr<File> CacheImpl::open_value_file(uint64_t id) {
  return std::make_shared<File>(File::open(value_path(id), O_RDWR));
}

std::shared_ptr<File> CacheImpl::write_value_file(uint64_t id, std::span<const std::byte> value) {
  std::filesystem::path path = value_path(id);
  std::shared_ptr<File> f;
  for (int attempt = 0;; ++attempt) {
    try {
      f = std::make_shared<File>(File::open(path, O_RDWR | O_CREAT | O_EXCL, options_.mode));
      break;
    } catch (const std::system_error& e) {
      // The id is ours alone (handed out under the lock), so a file by that
      // name is a leftover of an index that was removed and recreated.
      if (e.code().value() != EEXIST || attempt > 0) throw;
      (void)::unlink(path.c_str());
    }
  }
  size_t done = 0;
  while (done < value.size()) {
    ssize_t n =
        ::pwrite(f->fd(), value.data() + done, value.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno(n < 0 ? errno : EIO, "write " + path.string());
    done += static_cast<size_t>(n);
  }
  // Volatile before it is published: nobody holds it yet. A purge from now
  // on is seen by the first get's unmark.
  f->mark_volatile(value_range(value.size()), MarkOptions{false, options_.priority});
  return f;
}

void CacheImpl::put(std::string_view key, std::span<const std::byte> value) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  const uint64_t checksum = checksum64(value.data(), value.size(), key_hash);
  const ProcessIdentity self = self_identity();

  // 1. A fresh value id, leased so that garbage collection leaves its file
  // alone while we write it.
  uint64_t id = 0;
  uint32_t wl = kNil;
  uint64_t wserial = 0;
  if (!value.empty()) {
    IndexLock lock(*index_, options_.lock_timeout);
    after_lock(lock);
    wl = index_->add_write_lease(self, &id);
    if (wl == kNil && reap_locked() > 0) wl = index_->add_write_lease(self, &id);
    if (wl == kNil) {
      throw_errno(ENOSPC, index_path().string() + ": all " + std::to_string(index_->max_leases()) +
                              " leases in use (pins and puts in flight); raise max_leases");
    }
    wserial = index_->lease(wl).serial;
  }

  // 2. Write the whole value, outside the lock, into a file nobody else
  // knows of yet: readers can only find it once it is complete.
  if (!value.empty()) {
    try {
      std::shared_ptr<File> f = write_value_file(id, value);
      remember_file(id, std::move(f));
    } catch (...) {
      IndexLock lock(*index_, options_.lock_timeout);
      if (index_->lease_is(wl, wserial, self.pid)) index_->release_write_lease(wl);
      unlink_values({id});
      throw;
    }
    fault_point("put.after_write");
  }

  // 3. Publish under the lock. The old value (if any) is not touched, only
  // unlinked: its readers keep their bytes.
  std::vector<uint64_t> dead;
  int err = 0;
  std::string why;
  {
    IndexLock lock(*index_, options_.lock_timeout);
    after_lock(lock);
    uint32_t old = index_->find(key, key_hash);
    uint32_t e = kNil;
    if (wl != kNil && !index_->lease_is(wl, wserial, self.pid)) {
      err = ESTALE;
      why = "the lease of a put in flight was reclaimed (pid namespaces?)";
    } else if ((e = index_->allocate_entry()) == kNil) {
      // Full. A replacement frees its key's old entry first (pinned or not:
      // its readers keep the file); a crash before the new one is published
      // only loses the key, a miss. Otherwise evict the least recently used
      // entry that nobody pins.
      uint32_t victim = old != kNil ? old : index_->lru_victim();
      if (victim == kNil) {
        err = ENOSPC;
        why = "index full: all " + std::to_string(index_->max_entries()) + " entries are pinned";
      } else {
        dead.push_back(index_->entry(victim).value_id);
        index_->remove_entry(victim);
        if (victim == old) {
          old = kNil;
        } else {
          ++index_->header().counters.evictions;
          local_.evictions.fetch_add(1, std::memory_order_relaxed);
        }
        e = index_->allocate_entry();
      }
    }
    if (err == 0) {
      Entry& en = index_->entry(e);
      std::memcpy(en.key, key.data(), key.size());
      en.key_size = static_cast<uint32_t>(key.size());
      en.key_hash = key_hash;
      en.value_id = id;
      en.size = value.size();
      en.checksum = checksum;
      index_->publish_entry(e);
      fault_point("put.after_publish");
      if (old != kNil) {
        dead.push_back(index_->entry(old).value_id);
        index_->remove_entry(old);
      }
      fault_point("put.after_replace");
      ++index_->header().counters.puts;
    } else {
      dead.push_back(id);
    }
    if (wl != kNil && index_->lease_is(wl, wserial, self.pid)) index_->release_write_lease(wl);
  }
  unlink_values(dead);
  if (err != 0) throw_errno(err, index_path().string() + ": " + why);
  local_.puts.fetch_add(1, std::memory_order_relaxed);
}

std::optional<ValueView> CacheImpl::get(std::string_view key) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  const ProcessIdentity self = self_identity();

  auto miss = [&](bool purged) -> std::optional<ValueView> {
    local_.misses.fetch_add(1, std::memory_order_relaxed);
    if (purged) local_.purged_misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  };

  std::shared_ptr<File> file;  // opened outside the lock on a previous attempt
  uint64_t file_id = 0;
  for (int attempt = 0;; ++attempt) {
    uint64_t want = 0;
    uint64_t purged_id = 0;
    uint64_t lost_id = 0;
    auto pin = std::make_unique<ValueView::Pin>();
    uint64_t checksum = 0;
    {
      IndexLock lock(*index_, options_.lock_timeout);
      after_lock(lock);
      IndexHeader& h = index_->header();
      uint32_t e = index_->find(key, key_hash);
      if (e == kNil) {
        ++h.counters.misses;
        return miss(false);
      }
      Entry& en = index_->entry(e);
      if (en.size == 0) {
        index_->touch(e);
        ++h.counters.hits;
        local_.hits.fetch_add(1, std::memory_order_relaxed);
        return ValueView(nullptr, nullptr, 0);
      }
      if (file_id != en.value_id) file = cached_file(en.value_id);
      if (!file && attempt + 1 >= kGetAttempts) {
        // The value keeps changing under us: open it under the lock, where
        // a live entry's file must exist. If it does not (someone removed
        // it behind the cache's back), the entry is dropped as corrupt.
        try {
          file = open_value_file(en.value_id);
          remember_file(en.value_id, file);
        } catch (const std::system_error& err) {
          if (err.code().value() != ENOENT) throw;
          lost_id = en.value_id;
          index_->remove_entry(e);
          ++h.counters.misses;
          ++h.counters.corrupt_misses;
        }
      }
      if (lost_id != 0) {
        // Dropped above.
      } else if (!file) {
        want = en.value_id;
      } else {
        // The first pin unmarks (under the lock: a second reader must not
        // take the value as intact before the first one knows it is).
        if (en.pins == 0 && file->unmark(value_range(en.size)).purged()) {
          purged_id = en.value_id;
          index_->remove_entry(e);
          ++h.counters.misses;
          ++h.counters.purged_misses;
        } else {
          uint32_t l = index_->add_pin(e, self);
          if (l == kNil && reap_locked() > 0) l = index_->add_pin(e, self);
          if (l == kNil) {
            if (en.pins == 0) mark_released_locked(e);
            throw_errno(ENOSPC, index_path().string() + ": all " +
                                    std::to_string(index_->max_leases()) +
                                    " leases in use (pins and puts in flight); raise max_leases");
          }
          index_->touch(e);
          ++h.counters.hits;  // taken back below if the checksum fails
          pin->lease = l;
          pin->serial = index_->lease(l).serial;
          pin->pid = self.pid;
          pin->value_id = en.value_id;
          pin->size = en.size;
          checksum = en.checksum;
        }
      }
    }
    if (purged_id != 0) {
      unlink_values({purged_id});
      return miss(true);
    }
    if (lost_id != 0) {
      local_.corrupt_misses.fetch_add(1, std::memory_order_relaxed);
      return miss(false);
    }
    if (want != 0) {
      // Open outside the lock (a FUSE lookup and open), then look again.
      try {
        file = open_value_file(want);
        file_id = want;
        remember_file(want, file);
      } catch (const std::system_error& err) {
        if (err.code().value() != ENOENT) throw;
        file.reset();  // erased or replaced meanwhile
      }
      continue;
    }

    // Pinned: nothing can purge or change the value now. Map and verify it.
    pin->cache = shared_from_this();
    pin->file = file;
    try {
      pin->mapping = file->map(0, pin->size, PROT_READ);
    } catch (...) {
      release(*pin);
      throw;
    }
    const auto* data = pin->mapping.data<const std::byte>();
    if (checksum64(data, pin->size, key_hash) != checksum) {
      uint64_t id = pin->value_id;
      pin->mapping = Mapping();
      {
        IndexLock lock(*index_, options_.lock_timeout);
        IndexHeader& h = index_->header();
        --h.counters.hits;
        ++h.counters.misses;
        ++h.counters.corrupt_misses;
        if (index_->lease_is(pin->lease, pin->serial, pin->pid)) index_->release_pin(pin->lease);
        uint32_t e = index_->find_value(id, kNil);
        if (e != kNil) index_->remove_entry(e);
      }
      unlink_values({id});
      local_.corrupt_misses.fetch_add(1, std::memory_order_relaxed);
      return miss(false);
    }
    local_.hits.fetch_add(1, std::memory_order_relaxed);
    size_t size = pin->size;
    return ValueView(std::move(pin), data, size);
  }
}

void CacheImpl::release(ValueView::Pin& pin) noexcept {
  // The mapping goes first: once the value is volatile again we must not
  // hold a way to read it.
  pin.mapping = Mapping();
  // A view inherited across fork() holds its parent's lease, not ours.
  if (pin.pid != ::getpid()) return;
  bool gone = false;
  try {
    IndexLock lock(*index_, options_.lock_timeout);
    if (!index_->lease_is(pin.lease, pin.serial, pin.pid)) return;
    uint32_t e = index_->release_pin(pin.lease);
    if (e != kNil) {
      try {
        pin.file->mark_volatile(value_range(pin.size), MarkOptions{false, options_.priority});
      } catch (const std::system_error&) {
        // Stays non-volatile: never purged, nothing lost.
      }
    } else {
      gone = index_->find_value(pin.value_id, kNil) == kNil;
    }
  } catch (...) {
    // A lock timeout: the lease stays until this process exits, when it is
    // reclaimed like a dead one's. The value is only kept longer.
  }
  if (gone) forget_file(pin.value_id);
}

bool CacheImpl::erase(std::string_view key) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  uint64_t id = 0;
  {
    IndexLock lock(*index_, options_.lock_timeout);
    after_lock(lock);
    uint32_t e = index_->find(key, key_hash);
    if (e == kNil) return false;
    id = index_->entry(e).value_id;
    index_->remove_entry(e);
    ++index_->header().counters.erases;
  }
  local_.erases.fetch_add(1, std::memory_order_relaxed);
  unlink_values({id});
  return true;
}

SharedCacheStats CacheImpl::stats() {
  IndexLock lock(*index_, options_.lock_timeout);
  const IndexHeader& h = index_->header();
  const IndexCounters& c = h.counters;
  SharedCacheStats s;
  s.hits = c.hits;
  s.misses = c.misses;
  s.purged_misses = c.purged_misses;
  s.corrupt_misses = c.corrupt_misses;
  s.puts = c.puts;
  s.erases = c.erases;
  s.evictions = c.evictions;
  s.entries = h.live_entries;
  s.bytes = h.live_bytes;
  s.pinned = h.pinned;
  s.leases_reclaimed = c.leases_reclaimed;
  s.lock_recoveries = c.lock_recoveries;
  s.max_entries = h.max_entries;
  s.max_leases = h.max_leases;
  return s;
}

SharedCacheStats CacheImpl::local_stats() const {
  SharedCacheStats s;
  s.hits = local_.hits.load(std::memory_order_relaxed);
  s.misses = local_.misses.load(std::memory_order_relaxed);
  s.purged_misses = local_.purged_misses.load(std::memory_order_relaxed);
  s.corrupt_misses = local_.corrupt_misses.load(std::memory_order_relaxed);
  s.puts = local_.puts.load(std::memory_order_relaxed);
  s.erases = local_.erases.load(std::memory_order_relaxed);
  s.evictions = local_.evictions.load(std::memory_order_relaxed);
  return s;
}

size_t CacheImpl::reclaim_dead_leases() {
  IndexLock lock(*index_, options_.lock_timeout);
  return reap_locked();
}

// ---- Test peer ----

CacheIndex& SharedCacheTestPeer::index(SharedCache& cache) { return cache.impl_->index(); }

void SharedCacheTestPeer::run_locked(SharedCache& cache, const std::function<void()>& fn) {
  IndexLock lock(cache.impl_->index(), cache.impl_->lock_timeout());
  fn();
}

std::filesystem::path SharedCacheTestPeer::value_path(SharedCache& cache, std::string_view key) {
  CacheImpl& impl = *cache.impl_;
  IndexLock lock(impl.index(), impl.lock_timeout());
  uint32_t e = impl.index().find(key, key_hash_of(key));
  if (e == kNil || impl.index().entry(e).value_id == 0) return {};
  return impl.value_path(impl.index().entry(e).value_id);
}

std::string SharedCacheTestPeer::check(SharedCache& cache) {
  IndexLock lock(cache.impl_->index(), cache.impl_->lock_timeout());
  return cache.impl_->index().check();
}

}  // namespace cache_detail

// ---- ValueView ----

ValueView::ValueView(std::unique_ptr<Pin> pin, const std::byte* data, size_t size)
    : pin_(std::move(pin)), data_(data), size_(size) {}

ValueView::ValueView(ValueView&& o) noexcept
    : pin_(std::move(o.pin_)),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

ValueView& ValueView::operator=(ValueView&& o) noexcept {
  if (this != &o) {
    release();
    pin_ = std::move(o.pin_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

ValueView::~ValueView() { release(); }

void ValueView::release() noexcept {
  if (pin_) {
    std::shared_ptr<cache_detail::CacheImpl> cache = pin_->cache;
    cache->release(*pin_);
    pin_.reset();
  }
  data_ = nullptr;
  size_ = 0;
}

// ---- SharedCache ----

SharedCache SharedCache::open(const std::filesystem::path& dir, std::string_view name,
                              const SharedCacheOptions& options) {
  return SharedCache(std::make_shared<cache_detail::CacheImpl>(dir, name, options));
}

SharedCache::SharedCache(std::shared_ptr<cache_detail::CacheImpl> impl) : impl_(std::move(impl)) {}
SharedCache::SharedCache(SharedCache&&) noexcept = default;
SharedCache& SharedCache::operator=(SharedCache&&) noexcept = default;
SharedCache::~SharedCache() = default;

void SharedCache::put(std::string_view key, std::span<const std::byte> value) {
  impl_->put(key, value);
}
std::optional<ValueView> SharedCache::get(std::string_view key) { return impl_->get(key); }
bool SharedCache::erase(std::string_view key) { return impl_->erase(key); }
SharedCacheStats SharedCache::stats() const { return impl_->stats(); }
SharedCacheStats SharedCache::local_stats() const { return impl_->local_stats(); }
size_t SharedCache::reclaim_dead_leases() { return impl_->reclaim_dead_leases(); }
const std::filesystem::path& SharedCache::index_path() const { return impl_->index_path(); }
const std::filesystem::path& SharedCache::values_dir() const { return impl_->values_dir(); }

}  // namespace volfs
