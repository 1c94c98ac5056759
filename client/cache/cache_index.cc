// cache_index.cc: see cache_index.h. Every mutation writes the authoritative
// field that decides the outcome (an entry's state, a lease's kind) at one
// point, so a process killed anywhere leaves an index that rebuild() turns
// back into a consistent one without losing a published value.
#include "cache_index.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "checksum.h"
#include "fault_point.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace volfs::cache_detail {
namespace {

constexpr uint32_t kMaxEntriesLimit = 1u << 24;
constexpr uint32_t kMaxLeasesLimit = 1u << 20;
constexpr uint32_t kMaxSegmentsLimit = 1u << 16;
constexpr uint32_t kMaxSlotsLimit = 1u << 26;

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), "volfs cache: " + what);
}

[[noreturn]] void throw_mismatch(const std::filesystem::path& path, const std::string& what) {
  throw std::system_error(EPROTO, std::generic_category(),
                          "volfs cache: " + path.string() + ": " + what +
                              "; refusing to use it (remove the cache, or use a "
                              "build of the same layout)");
}

uint32_t bucket_count_for(uint32_t max_entries) {
  return std::bit_ceil(std::max<uint32_t>(2 * max_entries, 16));
}

// Slots a segment of class c holds: segment_bytes of data, at least one slot,
// at most what one registration call takes.
uint32_t slots_per_segment(uint64_t segment_bytes, uint64_t slot_bytes) {
  uint64_t n = std::max<uint64_t>(1, segment_bytes / slot_bytes);
  return static_cast<uint32_t>(std::min<uint64_t>(n, VOLFS_SLOT_REGISTER_MAX));
}

// The geometry with max_slots chosen if left 0.
IndexGeometry resolved(IndexGeometry g) {
  if (g.max_slots == 0 && g.page_size > 0) {
    uint64_t n =
        uint64_t{4} * g.max_entries + uint64_t{2} * slots_per_segment(g.segment_bytes, g.page_size);
    g.max_slots = static_cast<uint32_t>(std::min<uint64_t>(n, kMaxSlotsLimit));
  }
  return g;
}

uint64_t segment_size_for(const IndexGeometry& g) {
  uint64_t payload = uint64_t{g.max_entries} * sizeof(Entry) +
                     uint64_t{bucket_count_for(g.max_entries)} * sizeof(uint32_t) +
                     uint64_t{g.max_leases} * sizeof(Lease) +
                     uint64_t{g.max_segments} * sizeof(SegmentRecord) +
                     uint64_t{g.max_slots} * sizeof(SlotRecord) + sizeof(Index);
  // Room for the segment manager, the name index and per-allocation headers.
  uint64_t size = payload + payload / 64 + uint64_t{64} * 1024;
  return (size + 4095) & ~uint64_t{4095};
}

bool geometry_ok(const IndexGeometry& g) {
  return g.max_entries >= 1 && g.max_entries <= kMaxEntriesLimit && g.max_leases >= 1 &&
         g.max_leases <= kMaxLeasesLimit && g.max_segments >= 1 &&
         g.max_segments <= kMaxSegmentsLimit && g.max_slots >= 1 && g.max_slots <= kMaxSlotsLimit &&
         g.page_size >= 4096 && std::has_single_bit(g.page_size) &&
         g.segment_bytes >= g.page_size && g.segment_bytes <= (uint64_t{1} << 40);
}

void check_geometry(const IndexGeometry& g) {
  if (!geometry_ok(resolved(g))) {
    throw_errno(EINVAL, "max_entries must be in 1.." + std::to_string(kMaxEntriesLimit) +
                            ", max_leases in 1.." + std::to_string(kMaxLeasesLimit) +
                            ", max_segments in 1.." + std::to_string(kMaxSegmentsLimit) +
                            ", max_slots in 0.." + std::to_string(kMaxSlotsLimit) +
                            " and segment_bytes at least a page");
  }
}

// Names the first field where the index's ABI differs from this build's.
std::string abi_difference(const AbiFingerprint& have, const AbiFingerprint& want) {
  struct Field {
    const char* name;
    uint32_t AbiFingerprint::*member;
  };
  static constexpr Field kFields[] = {
      {"byte order marker", &AbiFingerprint::endian_marker},
      {"sizeof(void*)", &AbiFingerprint::pointer_size},
      {"sizeof(IndexHeader)", &AbiFingerprint::header_size},
      {"sizeof(Entry)", &AbiFingerprint::entry_size},
      {"sizeof(Lease)", &AbiFingerprint::lease_size},
      {"sizeof(Index)", &AbiFingerprint::index_size},
      {"sizeof(pthread_mutex_t)", &AbiFingerprint::mutex_size},
      {"sizeof(segment_manager)", &AbiFingerprint::segment_manager_size},
      {"BOOST_VERSION", &AbiFingerprint::boost_version},
      {"max key size", &AbiFingerprint::max_key_size},
      {"sizeof(SegmentRecord)", &AbiFingerprint::segment_record_size},
      {"sizeof(volfs_slot_word)", &AbiFingerprint::slot_word_size},
      {"size classes", &AbiFingerprint::size_classes},
  };
  for (const Field& f : kFields) {
    if (have.*f.member != want.*f.member) {
      return std::string("ABI mismatch: ") + f.name + " is " + std::to_string(have.*f.member) +
             " in the index, " + std::to_string(want.*f.member) + " in this build";
    }
  }
  for (size_t i = 0; i < std::size(have.reserved); ++i) {
    if (have.reserved[i] != want.reserved[i]) return "ABI mismatch: reserved fingerprint words";
  }
  return {};
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

uint64_t index_file_size(const IndexGeometry& g) {
  return kSegmentOffset + segment_size_for(resolved(g));
}

CacheIndex::CacheIndex(std::filesystem::path path, void* base, size_t size)
    : path_(std::move(path)), base_(base), size_(size), header_(static_cast<IndexHeader*>(base)) {}

CacheIndex::~CacheIndex() {
  segment_.reset();
  if (base_) ::munmap(base_, size_);
}

std::unique_ptr<CacheIndex> CacheIndex::open(const std::filesystem::path& path,
                                             const IndexGeometry& geometry, bool create,
                                             mode_t mode) {
  check_geometry(geometry);
  // A lost creation race sends us around once more to open the winner's file.
  for (int attempt = 0; attempt < 8; ++attempt) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      FdCloser closer{fd};
      return attach(fd, path);
    }
    if (errno != ENOENT || !create) throw_errno(errno, "open " + path.string());

    std::random_device rd;
    std::filesystem::path tmp = path;
    tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
    std::unique_ptr<CacheIndex> built = build(tmp, geometry, mode);
    fault_point("create.before_publish");
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
      built->path_ = path;
      return built;
    }
    int err = errno;
    ::unlink(tmp.c_str());
    if (err != EEXIST) throw_errno(err, "rename " + tmp.string() + " to " + path.string());
  }
  throw_errno(EAGAIN, "open " + path.string() + ": it keeps appearing and vanishing");
}

std::unique_ptr<CacheIndex> CacheIndex::build(const std::filesystem::path& tmp,
                                              const IndexGeometry& wanted, mode_t mode) {
  const IndexGeometry g = resolved(wanted);
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw_errno(errno, "create " + tmp.string());
  FdCloser closer{fd};
  auto fail = [&](int err, const std::string& what) {
    ::unlink(tmp.c_str());
    throw_errno(err, what + " " + tmp.string());
  };
  const uint64_t segment_size = segment_size_for(g);
  const uint64_t file_size = kSegmentOffset + segment_size;
  if (::ftruncate(fd, static_cast<off_t>(file_size)) < 0) fail(errno, "resize");
  void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) fail(errno, "map");
  std::unique_ptr<CacheIndex> index(new CacheIndex(tmp, base, file_size));

  // The file is fresh (zeros) and nobody else can see it yet.
  IndexHeader* h = new (base) IndexHeader{};
  std::memcpy(h->magic, kIndexMagic, sizeof h->magic);
  h->layout_version = kLayoutVersion;
  h->abi = this_build_abi();
  h->file_size = file_size;
  h->segment_offset = kSegmentOffset;
  h->segment_size = segment_size;
  h->max_entries = g.max_entries;
  h->bucket_count = bucket_count_for(g.max_entries);
  h->max_leases = g.max_leases;
  h->max_segments = g.max_segments;
  h->max_slots = g.max_slots;
  h->page_size = g.page_size;
  h->segment_bytes = g.segment_bytes;

  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int r = pthread_mutex_init(&h->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (r != 0) fail(r, "init the lock of");

  try {
    index->segment_ = std::make_unique<Segment>(
        bip::create_only, static_cast<char*>(base) + kSegmentOffset, segment_size);
    index->index_ = index->segment_->construct<Index>(kIndexObjectName)(
        g.max_entries, h->bucket_count, g.max_leases, g.max_segments, g.max_slots,
        index->segment_->get_segment_manager());
  } catch (const bip::bad_alloc&) {
    ::unlink(tmp.c_str());
    throw std::logic_error("volfs cache: index segment sized too small (a bug)");
  }

  h->free_head = kNil;
  for (uint32_t i = g.max_entries; i-- > 0;) {
    index->entry(i).hash_next = h->free_head;
    h->free_head = i;
  }
  h->lru_head = h->lru_tail = kNil;
  for (ClassFreeList& c : h->classes) c = ClassFreeList{kNil, kNil, 0, 0};
  h->next_value_id = 1;
  h->next_serial = 1;
  h->next_file_id = 1;
  h->tick = 1;
  h->ready = kIndexReady;
  return index;
}

std::unique_ptr<CacheIndex> CacheIndex::attach(int fd, const std::filesystem::path& path) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) throw_errno(errno, "stat " + path.string());
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < sizeof(IndexHeader)) {
    throw_mismatch(path, "not a volfs cache index (" + std::to_string(file_size) +
                             " bytes, too small for a header)");
  }
  // Validate a private copy: nothing in the file is trusted before this.
  IndexHeader h;
  ssize_t n = ::pread(fd, &h, sizeof h, 0);
  if (n != static_cast<ssize_t>(sizeof h)) {
    throw_errno(n < 0 ? errno : EIO, "read the header of " + path.string());
  }
  if (std::memcmp(h.magic, kIndexMagic, sizeof h.magic) != 0) {
    throw_mismatch(path, "not a volfs cache index (bad magic)");
  }
  if (h.layout_version != kLayoutVersion) {
    throw_mismatch(path, "layout version " + std::to_string(h.layout_version) +
                             ", this build reads version " + std::to_string(kLayoutVersion));
  }
  if (std::string diff = abi_difference(h.abi, this_build_abi()); !diff.empty()) {
    throw_mismatch(path, diff);
  }
  if (h.ready != kIndexReady) throw_mismatch(path, "index not completely built");
  const IndexGeometry hg{h.max_entries, h.max_leases,    h.max_segments,
                         h.max_slots,   h.segment_bytes, h.page_size};
  if (h.file_size != file_size || h.segment_offset != kSegmentOffset ||
      h.segment_size > file_size - kSegmentOffset || !geometry_ok(hg) ||
      h.bucket_count != bucket_count_for(h.max_entries)) {
    throw_mismatch(path, "inconsistent geometry in the header (file of " +
                             std::to_string(file_size) + " bytes, header says " +
                             std::to_string(h.file_size) + ")");
  }

  void* base = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) throw_errno(errno, "map " + path.string());
  std::unique_ptr<CacheIndex> index(new CacheIndex(path, base, file_size));
  index->segment_ = std::make_unique<Segment>(
      bip::open_only, static_cast<char*>(base) + kSegmentOffset, h.segment_size);
  // The segment is immutable after creation, so an unlocked find is safe.
  auto [found, count] = index->segment_->find<Index>(kIndexObjectName);
  if (!found || count != 1 || found->entries.size() != h.max_entries ||
      found->buckets.size() != h.bucket_count || found->leases.size() != h.max_leases ||
      found->segments.size() != h.max_segments || found->slots.size() != h.max_slots) {
    throw_mismatch(path, "the index object in the segment is missing or of another size");
  }
  index->index_ = found;
  return index;
}

// ---- Hash chains, LRU list ----

void CacheIndex::link_hash(uint32_t i) {
  uint32_t b = bucket_of(entry(i).key_hash);
  entry(i).hash_next = index_->buckets[b];
  index_->buckets[b] = i;
}

void CacheIndex::unlink_hash(uint32_t i) {
  uint32_t* link = &index_->buckets[bucket_of(entry(i).key_hash)];
  while (*link != kNil && *link != i) link = &entry(*link).hash_next;
  assert(*link == i && "a live entry is on its chain");
  *link = entry(i).hash_next;
  entry(i).hash_next = kNil;
}

void CacheIndex::link_lru_front(uint32_t i) {
  IndexHeader& h = header();
  Entry& e = entry(i);
  e.lru_prev = kNil;
  e.lru_next = h.lru_head;
  if (h.lru_head != kNil) entry(h.lru_head).lru_prev = i;
  h.lru_head = i;
  if (h.lru_tail == kNil) h.lru_tail = i;
}

void CacheIndex::unlink_lru(uint32_t i) {
  IndexHeader& h = header();
  Entry& e = entry(i);
  if (e.lru_prev != kNil) {
    entry(e.lru_prev).lru_next = e.lru_next;
  } else {
    h.lru_head = e.lru_next;
  }
  if (e.lru_next != kNil) {
    entry(e.lru_next).lru_prev = e.lru_prev;
  } else {
    h.lru_tail = e.lru_prev;
  }
  e.lru_prev = e.lru_next = kNil;
}

uint32_t CacheIndex::find(std::string_view key, uint64_t key_hash) const {
  for (uint32_t i = index_->buckets[bucket_of(key_hash)]; i != kNil; i = entry(i).hash_next) {
    const Entry& e = entry(i);
    if (e.key_hash == key_hash && e.key_size == key.size() &&
        std::memcmp(e.key, key.data(), key.size()) == 0) {
      return i;
    }
  }
  return kNil;
}

uint32_t CacheIndex::find_value(uint64_t value_id, uint32_t hint) const {
  if (value_id == 0) return kNil;
  if (hint < max_entries()) {
    const Entry& e = entry(hint);
    if (e.state == kEntryLive && e.value_id == value_id) return hint;
  }
  for (uint32_t i = 0; i < max_entries(); ++i) {
    const Entry& e = entry(i);
    if (e.state == kEntryLive && e.value_id == value_id) return i;
  }
  return kNil;
}

uint32_t CacheIndex::allocate_entry() {
  IndexHeader& h = header();
  uint32_t i = h.free_head;
  if (i == kNil) return kNil;
  assert(entry(i).state == kEntryFree);
  h.free_head = entry(i).hash_next;
  entry(i).hash_next = kNil;
  return i;
}

void CacheIndex::publish_entry(uint32_t i) {
  IndexHeader& h = header();
  Entry& e = entry(i);
  assert(e.state == kEntryFree);
  e.last_use = ++h.tick;
  e.state = kEntryLive;  // the commit point
  fault_point("publish.after_commit");
  if (e.segment != kNil) slot_record(slot_index(e.segment, e.slot)).user = i;
  link_hash(i);
  link_lru_front(i);
  ++h.live_entries;
  h.live_bytes += e.size;
}

void CacheIndex::remove_entry(uint32_t i) {
  IndexHeader& h = header();
  Entry& e = entry(i);
  assert(e.state == kEntryLive);
  e.state = kEntryFree;  // the commit point
  fault_point("remove.after_commit");
  unlink_hash(i);
  unlink_lru(i);
  --h.live_entries;
  h.live_bytes -= e.size;
  e.hash_next = h.free_head;
  h.free_head = i;
  if (e.segment != kNil) {
    uint32_t g = slot_index(e.segment, e.slot);
    assert(slot_record(g).user == i);
    // Free, though readers may still pin it: take_free_slot skips it until
    // their pins are gone.
    push_free_slot(g);
  }
}

void CacheIndex::touch(uint32_t i) {
  entry(i).last_use = ++header().tick;
  if (header().lru_head == i) return;
  unlink_lru(i);
  link_lru_front(i);
}

uint32_t CacheIndex::lru_victim(const SlotBusy& busy, uint32_t cls) const {
  for (uint32_t i = header().lru_tail; i != kNil; i = entry(i).lru_prev) {
    const Entry& e = entry(i);
    if (e.segment == kNil) {
      if (cls == kSizeClasses) return i;
      continue;
    }
    if (cls != kSizeClasses && segment(e.segment).size_class != cls) continue;
    if (!busy(e.segment, e.slot)) return i;
  }
  return kNil;
}

// ---- Segments and slots ----

uint32_t CacheIndex::size_class_for(uint64_t size) const {
  const uint64_t page = header().page_size;
  const uint64_t pages = (size + page - 1) / page;
  uint32_t c = 0;
  while (c < kSizeClasses && (uint64_t{1} << c) < pages) ++c;
  return c;
}

uint32_t CacheIndex::plan_segment(uint32_t c, SegmentRecord* plan) {
  IndexHeader& h = header();
  assert(c < kSizeClasses);
  uint32_t s = 0;
  while (s < max_segments() && segment(s).state != kSegmentFree) ++s;
  if (s == max_segments()) return kNil;
  SegmentRecord r{};
  r.size_class = c;
  r.slot_bytes = slot_bytes(c);
  r.slot_count = slots_per_segment(h.segment_bytes, r.slot_bytes);
  if (r.slot_count > max_slots() - h.slots_used) {
    // The slot table's last records still make a (smaller) segment.
    r.slot_count = max_slots() - h.slots_used;
    if (r.slot_count == 0) return kNil;
  }
  const uint64_t words = uint64_t{r.slot_count} * sizeof(volfs_slot_word);
  r.data_offset = (words + h.page_size - 1) / h.page_size * h.page_size;
  r.file_size = r.data_offset + uint64_t{r.slot_count} * r.slot_bytes;
  r.first_slot = h.slots_used;
  r.file_id = h.next_file_id++;  // never reused, even if this plan is dropped
  r.state = kSegmentFree;
  *plan = r;
  return s;
}

void CacheIndex::publish_segment(uint32_t s, const SegmentRecord& plan) {
  IndexHeader& h = header();
  assert(segment(s).state == kSegmentFree && plan.first_slot == h.slots_used);
  SegmentRecord& r = segment(s);
  r = plan;
  r.state = kSegmentReady;  // the commit point
  fault_point("segment.after_commit");
  h.slots_used = r.first_slot + r.slot_count;
  ++h.classes[r.size_class].segments;
  ++h.counters.segments_created;
  for (uint32_t k = 0; k < r.slot_count; ++k) {
    SlotRecord& sr = slot_record(r.first_slot + k);
    sr.segment = s;
    push_free_slot(r.first_slot + k);
  }
}

void CacheIndex::push_free_slot(uint32_t g) {
  SlotRecord& sr = slot_record(g);
  ClassFreeList& c = header().classes[segment(sr.segment).size_class];
  sr.user = kNil;
  sr.next = kNil;
  if (c.tail == kNil) {
    c.head = g;
  } else {
    slot_record(c.tail).next = g;
  }
  c.tail = g;
  ++c.count;
}

uint32_t CacheIndex::take_free_slot(uint32_t cls, const SlotBusy& busy) {
  ClassFreeList& c = header().classes[cls];
  // Each free slot is looked at once: a pinned one goes to the back.
  for (uint32_t n = c.count; n > 0; --n) {
    uint32_t g = c.head;
    SlotRecord& sr = slot_record(g);
    // Asked before the slot leaves the list: if busy() throws, nothing moved.
    const bool pinned = busy(sr.segment, g - segment(sr.segment).first_slot);
    c.head = sr.next;
    if (c.head == kNil) c.tail = kNil;
    --c.count;
    if (!pinned) {
      sr.user = kSlotWriting;
      sr.next = kNil;
      return g;
    }
    push_free_slot(g);
  }
  return kNil;
}

void CacheIndex::free_slot(uint32_t g) {
  assert(slot_record(g).user == kSlotWriting);
  push_free_slot(g);
}

uint64_t CacheIndex::free_slots() const {
  uint64_t n = 0;
  for (const ClassFreeList& c : header().classes) n += c.count;
  return n;
}

// ---- Leases ----

uint32_t CacheIndex::add_lease(const Lease& l) {
  IndexHeader& h = header();
  const uint32_t n = max_leases();
  uint32_t start = h.lease_hint < n ? h.lease_hint : 0;
  for (uint32_t k = 0; k < n; ++k) {
    uint32_t i = (start + k) % n;
    Lease& slot = lease(i);
    if (slot.kind != kLeaseFree) continue;
    slot.pid = l.pid;
    slot.start_time = l.start_time;
    slot.value_id = l.value_id;
    slot.segment = l.segment;
    slot.slot = l.slot;
    slot.serial = h.next_serial++;
    slot.kind = l.kind;  // the commit point
    h.lease_hint = (i + 1) % n;
    return i;
  }
  return kNil;
}

uint32_t CacheIndex::add_write_lease(const ProcessIdentity& owner, uint32_t g, uint64_t* value_id) {
  assert(slot_record(g).user == kSlotWriting);
  Lease l{};
  l.kind = kLeaseWrite;
  l.pid = owner.pid;
  l.start_time = owner.start_time;
  l.value_id = header().next_value_id;
  l.segment = slot_record(g).segment;
  l.slot = g - segment(l.segment).first_slot;
  uint32_t i = add_lease(l);
  if (i != kNil) {
    ++header().next_value_id;
    *value_id = l.value_id;
  }
  return i;
}

void CacheIndex::release_write_lease(uint32_t l) {
  assert(lease(l).kind == kLeaseWrite);
  lease(l).kind = kLeaseFree;
}

bool CacheIndex::lease_is(uint32_t l, uint64_t serial, pid_t pid) const {
  if (l >= max_leases()) return false;
  const Lease& lz = lease(l);
  return lz.kind != kLeaseFree && lz.serial == serial && lz.pid == pid;
}

size_t CacheIndex::reclaim_leases(const std::function<bool(const ProcessIdentity&)>& alive) {
  size_t reclaimed = 0;
  // One verdict per owner per pass.
  std::vector<std::pair<ProcessIdentity, bool>> verdicts;
  auto is_alive = [&](const ProcessIdentity& who) {
    for (auto& [p, v] : verdicts) {
      if (p.pid == who.pid && p.start_time == who.start_time) return v;
    }
    bool v = alive(who);
    verdicts.emplace_back(who, v);
    return v;
  };
  for (uint32_t l = 0; l < max_leases(); ++l) {
    Lease& lz = lease(l);
    if (lz.kind == kLeaseFree) continue;
    if (is_alive(ProcessIdentity{lz.pid, lz.start_time})) continue;
    ++reclaimed;
    lz.kind = kLeaseFree;  // the commit point
    // A value the dead writer managed to publish holds the slot and stays;
    // an unpublished one is abandoned. Its pin went with the writer's open
    // file (the daemon cleared the bit); until then take_free_slot skips it.
    uint32_t g = slot_index(lz.segment, lz.slot);
    if (slot_record(g).user == kSlotWriting) free_slot(g);
  }
  header().counters.leases_reclaimed += reclaimed;
  return reclaimed;
}

// ---- Recovery ----

void CacheIndex::rebuild() {
  IndexHeader& h = header();
  const uint32_t n = max_entries();

  // 0. Authoritative: the ready segments. Their slots must tile the slot
  // table from 0 without overlap; a record that breaks that is dropped (its
  // file becomes garbage, its entries are freed below).
  uint32_t slots_used = 0;
  for (ClassFreeList& c : h.classes) c = ClassFreeList{kNil, kNil, 0, 0};
  {
    std::vector<uint32_t> ready;
    for (uint32_t s = 0; s < max_segments(); ++s) {
      SegmentRecord& r = segment(s);
      if (r.state != kSegmentReady) {
        r.state = kSegmentFree;
        continue;
      }
      if (r.size_class >= kSizeClasses || r.slot_count == 0 ||
          r.slot_bytes != slot_bytes(r.size_class) ||
          uint64_t{r.first_slot} + r.slot_count > max_slots()) {
        r.state = kSegmentFree;
        continue;
      }
      ready.push_back(s);
    }
    std::sort(ready.begin(), ready.end(), [&](uint32_t a, uint32_t b) {
      return segment(a).first_slot < segment(b).first_slot;
    });
    for (uint32_t s : ready) {
      SegmentRecord& r = segment(s);
      if (r.first_slot != slots_used) {
        r.state = kSegmentFree;
        continue;
      }
      for (uint32_t k = 0; k < r.slot_count; ++k) {
        slot_record(r.first_slot + k) = SlotRecord{kNil, kNil, s, 0};
      }
      slots_used += r.slot_count;
      ++h.classes[r.size_class].segments;
    }
  }
  h.slots_used = slots_used;
  auto slot_ok = [&](uint32_t seg, uint32_t k) {
    return seg < max_segments() && segment(seg).state == kSegmentReady &&
           k < segment(seg).slot_count;
  };

  // 1. Authoritative: which entries are live. A live entry must be
  // well-formed and name a slot of a ready segment; of two live entries with
  // one key (a put killed between publishing the new value and removing the
  // old), the newer value wins.
  std::unordered_map<std::string_view, uint32_t> by_key;
  uint64_t max_value_id = 0;
  uint64_t max_tick = h.tick;
  for (uint32_t i = 0; i < n; ++i) {
    Entry& e = entry(i);
    if (e.state != kEntryLive) {
      e.state = kEntryFree;
      continue;
    }
    bool ok = e.key_size >= 1 && e.key_size <= kMaxKeySize;
    if (e.segment == kNil) {
      ok = ok && e.size == 0;
    } else {
      ok =
          ok && e.size > 0 && slot_ok(e.segment, e.slot) && e.size <= segment(e.segment).slot_bytes;
    }
    if (!ok) {
      e.state = kEntryFree;
      continue;
    }
    e.key_hash = checksum64(e.key, e.key_size);
    std::string_view key(e.key, e.key_size);
    auto [it, inserted] = by_key.emplace(key, i);
    if (!inserted) {
      uint32_t other = it->second;
      if (entry(other).value_id < e.value_id) {
        entry(other).state = kEntryFree;
        it->second = i;
      } else {
        e.state = kEntryFree;
      }
    }
  }

  // 2. Derived: chains, free list, totals, slot users. Two live entries in
  // one slot cannot both be right: the newer value keeps it.
  std::fill(index_->buckets.begin(), index_->buckets.end(), kNil);
  for (uint32_t i = 0; i < n; ++i) {
    Entry& e = entry(i);
    if (e.state != kEntryLive || e.segment == kNil) continue;
    SlotRecord& sr = slot_record(slot_index(e.segment, e.slot));
    if (sr.user == kNil) {
      sr.user = i;
    } else if (entry(sr.user).value_id < e.value_id) {
      entry(sr.user).state = kEntryFree;
      sr.user = i;
    } else {
      e.state = kEntryFree;
    }
  }
  h.free_head = kNil;
  h.live_entries = 0;
  h.live_bytes = 0;
  std::vector<uint32_t> live;
  for (uint32_t i = n; i-- > 0;) {
    Entry& e = entry(i);
    e.lru_prev = e.lru_next = kNil;
    if (e.state == kEntryLive) {
      link_hash(i);
      live.push_back(i);
      ++h.live_entries;
      h.live_bytes += e.size;
      max_value_id = std::max(max_value_id, e.value_id);
      max_tick = std::max(max_tick, e.last_use);
    } else {
      e.hash_next = h.free_head;
      h.free_head = i;
    }
  }

  // 3. Write leases hold their slots unless an entry does (published).
  uint64_t max_serial = 0;
  for (uint32_t l = 0; l < max_leases(); ++l) {
    Lease& lz = lease(l);
    if (lz.kind != kLeaseWrite || !slot_ok(lz.segment, lz.slot)) lz.kind = kLeaseFree;
    if (lz.kind == kLeaseFree) continue;
    max_serial = std::max(max_serial, lz.serial);
    max_value_id = std::max(max_value_id, lz.value_id);
    SlotRecord& sr = slot_record(slot_index(lz.segment, lz.slot));
    if (sr.user == kNil) sr.user = kSlotWriting;
  }

  // 4. Free slots, in slot order.
  for (uint32_t g = 0; g < slots_used; ++g) {
    if (slot_record(g).user == kNil) push_free_slot(g);
  }

  // 5. The LRU list, most recent first.
  std::sort(live.begin(), live.end(),
            [&](uint32_t a, uint32_t b) { return entry(a).last_use > entry(b).last_use; });
  h.lru_head = h.lru_tail = kNil;
  for (auto it = live.rbegin(); it != live.rend(); ++it) link_lru_front(*it);

  h.tick = max_tick + 1;
  h.next_value_id = std::max(h.next_value_id, max_value_id + 1);
  h.next_serial = std::max(h.next_serial, max_serial + 1);
  uint64_t max_file_id = 0;
  for (uint32_t s = 0; s < max_segments(); ++s) {
    if (segment(s).state == kSegmentReady) max_file_id = std::max(max_file_id, segment(s).file_id);
  }
  h.next_file_id = std::max(h.next_file_id, max_file_id + 1);
  if (h.lease_hint >= max_leases()) h.lease_hint = 0;
  assert(check().empty());
}

std::string CacheIndex::check() const {
  const IndexHeader& h = header();
  const uint32_t n = max_entries();
  std::vector<uint8_t> seen(n, 0);  // 1: on a chain, 2: on the free list
  uint32_t live = 0;
  uint64_t bytes = 0;
  for (uint32_t b = 0; b < h.bucket_count; ++b) {
    for (uint32_t i = index_->buckets[b]; i != kNil; i = entry(i).hash_next) {
      if (i >= n || seen[i]) return "chain of bucket " + std::to_string(b) + " is broken";
      seen[i] = 1;
      const Entry& e = entry(i);
      if (e.state != kEntryLive) return "free entry " + std::to_string(i) + " on a chain";
      if (bucket_of(e.key_hash) != b) return "entry " + std::to_string(i) + " in the wrong bucket";
      if (e.key_hash != checksum64(e.key, e.key_size)) {
        return "entry " + std::to_string(i) + " has a wrong key hash";
      }
      if (find(std::string_view(e.key, e.key_size), e.key_hash) != i) {
        return "key of entry " + std::to_string(i) + " is live twice";
      }
      ++live;
      bytes += e.size;
    }
  }
  for (uint32_t i = h.free_head; i != kNil; i = entry(i).hash_next) {
    if (i >= n || seen[i]) return "free list is broken";
    if (entry(i).state != kEntryFree) return "live entry on the free list";
    seen[i] = 2;
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (!seen[i]) return "entry " + std::to_string(i) + " is neither live nor free";
  }
  if (live != h.live_entries) return "live_entries is off";
  if (bytes != h.live_bytes) return "live_bytes is off";
  uint32_t lru = 0;
  uint32_t prev = kNil;
  for (uint32_t i = h.lru_head; i != kNil; prev = i, i = entry(i).lru_next) {
    if (i >= n || seen[i] != 1 || ++lru > live) return "LRU list is broken";
    if (entry(i).lru_prev != prev) return "LRU back link is broken";
    if (prev != kNil && entry(prev).last_use < entry(i).last_use) return "LRU list out of order";
  }
  if (lru != live || h.lru_tail != prev) return "LRU list does not hold every live entry";

  // Segments tile the slot table; each slot's user agrees with the entries
  // and leases; every other slot is on its class's free list exactly once.
  std::vector<uint32_t> owner(h.slots_used, kNil);  // segment of each slot
  uint32_t segments_of[kSizeClasses] = {};
  for (uint32_t s = 0; s < max_segments(); ++s) {
    const SegmentRecord& r = segment(s);
    if (r.state == kSegmentFree) continue;
    if (r.state != kSegmentReady || r.size_class >= kSizeClasses) {
      return "segment " + std::to_string(s) + " is broken";
    }
    if (uint64_t{r.first_slot} + r.slot_count > h.slots_used) {
      return "segment " + std::to_string(s) + " lies beyond slots_used";
    }
    ++segments_of[r.size_class];
    for (uint32_t k = 0; k < r.slot_count; ++k) {
      if (owner[r.first_slot + k] != kNil) return "two segments share a slot";
      owner[r.first_slot + k] = s;
    }
  }
  std::vector<uint32_t> want(h.slots_used, kNil);
  for (uint32_t i = 0; i < n; ++i) {
    const Entry& e = entry(i);
    if (seen[i] != 1 || e.segment == kNil) continue;
    if (e.segment >= max_segments() || segment(e.segment).state != kSegmentReady ||
        e.slot >= segment(e.segment).slot_count) {
      return "entry " + std::to_string(i) + " names no slot";
    }
    uint32_t g = slot_index(e.segment, e.slot);
    if (want[g] != kNil) return "two live entries share slot " + std::to_string(g);
    want[g] = i;
  }
  for (uint32_t l = 0; l < max_leases(); ++l) {
    const Lease& lz = lease(l);
    if (lz.kind == kLeaseFree) continue;
    if (lz.kind != kLeaseWrite) return "lease of unknown kind";
    if (lz.value_id >= h.next_value_id) return "lease of a value id not handed out yet";
    if (lz.segment >= max_segments() || segment(lz.segment).state != kSegmentReady ||
        lz.slot >= segment(lz.segment).slot_count) {
      return "lease " + std::to_string(l) + " names no slot";
    }
    uint32_t g = slot_index(lz.segment, lz.slot);
    if (want[g] == kNil) want[g] = kSlotWriting;
  }
  std::vector<uint8_t> on_free(h.slots_used, 0);
  for (uint32_t c = 0; c < kSizeClasses; ++c) {
    const ClassFreeList& fl = h.classes[c];
    if (fl.segments != segments_of[c]) return "segment count of class " + std::to_string(c);
    uint32_t count = 0, last = kNil;
    for (uint32_t g = fl.head; g != kNil; last = g, g = slot_record(g).next) {
      if (g >= h.slots_used || on_free[g] || ++count > fl.count) {
        return "free slot list of class " + std::to_string(c) + " is broken";
      }
      on_free[g] = 1;
      if (owner[g] == kNil || segment(owner[g]).size_class != c) {
        return "slot " + std::to_string(g) + " on the wrong free list";
      }
    }
    if (count != fl.count || fl.tail != last)
      return "free slot count of class " + std::to_string(c);
  }
  for (uint32_t g = 0; g < h.slots_used; ++g) {
    const SlotRecord& sr = slot_record(g);
    if (owner[g] == kNil) return "slot " + std::to_string(g) + " belongs to no segment";
    if (sr.segment != owner[g]) return "slot " + std::to_string(g) + " names the wrong segment";
    if (sr.user != want[g]) return "user of slot " + std::to_string(g) + " is off";
    if ((sr.user == kNil) != (on_free[g] == 1)) {
      return "slot " + std::to_string(g) + (on_free[g] ? " is free and used" : " is lost");
    }
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (seen[i] == 1 && entry(i).value_id >= h.next_value_id) {
      return "entry " + std::to_string(i) + " has a value id not handed out yet";
    }
  }
  return {};
}

// ---- The lock ----

IndexLock::IndexLock(CacheIndex& index, std::chrono::milliseconds timeout) : index_(index) {
  IndexHeader& h = index.header();
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer (GCC 12) intercepts pthread_mutex_timedlock but not
  // pthread_mutex_clocklock, and would report every unlock as one of an
  // unlocked mutex. Same lock, deadline on the realtime clock.
  constexpr clockid_t kClock = CLOCK_REALTIME;
#else
  constexpr clockid_t kClock = CLOCK_MONOTONIC;  // immune to clock changes
#endif
  // A free lock is taken without reading the clock for a deadline (a
  // trylock answers EOWNERDEAD as a lock does); only a busy one is waited
  // for, until the deadline.
  int r = pthread_mutex_trylock(&h.mutex);
  [[maybe_unused]] const bool waited = r == EBUSY;
  if (r == EBUSY) {
    timespec deadline{};
    clock_gettime(kClock, &deadline);
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    deadline.tv_sec += static_cast<time_t>(ns / 1000000000);
    deadline.tv_nsec += static_cast<long>(ns % 1000000000);
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec += 1;
      deadline.tv_nsec -= 1000000000;
    }
#if defined(__SANITIZE_THREAD__)
    r = pthread_mutex_timedlock(&h.mutex, &deadline);
#else
    r = pthread_mutex_clocklock(&h.mutex, kClock, &deadline);
#endif
  }
#if defined(__SANITIZE_THREAD__)
  // Its timedlock interceptor records only a 0 return as an acquisition
  // (its trylock one takes EOWNERDEAD too): tell it about an EOWNERDEAD one.
  if (r == EOWNERDEAD && waited) {
    __tsan_mutex_pre_lock(&h.mutex, 0);
    __tsan_mutex_post_lock(&h.mutex, 0, 0);
  }
#endif
  if (r == EOWNERDEAD) {
    // The last owner died inside a critical section. Rebuild the derived
    // fields before anyone trusts them; if that fails, unlocking without
    // pthread_mutex_consistent makes the lock ENOTRECOVERABLE for all,
    // which is better than handing out a corrupt index.
    try {
      index.rebuild();
    } catch (...) {
      pthread_mutex_unlock(&h.mutex);
      throw;
    }
    ++h.counters.lock_recoveries;
    pthread_mutex_consistent(&h.mutex);
    recovered_ = true;
  } else if (r == ETIMEDOUT) {
    throw std::system_error(
        ETIMEDOUT, std::generic_category(),
        "volfs cache: " + index.path().string() + ": lock not acquired within " +
            std::to_string(timeout.count()) + " ms (held by pid " +
            std::to_string(__atomic_load_n(&h.lock_owner, __ATOMIC_RELAXED)) + ", still alive)");
  } else if (r == ENOTRECOVERABLE) {
    throw std::system_error(r, std::generic_category(),
                            "volfs cache: " + index.path().string() +
                                ": lock not recoverable (a recovery failed); remove the cache");
  } else if (r != 0) {
    throw std::system_error(r, std::generic_category(),
                            "volfs cache: lock " + index.path().string());
  }
  // Read by error messages of waiters without the lock: atomic, relaxed
  // (it is only a hint).
  __atomic_store_n(&h.lock_owner, current_pid(), __ATOMIC_RELAXED);
}

IndexLock::~IndexLock() {
  IndexHeader& h = index_.header();
  __atomic_store_n(&h.lock_owner, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&h.mutex);
}

}  // namespace volfs::cache_detail
