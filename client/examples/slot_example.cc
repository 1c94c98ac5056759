// slot_example: the pin_example table, pinned through a slot: each run pins
// and unpins with a compare-and-swap on a word in the file, no system call
// (after the open, the mapping and one registration ioctl). Page 0 of the
// file holds the slot's word; the table follows.
//
//   slot_example /mnt/vol/table    # first run: creates the slot, computes
//   slot_example /mnt/vol/table    # intact: uses it as it is
//   volctl purge /mnt/vol --all    # (or real memory pressure)
//   slot_example /mnt/vol/table    # purged: recomputes it
#include <volfs/file.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <system_error>

namespace {

constexpr uint64_t kEntries = 4096;  // 32 KiB of uint64_t

void compute(uint64_t* table) {
  for (uint64_t i = 0; i < kEntries; ++i) table[i] = i * i;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: slot_example FILE   (FILE on a volfs mount)\n");
    return 2;
  }
  try {
    const uint64_t page = volfs::File::page_size();
    const uint64_t table_bytes = (kEntries * sizeof(uint64_t) + page - 1) / page * page;
    volfs::File file = volfs::File::create(argv[1]);
    if (file.size() < page + table_bytes) file.resize(page + table_bytes);
    volfs::Mapping map = file.map();
    // Creates the slot (pinned by us) or attaches to the one an earlier run made.
    volfs::SlotRegistration reg = file.register_slot({page, table_bytes}, /*word_offset=*/0);
    volfs::Slot slot(map.data<volfs_slot_word>(), reg.holder, reg.created);
    auto* table = reinterpret_cast<uint64_t*>(map.data() + page);
    bool fresh = reg.created;
    if (!reg.created) fresh = slot.pin().purged();  // the CAS: no system call
    if (fresh) compute(table);
    std::printf("%s: table %s; sum of the first 8: %llu\n", argv[1],
                reg.created ? "created" : (fresh ? "was purged, recomputed" : "intact"),
                static_cast<unsigned long long>(table[1]) + table[2] + table[3] + table[4] +
                    table[5] + table[6] + table[7]);
    // Time a thousand pin/unpin pairs while we hold one pin (nested pins
    // are counted in this process and do not touch the word).
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
      volfs::SlotPin pin(slot);
    }
    auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0);
    std::printf("nested pin+unpin: %.0f ns\n", ns.count() / 1000);
    slot.unpin();  // volatile again until the next run
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "slot_example: %s\n", e.what());
    return 1;
  }
  return 0;
}
