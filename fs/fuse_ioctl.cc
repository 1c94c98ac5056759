// FUSE handler for the volfs ioctls (client/include/volfs/volfs.h): decode
// (ioctl_decode.h), check the caller's rights, call the core, reply - possibly
// later, from the purge worker, when the answer must wait for a purge to finish.
#include <volfs/volfs.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "daemon.h"
#include "ioctl_decode.h"

namespace volfs {
namespace {

template <class T>
void reply_struct(fuse_req_t req, const T& v) {
  fuse_reply_ioctl(req, 0, &v, sizeof(v));
}

static_assert(static_cast<unsigned>(PurgeCause::kSizeLimit) == VOLFS_SOURCE_SIZE_LIMIT &&
                  static_cast<unsigned>(PurgeCause::kWatermark) == VOLFS_SOURCE_WATERMARK &&
                  static_cast<unsigned>(PurgeCause::kExplicit) == VOLFS_SOURCE_IOCTL &&
                  static_cast<unsigned>(PurgeCause::kOnMark) == VOLFS_SOURCE_ON_MARK &&
                  static_cast<unsigned>(PurgeCause::kMemAvailable) == VOLFS_SOURCE_MEMAVAIL &&
                  static_cast<unsigned>(PurgeCause::kPsi) == VOLFS_SOURCE_PSI &&
                  static_cast<unsigned>(PurgeCause::kCgroup) == VOLFS_SOURCE_CGROUP &&
                  kPurgeCauses < VOLFS_SOURCES,
              "PurgeCause and VOLFS_SOURCE_* must agree");

void stats(fuse_req_t req, Daemon& d, unsigned cmd, size_t out_size) {
  const size_t want = _IOC_SIZE(cmd);
  if (out_size < want) return (void)fuse_reply_err(req, EINVAL);
  volfs_stats s{};
  AccountingSnapshot a = d.fs.stats();
  PressureStatus p = d.fs.pressure();
  s.page_size = a.page_size;
  s.size_limit_bytes = a.limit_pages * a.page_size;
  s.files = a.files;
  s.resident_pages = a.resident_pages;
  s.volatile_pages = a.volatile_pages;
  s.volatile_resident_pages = a.volatile_resident_pages;
  s.purged_pages = a.purged_pages;
  s.pages_purged_total = a.pages_purged_total;
  s.purge_events_total = a.purge_events_total;
  s.false_purged_total = a.false_purged_total;
  s.unmark_purged_total = a.unmark_purged_total;
  s.unmark_intact_total = a.unmark_intact_total;
  s.mem_available_bytes = p.mem_available_bytes;
  s.mem_min_bytes = p.mem_min_bytes;
  s.cgroup_limit_bytes = p.cgroup_limit_bytes;
  s.cgroup_used_bytes = p.cgroup_used_bytes;
  s.cgroup_min_bytes = p.cgroup_min_bytes;
  s.psi_step_bytes = p.psi_step_bytes;
  s.sources_active = p.active;  // PurgeCause bits are VOLFS_SOURCE_BIT bits
  s.requests = d.requests();    // this STATS request included
  for (size_t k = 0; k < kPurgeCauses; ++k) {
    s.sources[k].signals = a.causes[k].signals;
    s.sources[k].purges = a.causes[k].purges;
    s.sources[k].purged_bytes = a.causes[k].pages * a.page_size;
  }
  // A version 1 reply for anything shorter than ours (only version 1's size
  // can be: is_stats() takes no less).
  const size_t n = want >= sizeof s ? sizeof s : VOLFS_STATS_V1_SIZE;
  s.size = static_cast<uint32_t>(n);
  s.version = VOLFS_STATS_VERSION;
  if (n < sizeof s) {
    // Exactly what a version 1 daemon answered: its reserved words zero.
    s.version = 1;
    std::memset(reinterpret_cast<char*>(&s) + offsetof(volfs_stats, mem_available_bytes), 0,
                VOLFS_STATS_V1_SIZE - offsetof(volfs_stats, mem_available_bytes));
  }
  fuse_reply_ioctl(req, 0, &s, n);
}

// Flags that decode_ioctl found valid, as the core takes them.
MarkOptions options_of(uint32_t flags) {
  const MarkFlags m = mark_flags(flags);
  return MarkOptions{.prio = m.prio, .strict = m.strict};
}

// VOLFS_IOC_MARK_BATCH and VOLFS_IOC_UNMARK_BATCH, decoded: 1..VOLFS_BATCH_MAX ranges, and no
// UNMARK range with flags.
void batch(fuse_req_t req, OpenFile& f, unsigned cmd, const volfs_range_batch& decoded) {
  // Shared: the reply may be sent later, from the purge worker.
  auto b = std::make_shared<volfs_range_batch>(decoded);
  std::span<volfs_range> ranges(b->ranges, b->count);
  Daemon& d = daemon_of(req);
  if (cmd == VOLFS_IOC_MARK_BATCH) {
    std::vector<Filesystem::MarkRequest> marks;
    marks.reserve(ranges.size());
    for (const volfs_range& r : ranges) {
      marks.push_back({ByteRange{r.offset, r.length}, options_of(r.flags)});
    }
    d.fs.mark_batch(f, marks, [req, b](Status s) {
      if (!s.ok()) return (void)fuse_reply_err(req, s.err());
      reply_struct(req, *b);
    });
    return;
  }
  std::vector<ByteRange> unmarks;
  unmarks.reserve(ranges.size());
  for (const volfs_range& r : ranges) unmarks.push_back(ByteRange{r.offset, r.length});
  d.fs.unmark_batch(f, unmarks, [req, b](Result<std::vector<bool>> purged) {
    if (!purged.ok()) return (void)fuse_reply_err(req, purged.err());
    for (size_t k = 0; k < purged->size(); ++k) {
      b->ranges[k].result = (*purged)[k] ? VOLFS_PURGED : VOLFS_INTACT;
    }
    reply_struct(req, *b);
  });
}

// The slot ioctls, decoded; answered at once (they never wait for a purge).
void slot(fuse_req_t req, Daemon& d, OpenFile& f, unsigned cmd, const IoctlRequest& io) {
  if (cmd == VOLFS_IOC_SLOT_HOLDER) {
    Result<uint32_t> h = d.fs.slot_holder(f);
    if (!h.ok()) return (void)fuse_reply_err(req, h.err());
    volfs_slot_holder out{};
    out.holder = *h;
    return reply_struct(req, out);
  }
  if (cmd == VOLFS_IOC_SLOT_UNREGISTER) {
    volfs_slot_unregister u = io.slot_unregister;
    Result<bool> purged = d.fs.unregister_slot(f, u.word_offset);
    if (!purged.ok()) return (void)fuse_reply_err(req, purged.err());
    u.result = *purged ? VOLFS_PURGED : VOLFS_INTACT;
    return reply_struct(req, u);
  }
  volfs_slot_register g = io.slot_register;
  SlotRequest r{.data = ByteRange{g.offset, g.length},
                .word_offset = g.word_offset,
                .count = g.count ? g.count : 1,
                .prio = options_of(g.flags).prio};
  Result<SlotRegistration> reg = d.fs.register_slots(f, r);
  if (!reg.ok()) return (void)fuse_reply_err(req, reg.err());
  g.holder = reg->holder;
  g.result = reg->created ? VOLFS_SLOT_CREATED : VOLFS_SLOT_ATTACHED;
  reply_struct(req, g);
}

void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void*, fuse_file_info* fi,
              unsigned flags, const void* in_buf, size_t in_size, size_t out_size) {
  guarded(req, [&] {
    Daemon& d = daemon_of(req);
    if (flags & FUSE_IOCTL_UNRESTRICTED) {
      fuse_reply_err(req, ENOTTY);
      return;
    }
    // STATS and PURGE work on any file of the mount, directories included; the rest need a
    // regular file opened by open(2).
    const bool on_open_file = !(flags & FUSE_IOCTL_DIR) && fi->fh != 0;
    IoctlRequest io = decode_ioctl(cmd, on_open_file, in_buf, in_size, out_size);
    if (io.err) return (void)fuse_reply_err(req, io.err);
    if (is_stats(cmd)) return stats(req, d, cmd, out_size);
    if (cmd == VOLFS_IOC_PURGE) {
      volfs_purge p = io.purge;
      uid_t uid = fuse_req_ctx(req)->uid;
      if (uid != 0 && uid != d.owner_uid) return (void)fuse_reply_err(req, EPERM);
      d.fs.purge(p.bytes, [req, p](uint64_t bytes) mutable {
        p.purged = bytes;
        reply_struct(req, p);
      });
      return;
    }
    OpenFile& f = file_of(fi);
    (void)ino;
    if (cmd == VOLFS_IOC_GET_STATUS) {
      volfs_status st = io.status;
      // May answer later, from the purge worker, once a purge settled.
      d.fs.range_status(f, ByteRange{st.offset, st.length},
                        [req, st](Result<RangeStatus> r) mutable {
                          if (!r.ok()) return (void)fuse_reply_err(req, r.err());
                          st.nonvolatile_pages = r->nonvolatile_pages;
                          st.volatile_pages = r->volatile_pages;
                          st.purged_pages = r->purged_pages;
                          st.resident_pages = r->resident_pages;
                          st.strict_pages = r->strict_pages;
                          st.slots = r->slots;
                          st.pinned_slots = r->pinned_slots;
                          st.purged_slots = r->purged_slots;
                          reply_struct(req, st);
                        });
      return;
    }
    if (cmd == VOLFS_IOC_MARK_BATCH || cmd == VOLFS_IOC_UNMARK_BATCH) {
      return batch(req, f, cmd, io.batch);
    }
    if (cmd == VOLFS_IOC_SLOT_REGISTER || cmd == VOLFS_IOC_SLOT_HOLDER ||
        cmd == VOLFS_IOC_SLOT_UNREGISTER) {
      return slot(req, d, f, cmd, io);
    }
    volfs_range range = io.range;
    ByteRange br{range.offset, range.length};
    if (cmd == VOLFS_IOC_MARK_VOLATILE) {
      d.fs.mark(f, br, options_of(range.flags), [req, range](Status s) {
        if (!s.ok()) return (void)fuse_reply_err(req, s.err());
        reply_struct(req, range);
      });
      return;
    }
    d.fs.unmark(f, br, [req, range](Result<bool> purged) mutable {
      if (!purged.ok()) return (void)fuse_reply_err(req, purged.err());
      range.result = *purged ? VOLFS_PURGED : VOLFS_INTACT;
      reply_struct(req, range);
    });
  });
}

}  // namespace

void assign_ioctl_operations(fuse_lowlevel_ops& ops) { ops.ioctl = op_ioctl; }

}  // namespace volfs
