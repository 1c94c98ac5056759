// pin_example: a lookup table cached in a volfs file, recomputed only when
// volfs has purged it. Between runs the table is volatile, so under memory
// pressure volfs may take its memory back; each run pins it (volfs::Pin),
// learns whether it was purged, and uses or rebuilds it.
//
//   pin_example /mnt/vol/table     # first run: computes the table
//   pin_example /mnt/vol/table     # intact: uses it as it is
//   volctl purge /mnt/vol --all    # (or real memory pressure)
//   pin_example /mnt/vol/table     # purged: recomputes it
#include <volfs/file.h>

#include <cstdint>
#include <cstdio>
#include <system_error>

namespace {

constexpr uint64_t kEntries = 4096;  // 32 KiB of uint64_t

// The "expensive" computation: squares, as a stand-in.
void compute(uint64_t* table) {
  for (uint64_t i = 0; i < kEntries; ++i) table[i] = i * i;
}

bool valid(const uint64_t* table) {
  for (uint64_t i = 0; i < kEntries; ++i) {
    if (table[i] != i * i) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: pin_example FILE   (FILE on a volfs mount)\n");
    return 2;
  }
  try {
    // Throws std::system_error (ENOTTY) if the file is not on volfs.
    volfs::File file = volfs::File::create(argv[1]);
    const uint64_t page = volfs::File::page_size();
    const uint64_t size = (kEntries * sizeof(uint64_t) + page - 1) / page * page;
    const volfs::Range whole{0, size};

    bool first_run = file.size() != size;
    if (first_run) file.resize(size);  // new pages: holes, not volatile
    volfs::Mapping map = file.map();
    auto* table = map.data<uint64_t>();

    // Pin: unmark the range (it may not be purged while pinned) and learn
    // whether its data survived; the destructor marks it volatile again.
    volfs::Pin pin(file, whole);
    if (first_run) {
      compute(table);
      std::printf("first run: computed the table\n");
    } else if (pin.purged()) {
      // Purged pages read as zeros; the whole table is rebuilt.
      compute(table);
      std::printf("purged: recomputed the table\n");
    } else {
      std::printf("intact: using the cached table\n");
    }
    if (!valid(table)) {
      std::fprintf(stderr, "pin_example: the table is corrupt\n");
      return 1;
    }
    std::printf("table[1000] = %llu\n", static_cast<unsigned long long>(table[1000]));
    return 0;
  } catch (const std::system_error& e) {
    // e.what() names the file and range, e.g.
    // "volfs: /tmp/t is not on a volfs mount: Inappropriate ioctl for device".
    std::fprintf(stderr, "pin_example: %s\n", e.what());
    return 1;
  }
}
