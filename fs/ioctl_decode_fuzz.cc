// libFuzzer target: decode_ioctl (ioctl_decode.h) on arbitrary commands and buffers, against an
// oracle written from volfs.h rather than from the decoder. The input buffer is exactly as long
// as the caller says, so ASan catches any read past it; a decoded request must carry the
// caller's bytes and a batch count that keeps ranges[0..count) in bounds. See docs/fuzzing.md.
#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "ioctl_decode.h"

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "ioctl_decode_fuzz: %s failed (cmd %#x)\n", #cond, cmd); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

struct Command {
  unsigned cmd;
  size_t size;    // of its argument struct
  bool per_file;  // needs a regular file opened by open(2)
  bool input;     // _IOW/_IOWR: the caller passes the struct in
};

constexpr Command kCommands[] = {
    {VOLFS_IOC_MARK_VOLATILE, sizeof(volfs_range), true, true},
    {VOLFS_IOC_UNMARK_VOLATILE, sizeof(volfs_range), true, true},
    {VOLFS_IOC_GET_STATUS, sizeof(volfs_status), true, true},
    {VOLFS_IOC_STATS, sizeof(volfs_stats), false, false},
    {VOLFS_IOC_STATS_V1, VOLFS_STATS_V1_SIZE, false, false},
    {VOLFS_IOC_PURGE, sizeof(volfs_purge), false, true},
    {VOLFS_IOC_MARK_BATCH, sizeof(volfs_range_batch), true, true},
    {VOLFS_IOC_UNMARK_BATCH, sizeof(volfs_range_batch), true, true},
    {VOLFS_IOC_SLOT_REGISTER, sizeof(volfs_slot_register), true, true},
    {VOLFS_IOC_SLOT_HOLDER, sizeof(volfs_slot_holder), true, false},
    {VOLFS_IOC_SLOT_UNREGISTER, sizeof(volfs_slot_unregister), true, true},
};

const Command* find(unsigned cmd) {
  for (const Command& c : kCommands) {
    if (c.cmd == cmd) return &c;
  }
  return nullptr;
}

// MARK flags as volfs.h defines them: known bits, priority bits only with HAS_PRIORITY.
bool mark_flags_ok(uint32_t f) {
  const uint32_t known = VOLFS_MARK_STRICT | VOLFS_MARK_HAS_PRIORITY | (0x7u << 8);
  return !(f & ~known) && (!(f & (0x7u << 8)) || (f & VOLFS_MARK_HAS_PRIORITY));
}

// The errno volfs.h promises for a call, or 0.
int expected_err(unsigned cmd, bool on_open_file, const uint8_t* in, size_t in_size,
                 size_t out_size) {
  // STATS of any size from version 1's up (the size is in the command number).
  if (_IOC_TYPE(cmd) == VOLFS_IOC_MAGIC && _IOC_NR(cmd) == _IOC_NR(VOLFS_IOC_STATS) &&
      _IOC_DIR(cmd) == _IOC_READ && _IOC_SIZE(cmd) >= VOLFS_STATS_V1_SIZE) {
    return out_size < _IOC_SIZE(cmd) ? EINVAL : 0;
  }
  const Command* c = find(cmd);
  if (!c || (c->per_file && !on_open_file)) return ENOTTY;
  if ((c->input && in_size < c->size) || out_size < c->size) return EINVAL;
  if (cmd == VOLFS_IOC_MARK_BATCH || cmd == VOLFS_IOC_UNMARK_BATCH) {
    volfs_range_batch b;
    std::memcpy(&b, in, sizeof(b));
    if (b.count < 1 || b.count > VOLFS_BATCH_MAX) return EINVAL;
    if (b.reserved[0] != 0 || b.reserved[1] != 0 || b.reserved[2] != 0) return EINVAL;
    for (uint32_t k = 0; k < b.count; ++k) {
      const uint32_t f = b.ranges[k].flags;
      if (cmd == VOLFS_IOC_UNMARK_BATCH ? f != 0 : !mark_flags_ok(f)) return EINVAL;
    }
  }
  if (cmd == VOLFS_IOC_SLOT_REGISTER) {
    volfs_slot_register g;
    std::memcpy(&g, in, sizeof(g));
    if (g.reserved[0] != 0 || g.reserved[1] != 0) return EINVAL;
    if (!mark_flags_ok(g.flags) || (g.flags & VOLFS_MARK_STRICT)) return EINVAL;
  }
  if (cmd == VOLFS_IOC_SLOT_UNREGISTER) {
    volfs_slot_unregister u;
    std::memcpy(&u, in, sizeof(u));
    if (u.reserved32 != 0 || u.reserved[0] != 0 || u.reserved[1] != 0) return EINVAL;
  }
  if (cmd == VOLFS_IOC_UNMARK_VOLATILE || cmd == VOLFS_IOC_MARK_VOLATILE) {
    volfs_range r;
    std::memcpy(&r, in, sizeof(r));
    if (cmd == VOLFS_IOC_UNMARK_VOLATILE ? r.flags != 0 : !mark_flags_ok(r.flags)) return EINVAL;
  }
  return 0;
}

template <class T>
bool holds(const T& value, const uint8_t* in, bool input) {
  if (input) return std::memcmp(&value, in, sizeof(T)) == 0;
  static const T zero{};
  return std::memcmp(&value, &zero, sizeof(T)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  // A known command most of the time; else a volfs-looking one with other direction, number
  // or size bits, or any 32-bit value at all.
  unsigned cmd;
  uint8_t pick = fdp.ConsumeIntegral<uint8_t>();
  constexpr size_t kKnown = sizeof(kCommands) / sizeof(kCommands[0]);
  if (pick < 192) {
    cmd = kCommands[pick % kKnown].cmd;
  } else if (pick < 224) {
    cmd = _IOC(fdp.ConsumeIntegralInRange<unsigned>(0, 3), VOLFS_IOC_MAGIC,
               fdp.ConsumeIntegralInRange<unsigned>(0, 11),
               fdp.ConsumeIntegralInRange<unsigned>(0, _IOC_SIZEMASK));
  } else {
    cmd = fdp.ConsumeIntegral<uint32_t>();
  }
  const bool on_open_file = fdp.ConsumeBool();
  // Room for the answer: often just around the struct size, where the off-by-ones are.
  size_t out_size = fdp.ConsumeIntegralInRange<size_t>(0, 2 * sizeof(volfs_range_batch));
  if (const Command* c = find(cmd); c && fdp.ConsumeBool()) {
    out_size = c->size - 1 + fdp.ConsumeIntegralInRange<size_t>(0, 2);
  }
  // The input buffer, on the heap at its exact size: the rest of the input, then zeros, so that
  // a short input makes a whole batch (libFuzzer grows its inputs slowly).
  size_t in_size = fdp.ConsumeIntegralInRange<size_t>(0, 2 * sizeof(volfs_range_batch));
  if (const Command* c = find(cmd); c && fdp.ConsumeBool()) {
    in_size = c->size - 1 + fdp.ConsumeIntegralInRange<size_t>(0, 2);
  }
  std::vector<uint8_t> in = fdp.ConsumeBytes<uint8_t>(in_size);
  in.resize(in_size);
  const uint8_t* in_ptr = in.empty() ? nullptr : in.data();

  volfs::IoctlRequest r = volfs::decode_ioctl(cmd, on_open_file, in_ptr, in.size(), out_size);
  FUZZ_CHECK(r.err == expected_err(cmd, on_open_file, in_ptr, in.size(), out_size));
  if (r.err != 0) return 0;

  FUZZ_CHECK(r.cmd == cmd);
  if (volfs::is_stats(cmd)) return 0;  // output only, of any version's size: nothing decoded
  switch (cmd) {
    case VOLFS_IOC_PURGE:
      FUZZ_CHECK(holds(r.purge, in_ptr, true));
      break;
    case VOLFS_IOC_GET_STATUS:
      FUZZ_CHECK(holds(r.status, in_ptr, true));
      break;
    case VOLFS_IOC_MARK_BATCH:
    case VOLFS_IOC_UNMARK_BATCH: {
      FUZZ_CHECK(holds(r.batch, in_ptr, true));
      FUZZ_CHECK(r.batch.count >= 1 && r.batch.count <= VOLFS_BATCH_MAX);
      // What the adapter does next: walk the ranges.
      uint64_t sum = 0;
      for (uint32_t k = 0; k < r.batch.count; ++k) sum += r.batch.ranges[k].length;
      (void)sum;
      break;
    }
    case VOLFS_IOC_SLOT_REGISTER:
      FUZZ_CHECK(holds(r.slot_register, in_ptr, true));
      break;
    case VOLFS_IOC_SLOT_UNREGISTER:
      FUZZ_CHECK(holds(r.slot_unregister, in_ptr, true));
      break;
    case VOLFS_IOC_SLOT_HOLDER:
      break;  // output only: nothing decoded
    default:
      FUZZ_CHECK(holds(r.range, in_ptr, true));
      break;
  }
  return 0;
}
