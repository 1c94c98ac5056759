/* volfs_abi_layout.h: compile-time proof that the ioctl ABI of
 * client/include/volfs/volfs.h has one layout on every architecture.
 *
 * The expected offsets, sizes and command numbers are written out by hand, not
 * computed from the header, so a change of the header that moves a field
 * fails here. They hold on i386 too: there a uint64_t member is only 4-byte
 * aligned, so any 64-bit field at an offset that is not a multiple of 8 would
 * move; every one below sits on a multiple of 8 and every struct size is a
 * multiple of 8. Included by volatile_test.cc (C++) and compiled with -m32
 * as C by the volfs_abi_layout_i386 test when the compiler can.
 */
#ifndef VOLFS_TESTS_INTEGRATION_VOLFS_ABI_LAYOUT_H_
#define VOLFS_TESTS_INTEGRATION_VOLFS_ABI_LAYOUT_H_

#include <stddef.h>
#include <volfs/volfs.h>

#ifdef __cplusplus
#define VOLFS_LAYOUT_ASSERT(cond, what) static_assert(cond, what)
#else
#define VOLFS_LAYOUT_ASSERT(cond, what) _Static_assert(cond, what)
#endif

/* struct volfs_range: 24 bytes. */
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_range) == 24, "volfs_range size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range, offset) == 0, "volfs_range.offset");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range, length) == 8, "volfs_range.length");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range, flags) == 16, "volfs_range.flags");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range, result) == 20, "volfs_range.result");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_range*)0)->flags) == 4, "volfs_range.flags size");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_range*)0)->result) == 4, "volfs_range.result size");

/* struct volfs_status: 80 bytes. */
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_status) == 80, "volfs_status size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, offset) == 0, "volfs_status.offset");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, length) == 8, "volfs_status.length");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, nonvolatile_pages) == 16,
                    "volfs_status.nonvolatile_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, volatile_pages) == 24,
                    "volfs_status.volatile_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, purged_pages) == 32, "volfs_status.purged_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, resident_pages) == 40,
                    "volfs_status.resident_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, strict_pages) == 48, "volfs_status.strict_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, slots) == 56, "volfs_status.slots");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, pinned_slots) == 64, "volfs_status.pinned_slots");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_status, purged_slots) == 72, "volfs_status.purged_slots");

/* struct volfs_source_stats: 24 bytes. */
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_source_stats) == 24, "volfs_source_stats size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_source_stats, signals) == 0,
                    "volfs_source_stats.signals");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_source_stats, purges) == 8, "volfs_source_stats.purges");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_source_stats, purged_bytes) == 16,
                    "volfs_source_stats.purged_bytes");

/* struct volfs_stats: 360 bytes (version 2); its first 168 are version 1's,
 * whose reserved words became the fields at 104..167. */
VOLFS_LAYOUT_ASSERT(VOLFS_STATS_VERSION == 2u, "VOLFS_STATS_VERSION");
VOLFS_LAYOUT_ASSERT(VOLFS_STATS_V1_SIZE == 168u, "VOLFS_STATS_V1_SIZE");
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_stats) == 360, "volfs_stats size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, size) == 0, "volfs_stats.size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, version) == 4, "volfs_stats.version");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_stats*)0)->size) == 4, "volfs_stats.size size");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_stats*)0)->version) == 4, "volfs_stats.version size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, page_size) == 8, "volfs_stats.page_size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, size_limit_bytes) == 16,
                    "volfs_stats.size_limit_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, files) == 24, "volfs_stats.files");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, resident_pages) == 32,
                    "volfs_stats.resident_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, volatile_pages) == 40,
                    "volfs_stats.volatile_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, volatile_resident_pages) == 48,
                    "volfs_stats.volatile_resident_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, purged_pages) == 56, "volfs_stats.purged_pages");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, pages_purged_total) == 64,
                    "volfs_stats.pages_purged_total");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, purge_events_total) == 72,
                    "volfs_stats.purge_events_total");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, false_purged_total) == 80,
                    "volfs_stats.false_purged_total");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, unmark_purged_total) == 88,
                    "volfs_stats.unmark_purged_total");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, unmark_intact_total) == 96,
                    "volfs_stats.unmark_intact_total");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, mem_available_bytes) == 104,
                    "volfs_stats.mem_available_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, mem_min_bytes) == 112,
                    "volfs_stats.mem_min_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, cgroup_limit_bytes) == 120,
                    "volfs_stats.cgroup_limit_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, cgroup_used_bytes) == 128,
                    "volfs_stats.cgroup_used_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, cgroup_min_bytes) == 136,
                    "volfs_stats.cgroup_min_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, psi_step_bytes) == 144,
                    "volfs_stats.psi_step_bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, sources_active) == 152,
                    "volfs_stats.sources_active");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, reserved32) == 156, "volfs_stats.reserved32");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, requests) == 160, "volfs_stats.requests");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_stats, sources) == 168, "volfs_stats.sources");
VOLFS_LAYOUT_ASSERT(VOLFS_SOURCES == 8u, "VOLFS_SOURCES");
VOLFS_LAYOUT_ASSERT(VOLFS_SOURCE_SIZE_LIMIT == 0u && VOLFS_SOURCE_WATERMARK == 1u &&
                        VOLFS_SOURCE_IOCTL == 2u && VOLFS_SOURCE_ON_MARK == 3u &&
                        VOLFS_SOURCE_MEMAVAIL == 4u && VOLFS_SOURCE_PSI == 5u &&
                        VOLFS_SOURCE_CGROUP == 6u,
                    "VOLFS_SOURCE_* indices");

/* struct volfs_purge: 32 bytes. */
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_purge) == 32, "volfs_purge size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_purge, bytes) == 0, "volfs_purge.bytes");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_purge, purged) == 8, "volfs_purge.purged");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_purge, reserved) == 16, "volfs_purge.reserved");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_purge*)0)->reserved) == 16, "volfs_purge.reserved size");

/* struct volfs_range_batch: 16 + 64 * 24 = 1552 bytes. */
VOLFS_LAYOUT_ASSERT(VOLFS_BATCH_MAX == 64u, "VOLFS_BATCH_MAX");
VOLFS_LAYOUT_ASSERT(sizeof(struct volfs_range_batch) == 1552, "volfs_range_batch size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range_batch, count) == 0, "volfs_range_batch.count");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range_batch, reserved) == 4,
                    "volfs_range_batch.reserved");
VOLFS_LAYOUT_ASSERT(sizeof(((struct volfs_range_batch*)0)->reserved) == 12,
                    "volfs_range_batch.reserved size");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_range_batch, ranges) == 16, "volfs_range_batch.ranges");

/* Slots: the word (16 bytes) and the three slot ioctls' structs. */
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_word, word) == 0, "volfs_slot_word.word");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_word, unpinned_ns) == 8,
                    "volfs_slot_word.unpinned_ns");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_register, word_offset) == 16,
                    "volfs_slot_register.word_offset");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_register, flags) == 24, "volfs_slot_register.flags");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_register, holder) == 28,
                    "volfs_slot_register.holder");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_register, result) == 32,
                    "volfs_slot_register.result");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_register, count) == 36, "volfs_slot_register.count");
VOLFS_LAYOUT_ASSERT(offsetof(struct volfs_slot_unregister, result) == 8,
                    "volfs_slot_unregister.result");
VOLFS_LAYOUT_ASSERT(VOLFS_SLOT_HOLDERS == 62u && VOLFS_SLOT_STATE_SHIFT == 62,
                    "slot word encoding");

/* Command numbers: _IOC(dir, 'V' = 0x56, nr, size) = dir << 30 | size << 16 |
 * 0x56 << 8 | nr, with dir 3 for _IOWR and 2 for _IOR (asm-generic, which
 * x86 and x86-64 share). The size is part of the number, so a layout that
 * differed between callers would also change the command. */
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_MARK_VOLATILE == 0xC0185601u, "VOLFS_IOC_MARK_VOLATILE");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_UNMARK_VOLATILE == 0xC0185602u, "VOLFS_IOC_UNMARK_VOLATILE");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_GET_STATUS == 0xC0505603u, "VOLFS_IOC_GET_STATUS");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_STATS == 0x81685604u, "VOLFS_IOC_STATS");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_STATS_V1 == 0x80A85604u, "VOLFS_IOC_STATS_V1");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_PURGE == 0xC0205605u, "VOLFS_IOC_PURGE");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_MARK_BATCH == 0xC6105606u, "VOLFS_IOC_MARK_BATCH");
VOLFS_LAYOUT_ASSERT(VOLFS_IOC_UNMARK_BATCH == 0xC6105607u, "VOLFS_IOC_UNMARK_BATCH");

/* Flag values are ABI too. */
VOLFS_LAYOUT_ASSERT(VOLFS_MARK_STRICT == 0x1u, "VOLFS_MARK_STRICT");
VOLFS_LAYOUT_ASSERT(VOLFS_MARK_PRIORITY(0) == 0x800u, "VOLFS_MARK_PRIORITY(0)");
VOLFS_LAYOUT_ASSERT(VOLFS_MARK_PRIORITY(7) == 0xF00u, "VOLFS_MARK_PRIORITY(7)");
VOLFS_LAYOUT_ASSERT(VOLFS_MARK_VALID_FLAGS == 0xF01u, "VOLFS_MARK_VALID_FLAGS");
VOLFS_LAYOUT_ASSERT(VOLFS_INTACT == 0u && VOLFS_PURGED == 1u, "unmark results");
VOLFS_LAYOUT_ASSERT(VOLFS_PURGE_ALL == 0xFFFFFFFFFFFFFFFFull, "VOLFS_PURGE_ALL");

#undef VOLFS_LAYOUT_ASSERT

#endif /* VOLFS_TESTS_INTEGRATION_VOLFS_ABI_LAYOUT_H_ */
