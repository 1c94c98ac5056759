// shared_cache.cc: SharedCache over a CacheIndex and values in slots of
// segment files. The pin protocol: a reader pins a value's slot (a
// compare-and-swap of its holder bit into the slot's word) under the index
// lock, so a slot is never handed to a put while anyone pins it; reading and
// unpinning need no lock and no system call. Values are immutable while
// published: a put writes into a slot nobody pins and publishes it after.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/file.h>
#include <volfs/shared_cache.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "cache_index.h"
#include "checksum.h"
#include "fault_point.h"
#include "process_identity.h"
#include "segment_map.h"
#include "shared_cache_testing.h"

namespace volfs {

// A reader's pin: its holder's pin of one slot, dropped by unpinning.
struct ValueView::Pin {
  std::shared_ptr<cache_detail::SegmentMap> segment;
  uint32_t slot = 0;
  pid_t pid = 0;
};

namespace cache_detail {
namespace {

constexpr size_t kMaxNameSize = 200;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "volfs cache: " + what);
}

// The clock of the reap interval (1 s): the coarse one, ~5 ns a read here
// against ~23 for CLOCK_MONOTONIC, read by every operation; it lags by at
// most a tick (a few ms).
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr char kSegmentPrefix[] = "seg-";

std::string segment_file_name(uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%016llx", kSegmentPrefix, static_cast<unsigned long long>(id));
  return buf;
}

// The file id a name in the values directory stands for, or 0.
uint64_t parse_segment_file_name(const char* name) {
  const size_t prefix = sizeof(kSegmentPrefix) - 1;
  if (std::strlen(name) != prefix + 16 || std::strncmp(name, kSegmentPrefix, prefix) != 0) return 0;
  uint64_t id = 0;
  auto [end, ec] = std::from_chars(name + prefix, name + prefix + 16, id, 16);
  return ec == std::errc() && end == name + prefix + 16 ? id : 0;
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

// A full mount (ENOSPC) is often one whose daemon has not yet seen that
// released slots are purgeable: it learns that when it looks at the slot
// words, which every pressure round does (at least every 100 ms) and
// GET_STATUS does at once. So a write that finds the mount full asks
// GET_STATUS of the file (a look, which lets the daemon make room), backs
// off, and tries again, for about a second (50 tries) before giving up.
constexpr int kFullRetries = 50;

void wait_for_room(int fd, int tries) {
  volfs_status st{};
  (void)volfs_get_status(fd, 0, 0, &st);
  struct timespec pause = {0, (tries < 10 ? 2L : 20L) * 1000 * 1000};
  nanosleep(&pause, nullptr);
}

// Writes bytes into slot k of map, which the caller pins (so nothing
// punches it meanwhile), with pwrite: a full mount answers ENOSPC, which a
// store through the mapping would turn into SIGBUS. In passthrough the
// write goes straight to the store and makes no FUSE request (the daemon
// takes FUSE_CAP_HANDLE_KILLPRIV_V2, so the kernel does not ask it for
// security.capability first), and a copy into fresh tmpfs pages costs less
// than faulting them in through the mapping: a 4 KiB put took 2.9-3.7 us
// this way against 4.1 us mapped (docs/shared-cache.md). A pinned slot's
// pages stay (the daemon punches only unpinned slots, and segments are
// never truncated).
void write_slot(SegmentMap& map, uint32_t k, std::span<const std::byte> bytes) {
  const uint64_t offset = map.data_offset(k);
  size_t done = 0;
  int full = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(map.fd(), bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOSPC && full < kFullRetries) {
      wait_for_room(map.fd(), full++);
      continue;
    }
    if (n <= 0) throw_errno(n < 0 ? errno : EIO, "write " + map.path().string());
    done += static_cast<size_t>(n);
  }
}

}  // namespace

class CacheImpl {
 public:
  CacheImpl(const std::filesystem::path& dir, std::string_view name,
            const SharedCacheOptions& options);

  void put(std::string_view key, std::span<const std::byte> value);
  std::optional<ValueView> get(std::string_view key);
  bool erase(std::string_view key);
  SharedCacheStats stats();
  SharedCacheStats local_stats() const;
  size_t reclaim_dead_leases();

  CacheIndex& index() { return *index_; }
  std::chrono::milliseconds lock_timeout() const { return options_.lock_timeout; }
  const std::filesystem::path& index_path() const { return index_->path(); }
  const std::filesystem::path& values_dir() const { return values_dir_; }
  std::filesystem::path segment_path(uint64_t file_id) const {
    return values_dir_ / segment_file_name(file_id);
  }
  // Requires the lock: this process's map of ready segment s (mapped now if
  // it was not: an open, a HOLDER ioctl and an mmap, once per segment).
  SegmentMap& mapped_locked(uint32_t s) { return *map_locked(s); }

 private:
  // Runs the periodic duties of a fresh lock holder.
  void after_lock(const IndexLock& lock);
  // The index lock as an operation takes it: whoever takes it over from a
  // dead owner cleans up after it (after_lock) before going on.
  class Locked {
   public:
    explicit Locked(CacheImpl& c) : lock_(*c.index_, c.options_.lock_timeout) {
      c.after_lock(lock_);
    }

   private:
    IndexLock lock_;
  };
  size_t reap_locked();
  void collect_garbage_locked();
  void remove_stale_temporaries();
  std::shared_ptr<SegmentMap> map_locked(uint32_t s);
  // Maps every ready segment this process has not mapped yet.
  void map_all_locked();
  // A new segment of class c, created, registered and published; false if
  // the segment or slot table is full.
  bool create_segment_locked(uint32_t c);
  SlotBusy busy_fn() {
    return [this](uint32_t s, uint32_t k) { return map_locked(s)->busy(k); };
  }

  SharedCacheOptions options_;
  std::filesystem::path values_dir_;
  std::string index_name_;
  std::unique_ptr<CacheIndex> index_;
  LocalCounters local_;

  // Guarded by the index lock (which excludes this process's threads too):
  // this process's maps of the segments, by segment record, and how many
  // slot records the segments mapped so far cover (to notice new ones).
  std::vector<std::shared_ptr<SegmentMap>> maps_;
  uint32_t mapped_slots_ = 0;
};

CacheImpl::CacheImpl(const std::filesystem::path& dir, std::string_view name,
                     const SharedCacheOptions& options)
    : options_(options) {
  check_name(name);
  if (options.priority < 0 || options.priority > 7) throw_errno(EINVAL, "priority not in 0..7");
  // Refuses (ENOTTY) a directory that is not on volfs: values would never be
  // purged, and slots could not be registered.
  (void)volfs::stats(dir);
  values_dir_ = dir / (std::string(name) + ".values");
  index_name_ = std::string(name) + ".index";
  mode_t dir_mode = options.mode | ((options.mode & 0444) >> 2) | 0700;
  if (::mkdir(values_dir_.c_str(), dir_mode) < 0 && errno != EEXIST) {
    throw_errno(errno, "create " + values_dir_.string());
  }
  IndexGeometry g;
  g.max_entries = options.max_entries;
  g.max_leases = options.max_leases;
  g.max_segments = options.max_segments;
  g.max_slots = options.max_slots;
  g.segment_bytes = options.segment_bytes;
  g.page_size = static_cast<uint32_t>(File::page_size());
  index_ = CacheIndex::open(dir / index_name_, g, options.create, options.mode);
  if (index_->header().page_size != g.page_size) {
    throw_errno(EPROTO, index_->path().string() + ": made with pages of " +
                            std::to_string(index_->header().page_size) + " bytes, ours are " +
                            std::to_string(g.page_size));
  }
  maps_.resize(index_->max_segments());
  remove_stale_temporaries();
  IndexLock lock(*index_, options_.lock_timeout);
  reap_locked();
  collect_garbage_locked();
  // Every segment now: a get of a value in it then makes no FUSE request,
  // and a process that cannot be a holder (62 per file) learns it here.
  map_all_locked();
}

void CacheImpl::after_lock(const IndexLock& lock) {
  IndexHeader& h = index_->header();
  uint64_t now = monotonic_ns();
  uint64_t interval = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.reap_interval).count());
  if (lock.recovered() || now - h.last_reap_ns >= interval) reap_locked();
  // A creator that died inside a critical section may have left a segment
  // file that no record names.
  if (lock.recovered()) collect_garbage_locked();
}

size_t CacheImpl::reap_locked() {
  index_->header().last_reap_ns = monotonic_ns();
  return index_->reclaim_leases(process_alive);
}

std::shared_ptr<SegmentMap> CacheImpl::map_locked(uint32_t s) {
  const SegmentRecord& r = index_->segment(s);
  if (r.state != kSegmentReady) throw std::logic_error("volfs cache: map of a free segment");
  std::shared_ptr<SegmentMap>& m = maps_[s];
  if (m && m->file_id() == r.file_id) return m;
  std::filesystem::path path = segment_path(r.file_id);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw_errno(errno, "open " + path.string());
  uint32_t holder = 0;
  if (volfs_get_slot_holder(fd, &holder) < 0) {
    int err = errno;
    ::close(fd);
    if (err == EUSERS) {
      throw_errno(err, path.string() + ": already " + std::to_string(VOLFS_SLOT_HOLDERS) +
                           " holders (open SharedCache objects, over all processes) on this "
                           "segment file, the most volfs allows per file; close a SharedCache "
                           "elsewhere or use fewer processes");
    }
    throw_errno(err, "take a pin bit (VOLFS_IOC_SLOT_HOLDER) of " + path.string() +
                         (err == ENOTTY || err == EOPNOTSUPP
                              ? " (slots need a volfs with slot support and passthrough io mode)"
                              : ""));
  }
  m = std::make_shared<SegmentMap>(fd, path, r, holder, false);
  return m;
}

void CacheImpl::map_all_locked() {
  const IndexHeader& h = index_->header();
  if (mapped_slots_ == h.slots_used) return;
  for (uint32_t s = 0; s < index_->max_segments(); ++s) {
    if (index_->segment(s).state == kSegmentReady) map_locked(s);
  }
  mapped_slots_ = h.slots_used;
}

bool CacheImpl::create_segment_locked(uint32_t c) {
  SegmentRecord plan{};
  uint32_t s = index_->plan_segment(c, &plan);
  if (s == kNil) return false;
  std::filesystem::path path = segment_path(plan.file_id);
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, options_.mode);
    // The id is new (handed out under the lock), so a file by that name is
    // a leftover of an index that was removed and recreated.
    if (fd < 0 && errno == EEXIST && attempt == 0) {
      (void)::unlink(path.c_str());
      continue;
    }
    if (fd < 0) throw_errno(errno, "create " + path.string());
  }
  std::shared_ptr<SegmentMap> m;
  try {
    if (::ftruncate(fd, static_cast<off_t>(plan.file_size)) < 0) {
      throw_errno(errno, "resize " + path.string());
    }
    uint32_t holder = 0;
    int created = 0;
    // One call for all the slots; each comes back LIVE, pinned by our bit.
    if (volfs_register_slots(fd, plan.data_offset, plan.slot_bytes, 0, plan.slot_count,
                             VOLFS_MARK_PRIORITY(options_.priority), &holder, &created) < 0) {
      int err = errno;
      throw_errno(err, "register the " + std::to_string(plan.slot_count) + " slots of " +
                           path.string() +
                           (err == ENOTTY || err == EOPNOTSUPP
                                ? " (slots need a volfs with slot support and passthrough io mode)"
                                : ""));
    }
    if (!created) throw_errno(EBUSY, path.string() + ": its slots existed already");
    int owned = fd;
    fd = -1;
    m = std::make_shared<SegmentMap>(owned, path, plan, holder, true);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    (void)::unlink(path.c_str());
    throw;
  }
  m->unpin_all();  // free slots are purgeable (there is nothing in them)
  fault_point("segment.before_publish");
  index_->publish_segment(s, plan);
  maps_[s] = std::move(m);
  if (mapped_slots_ == plan.first_slot) mapped_slots_ = plan.first_slot + plan.slot_count;
  return true;
}

// Segment files that no ready record names belong to nobody: a creator that
// died before publishing, or an index that was removed and recreated. Under
// the lock, since segments are created under it too.
void CacheImpl::collect_garbage_locked() {
  std::vector<uint64_t> known;
  for (uint32_t s = 0; s < index_->max_segments(); ++s) {
    const SegmentRecord& r = index_->segment(s);
    if (r.state == kSegmentReady) known.push_back(r.file_id);
  }
  std::sort(known.begin(), known.end());
  DIR* d = ::opendir(values_dir_.c_str());
  if (!d) return;
  std::vector<uint64_t> orphans;
  while (dirent* de = ::readdir(d)) {
    uint64_t id = parse_segment_file_name(de->d_name);
    if (id != 0 && !std::binary_search(known.begin(), known.end(), id)) orphans.push_back(id);
  }
  ::closedir(d);
  for (uint64_t id : orphans) (void)::unlink(segment_path(id).c_str());
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

void CacheImpl::put(std::string_view key, std::span<const std::byte> value) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  const uint64_t checksum = value_checksum(value.data(), value.size(), key_hash);
  const ProcessIdentity self = self_identity();
  if (value.size() > index_->max_value_size()) {
    throw_errno(EFBIG, "value of " + std::to_string(value.size()) + " bytes (at most " +
                           std::to_string(index_->max_value_size()) + ")");
  }

  // 1. Under the lock: a free slot nobody pins, a write lease on it (so a
  // writer killed from here on does not leak it), and our pin, so that no
  // purge can punch the data between our write and our publish.
  uint32_t g = kNil, wl = kNil, seg = kNil, k = 0;
  uint64_t wserial = 0, id = 0;
  std::shared_ptr<SegmentMap> map;
  if (!value.empty()) {
    Locked lock(*this);
    map_all_locked();
    const uint32_t c = index_->size_class_for(value.size());
    const SlotBusy busy = busy_fn();
    g = index_->take_free_slot(c, busy);
    if (g == kNil && create_segment_locked(c)) g = index_->take_free_slot(c, busy);
    if (g == kNil) {
      // The class is full: evict its least recently used value nobody pins.
      uint32_t victim = index_->lru_victim(busy, c);
      if (victim != kNil) {
        index_->remove_entry(victim);
        ++index_->header().counters.evictions;
        local_.evictions.fetch_add(1, std::memory_order_relaxed);
        g = index_->take_free_slot(c, busy);
      }
    }
    if (g == kNil) {
      throw_errno(ENOSPC, index_path().string() + ": size class of " +
                              std::to_string(index_->slot_bytes(c)) +
                              "-byte slots full: all its slots are pinned or being written and no "
                              "segment can be added (max_segments, max_slots)");
    }
    wl = index_->add_write_lease(self, g, &id);
    if (wl == kNil && reap_locked() > 0) wl = index_->add_write_lease(self, g, &id);
    if (wl == kNil) {
      index_->free_slot(g);
      throw_errno(ENOSPC, index_path().string() + ": all " + std::to_string(index_->max_leases()) +
                              " leases in use (puts in flight); raise max_leases");
    }
    wserial = index_->lease(wl).serial;
    seg = index_->slot_record(g).segment;
    k = g - index_->segment(seg).first_slot;
    map = maps_[seg];
    // A slot purged while free answers PURGED: nothing of value was lost.
    if (map->pin(k) < 0) {
      int err = errno;
      index_->release_write_lease(wl);
      index_->free_slot(g);
      throw_errno(err, map->path().string() + ": pin of slot " + std::to_string(k));
    }
  }

  // 2. Write the whole value into the slot, outside the lock: nobody else
  // reads it before it is published, nobody else takes the slot (leased),
  // and nothing purges it (pinned). With pwrite: no FUSE request in
  // passthrough, and a full mount is ENOSPC, not SIGBUS.
  if (!value.empty()) {
    try {
      write_slot(*map, k, value);
    } catch (...) {
      {
        Locked lock(*this);
        if (index_->lease_is(wl, wserial, self.pid)) {
          index_->release_write_lease(wl);
          index_->free_slot(g);
        }
      }
      map->unpin(k);
      throw;
    }
    fault_point("put.after_write");
  }

  // 3. Publish under the lock. The old value's slot (if any) is freed; its
  // readers keep their bytes, since a slot is reused only once unpinned.
  int err = 0;
  std::string why;
  {
    Locked lock(*this);
    uint32_t old = index_->find(key, key_hash);
    uint32_t e = kNil;
    if (wl != kNil && !index_->lease_is(wl, wserial, self.pid)) {
      err = ESTALE;
      why = "the lease of a put in flight was reclaimed (pid namespaces?)";
    } else if ((e = index_->allocate_entry()) == kNil) {
      // Full. A replacement frees its key's old entry first (pinned or not:
      // its readers keep the slot); a crash before the new one is published
      // only loses the key, a miss. Otherwise evict the least recently used
      // entry that nobody pins.
      uint32_t victim = old != kNil ? old : index_->lru_victim(busy_fn());
      if (victim == kNil) {
        err = ENOSPC;
        why = "index full: all " + std::to_string(index_->max_entries()) + " entries are pinned";
      } else {
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
      en.segment = seg;
      en.slot = k;
      index_->publish_entry(e);
      fault_point("put.after_publish");
      if (old != kNil) index_->remove_entry(old);
      fault_point("put.after_replace");
      ++index_->header().counters.puts;
      if (wl != kNil) index_->release_write_lease(wl);
    } else if (wl != kNil && index_->lease_is(wl, wserial, self.pid)) {
      index_->release_write_lease(wl);
      index_->free_slot(g);
    }
  }
  // 4. Released: from now on the daemon may purge it (a get learns that).
  if (map) map->unpin(k);
  if (err != 0) throw_errno(err, index_path().string() + ": " + why);
  local_.puts.fetch_add(1, std::memory_order_relaxed);
}

std::optional<ValueView> CacheImpl::get(std::string_view key) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  auto miss = [&](bool purged) -> std::optional<ValueView> {
    local_.misses.fetch_add(1, std::memory_order_relaxed);
    if (purged) local_.purged_misses.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  };

  auto pin = std::make_unique<ValueView::Pin>();
  uint64_t checksum = 0, size = 0, id = 0;
  bool purged = false, stale = false;
  {
    Locked lock(*this);
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
    pin->segment = map_locked(en.segment);
    pin->slot = en.slot;
    pin->pid = current_pid();
    // The pin, under the lock: a put takes only slots nobody pins, and only
    // under the lock, so once the CAS lands the slot stays this value's.
    int r = pin->segment->pin(en.slot);
    if (r < 0) {
      // ESTALE: the word is no slot word any more (the file was damaged
      // behind the cache's back). The entry cannot be trusted.
      stale = true;
      index_->remove_entry(e);
      ++h.counters.misses;
      ++h.counters.corrupt_misses;
    } else if (r == VOLFS_PURGED) {
      // The daemon punched it while it was released. Our pin made the word
      // LIVE again; the slot goes back to the free list, our unpin follows.
      purged = true;
      index_->remove_entry(e);
      ++h.counters.misses;
      ++h.counters.purged_misses;
    } else {
      index_->touch(e);
      ++h.counters.hits;  // taken back below if the checksum fails
      checksum = en.checksum;
      size = en.size;
      id = en.value_id;
    }
  }
  if (stale) {
    local_.corrupt_misses.fetch_add(1, std::memory_order_relaxed);
    return miss(false);
  }
  if (purged) {
    pin->segment->unpin(pin->slot);
    return miss(true);
  }

  // Pinned: nothing can purge or change the value now. Verify it in place.
  const std::byte* data = pin->segment->data(pin->slot);
  if (value_checksum(data, size, key_hash) != checksum) {
    {
      Locked lock(*this);
      IndexHeader& h = index_->header();
      --h.counters.hits;
      ++h.counters.misses;
      ++h.counters.corrupt_misses;
      uint32_t e = index_->find(key, key_hash);
      if (e != kNil && index_->entry(e).value_id == id) index_->remove_entry(e);
    }
    pin->segment->unpin(pin->slot);
    local_.corrupt_misses.fetch_add(1, std::memory_order_relaxed);
    return miss(false);
  }
  local_.hits.fetch_add(1, std::memory_order_relaxed);
  return ValueView(std::move(pin), data, size);
}

bool CacheImpl::erase(std::string_view key) {
  check_key(key);
  const uint64_t key_hash = key_hash_of(key);
  {
    Locked lock(*this);
    uint32_t e = index_->find(key, key_hash);
    if (e == kNil) return false;
    index_->remove_entry(e);
    ++index_->header().counters.erases;
  }
  local_.erases.fetch_add(1, std::memory_order_relaxed);
  return true;
}

SharedCacheStats CacheImpl::stats() {
  Locked lock(*this);
  map_all_locked();
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
  for (uint32_t i = 0; i < index_->max_segments(); ++i) {
    if (index_->segment(i).state != kSegmentReady) continue;
    s.pinned += maps_[i]->pins();
    ++s.segments;
  }
  s.slots = h.slots_used;
  s.free_slots = index_->free_slots();
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
  size_t n = reap_locked();
  if (lock.recovered()) collect_garbage_locked();
  return n;
}

// ---- Test peer ----

CacheIndex& SharedCacheTestPeer::index(SharedCache& cache) { return cache.impl_->index(); }

void SharedCacheTestPeer::run_locked(SharedCache& cache, const std::function<void()>& fn) {
  IndexLock lock(cache.impl_->index(), cache.impl_->lock_timeout());
  fn();
}

uint64_t SharedCacheTestPeer::slot_word(SharedCache& cache, std::string_view key) {
  CacheImpl& impl = *cache.impl_;
  IndexLock lock(impl.index(), impl.lock_timeout());
  uint32_t e = impl.index().find(key, key_hash_of(key));
  if (e == kNil || impl.index().entry(e).segment == kNil) return 0;
  const Entry& en = impl.index().entry(e);
  return impl.mapped_locked(en.segment).load_word(en.slot);
}

std::filesystem::path SharedCacheTestPeer::segment_path(SharedCache& cache, std::string_view key) {
  CacheImpl& impl = *cache.impl_;
  IndexLock lock(impl.index(), impl.lock_timeout());
  uint32_t e = impl.index().find(key, key_hash_of(key));
  if (e == kNil || impl.index().entry(e).segment == kNil) return {};
  return impl.segment_path(impl.index().segment(impl.index().entry(e).segment).file_id);
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
  // No lock, no system call: one compare-and-swap (none if other views of
  // this holder pin the slot too). A view inherited across fork() is its
  // parent's pin, which only the parent may drop.
  if (pin_) {
    if (pin_->pid == cache_detail::current_pid()) pin_->segment->unpin(pin_->slot);
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
