// The C++ client API: see volfs/file.h.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <volfs/client.h>
#include <volfs/file.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

namespace volfs {
namespace {

#ifndef FUSE_SUPER_MAGIC
constexpr long kFuseSuperMagic = 0x65735546;
#else
constexpr long kFuseSuperMagic = FUSE_SUPER_MAGIC;
#endif

std::string describe(const std::filesystem::path& p, Range r) {
  std::string s = p.string() + " [" + std::to_string(r.offset) + ", ";
  s += r.length ? std::to_string(r.offset + r.length) + ")" : "end of file)";
  return s;
}

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U  // Linux 6.8
#endif

// The mount's never-reused id, from the kernel's cached attributes (no FUSE
// request), or 0 before Linux 6.8.
uint64_t unique_mount_id(int fd) {
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID_UNIQUE, &stx) < 0) return 0;
  return (stx.stx_mask & STATX_MNT_ID_UNIQUE) ? stx.stx_mnt_id : 0;
}

// Mounts this process has found to be volfs. A unique mount id is never
// given to another mount, so a later open there can skip the two FUSE round
// trips of the check (STATFS and the STATS ioctl).
class KnownMounts {
 public:
  bool contains(uint64_t id) {
    std::lock_guard lock(mu_);
    return std::find(ids_.begin(), ids_.end(), id) != ids_.end();
  }
  void add(uint64_t id) {
    std::lock_guard lock(mu_);
    if (ids_.size() == kMax) ids_.erase(ids_.begin());
    ids_.push_back(id);
  }

 private:
  static constexpr size_t kMax = 16;
  std::mutex mu_;
  std::vector<uint64_t> ids_;
};

KnownMounts& known_mounts() {
  static KnownMounts* k = new KnownMounts;  // never destroyed: usable at exit
  return *k;
}

// True if fd is on a volfs mount: a FUSE filesystem that answers STATS.
bool on_volfs(int fd) {
  const uint64_t mount_id = unique_mount_id(fd);
  if (mount_id && known_mounts().contains(mount_id)) return true;
  struct statfs sfs {};
  if (fstatfs(fd, &sfs) < 0 || sfs.f_type != kFuseSuperMagic) return false;
  volfs_stats s{};
  if (::volfs_get_stats(fd, &s) != 0 || s.version < 1) return false;
  if (mount_id) known_mounts().add(mount_id);
  return true;
}

[[noreturn]] void not_volfs(const std::filesystem::path& path) {
  throw std::system_error(ENOTTY, std::generic_category(),
                          "volfs: " + path.string() + " is not on a volfs mount");
}

int open_checked(const std::filesystem::path& path, int flags, mode_t mode) {
  if (flags & O_CREAT) {
    // Check the directory first, so that a wrong path leaves no file behind.
    std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      throw std::system_error(errno, std::generic_category(), "volfs: open " + dir.string());
    }
    bool ok = on_volfs(dfd);
    ::close(dfd);
    if (!ok) not_volfs(path);
  }
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0)
    throw std::system_error(errno, std::generic_category(), "volfs: open " + path.string());
  if (!on_volfs(fd)) {
    ::close(fd);
    not_volfs(path);
  }
  return fd;
}

}  // namespace

Mapping::~Mapping() {
  if (data_) ::munmap(data_, size_);
}

Mapping::Mapping(Mapping&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

File File::open(const std::filesystem::path& path, int flags, mode_t mode) {
  return File(open_checked(path, flags, mode), path);
}

File File::create(const std::filesystem::path& path, mode_t mode) {
  return open(path, O_RDWR | O_CREAT, mode);
}

File::File(File&& o) noexcept : fd_(std::exchange(o.fd_, -1)), path_(std::move(o.path_)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t File::page_size() { return static_cast<uint64_t>(sysconf(_SC_PAGESIZE)); }

void File::fail(const char* what, Range r) const {
  throw std::system_error(errno, std::generic_category(),
                          std::string("volfs: ") + what + " " + describe(path_, r));
}

void File::fail(const char* what) const {
  throw std::system_error(errno, std::generic_category(),
                          std::string("volfs: ") + what + " " + path_.string());
}

uint64_t File::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) < 0) fail("stat");
  return static_cast<uint64_t>(st.st_size);
}

void File::resize(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) < 0) fail("resize");
}

Mapping File::map(uint64_t offset, uint64_t length, int prot) const {
  if (length == 0) {
    uint64_t sz = size();
    if (offset >= sz) {
      errno = EINVAL;
      fail("map (empty range)", Range{offset, length});
    }
    length = sz - offset;
  }
  void* p = ::mmap(nullptr, length, prot, MAP_SHARED, fd_, static_cast<off_t>(offset));
  if (p == MAP_FAILED) fail("map", Range{offset, length});
  return Mapping(p, length);
}

uint32_t File::mark_flags(MarkOptions o, Range r) const {
  if (o.priority < 0 || o.priority > 7) {
    errno = EINVAL;
    fail("mark_volatile (priority not in 0..7)", r);
  }
  uint32_t flags = VOLFS_MARK_PRIORITY(static_cast<uint32_t>(o.priority));
  if (o.strict) flags |= VOLFS_MARK_STRICT;
  return flags;
}

void File::mark_volatile(Range r, MarkOptions o) {
  volfs_range vr{r.offset, r.length, mark_flags(o, r), 0};
  if (::ioctl(fd_, VOLFS_IOC_MARK_VOLATILE, &vr) < 0) fail("mark_volatile", r);
}

UnmarkResult File::unmark(Range r) {
  volfs_range vr{r.offset, r.length, 0, 0};
  if (::ioctl(fd_, VOLFS_IOC_UNMARK_VOLATILE, &vr) < 0) fail("unmark", r);
  return UnmarkResult(vr.result == VOLFS_PURGED);
}

namespace {

// Sends `ranges` VOLFS_BATCH_MAX at a time with `cmd`; after each batch,
// got(batch) sees the daemon's answer. Returns the first range of a failed
// batch, with errno set, or nullptr.
template <class Got>
const Range* send_batches(int fd, unsigned long cmd, std::span<const Range> ranges, uint32_t flags,
                          Got got) {
  for (size_t at = 0; at < ranges.size(); at += VOLFS_BATCH_MAX) {
    volfs_range_batch b{};
    b.count = static_cast<uint32_t>(std::min<size_t>(VOLFS_BATCH_MAX, ranges.size() - at));
    for (uint32_t k = 0; k < b.count; ++k) {
      b.ranges[k] = volfs_range{ranges[at + k].offset, ranges[at + k].length, flags, 0};
    }
    if (::ioctl(fd, cmd, &b) < 0) return &ranges[at];
    got(b);
  }
  return nullptr;
}

}  // namespace

void File::mark_volatile_ranges(std::span<const Range> ranges, MarkOptions o) {
  if (ranges.empty()) return;
  const uint32_t flags = mark_flags(o, ranges.front());
  if (const Range* bad =
          send_batches(fd_, VOLFS_IOC_MARK_BATCH, ranges, flags, [](const volfs_range_batch&) {})) {
    fail("mark_volatile_ranges (batch starting at)", *bad);
  }
}

std::vector<UnmarkResult> File::unmark_ranges(std::span<const Range> ranges) {
  std::vector<UnmarkResult> out;
  out.reserve(ranges.size());
  if (const Range* bad =
          send_batches(fd_, VOLFS_IOC_UNMARK_BATCH, ranges, 0, [&](const volfs_range_batch& b) {
            for (uint32_t k = 0; k < b.count; ++k) {
              out.emplace_back(b.ranges[k].result == VOLFS_PURGED);
            }
          })) {
    fail("unmark_ranges (batch starting at)", *bad);
  }
  return out;
}

RangeStatus File::status(Range r) const {
  volfs_status st{};
  st.offset = r.offset;
  st.length = r.length;
  if (::ioctl(fd_, VOLFS_IOC_GET_STATUS, &st) < 0) fail("status", r);
  return RangeStatus{st.nonvolatile_pages, st.volatile_pages, st.purged_pages, st.resident_pages,
                     st.strict_pages,      st.slots,          st.pinned_slots, st.purged_slots};
}

volfs_stats File::stats() const {
  volfs_stats s{};
  // Falls back to the version 1 command against an older daemon.
  if (::volfs_get_stats(fd_, &s) < 0) fail("stats");
  return s;
}

uint64_t File::purge(uint64_t bytes) {
  struct volfs_purge p {};
  p.bytes = bytes;
  if (::ioctl(fd_, VOLFS_IOC_PURGE, &p) < 0) fail("purge");
  return p.purged;
}

SlotRegistration File::register_slot(Range data, uint64_t word_offset, MarkOptions o) {
  return register_slots(data, word_offset, 1, o);
}

SlotRegistration File::register_slots(Range data, uint64_t word_offset, uint32_t count,
                                      MarkOptions o) {
  if (o.strict) {
    errno = EINVAL;
    fail("register_slot (slots are never strict)", data);
  }
  const uint32_t flags = mark_flags(o, data);
  SlotRegistration reg;
  int created = 0;
  if (::volfs_register_slots(fd_, data.offset, data.length, word_offset, count, flags, &reg.holder,
                             &created) < 0) {
    fail("register_slot", data);
  }
  reg.created = created != 0;
  return reg;
}

uint32_t File::slot_holder() {
  uint32_t holder = 0;
  if (::volfs_get_slot_holder(fd_, &holder) < 0) fail("slot_holder");
  return holder;
}

UnmarkResult File::unregister_slot(uint64_t word_offset) {
  int purged = 0;
  if (::volfs_unregister_slot(fd_, word_offset, &purged) < 0) {
    fail(("unregister_slot (word at " + std::to_string(word_offset) + ")").c_str());
  }
  return UnmarkResult(purged != 0);
}

UnmarkResult Slot::pin() {
  int r = ::volfs_slot_pin(&slot_);
  if (r < 0) throw std::system_error(errno, std::generic_category(), "volfs: slot pin");
  return UnmarkResult(r == VOLFS_PURGED);
}

void Slot::unpin() {
  // Unpinning a slot this holder does not pin is a bug of the caller; it
  // changes nothing, so no exception (this runs in destructors).
  (void)::volfs_slot_unpin(&slot_);
}

Pin::Pin(File& file, Range r, MarkOptions o)
    : file_(file), range_(r), options_(o), purged_(file.unmark(r).purged()) {}

Pin::~Pin() {
  // A destructor must not throw; a failed re-mark only means the range stays
  // pinned (non-volatile), which loses nothing.
  try {
    file_.mark_volatile(range_, options_);
  } catch (const std::system_error&) {
  }
}

namespace {
File open_any(const std::filesystem::path& path) {
  return File::open(path, O_RDONLY | (std::filesystem::is_directory(path) ? O_DIRECTORY : 0));
}
}  // namespace

volfs_stats stats(const std::filesystem::path& path) { return open_any(path).stats(); }

uint64_t purge(const std::filesystem::path& path, uint64_t bytes) {
  return open_any(path).purge(bytes);
}

}  // namespace volfs
