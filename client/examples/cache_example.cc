// cache_example: several processes share one volfs::SharedCache. Each looks
// up random keys; a miss (absent, or purged by the daemon under memory
// pressure) means "compute the value the expensive way and put it", a hit
// means another process (or this one) already did. Run several at once:
//
//   volfs /mnt/vol -o size=64m &
//   for i in 1 2 3 4; do cache_example /mnt/vol --seconds 5 & done; wait
//   cache_example /mnt/vol --seconds 5 --purge-ms 50   # one that also purges
//
// Each prints its own hit/miss/purged-miss counts and the cache's totals.
#include <unistd.h>
#include <volfs/file.h>
#include <volfs/shared_cache.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>

namespace {

// The "expensive" computation: 8 KiB derived from the key, after a while.
std::string compute(const std::string& key) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  uint64_t x = std::hash<std::string>{}(key);
  std::string value(8192, '\0');
  for (size_t i = 0; i < value.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(&value[i], &x, 8);
  }
  return value;
}

void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s DIR_ON_VOLFS [--name NAME] [--keys N] [--seconds S] [--purge-ms M]\n",
               argv0);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage(argv[0]);
  std::string dir = argv[1], name = "example";
  int keys = 200, seconds = 5, purge_ms = 0;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    if (a == "--name") {
      name = argv[++i];
    } else if (a == "--keys") {
      keys = std::atoi(argv[++i]);
    } else if (a == "--seconds") {
      seconds = std::atoi(argv[++i]);
    } else if (a == "--purge-ms") {
      purge_ms = std::atoi(argv[++i]);
    } else {
      usage(argv[0]);
    }
  }
  if (keys < 1) usage(argv[0]);

  try {
    volfs::SharedCache cache = volfs::SharedCache::open(dir, name);
    std::mt19937 rng(static_cast<unsigned>(getpid()));
    uint64_t wrong = 0;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    auto next_purge = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < end) {
      std::string key = "item-" + std::to_string(rng() % static_cast<unsigned>(keys));
      if (std::optional<volfs::ValueView> v = cache.get(key)) {
        // Pinned while v lives: the daemon cannot purge it under us. The
        // cache already verified its checksum; this checks it end to end.
        if (v->str() != compute(key)) ++wrong;
      } else {
        cache.put(key, compute(key));  // a miss: recompute, share
      }
      if (purge_ms > 0 && std::chrono::steady_clock::now() >= next_purge) {
        volfs::purge(dir, VOLFS_PURGE_ALL);  // simulated memory pressure
        next_purge += std::chrono::milliseconds(purge_ms);
      }
    }
    volfs::SharedCacheStats mine = cache.local_stats();
    volfs::SharedCacheStats all = cache.stats();
    std::printf(
        "pid %d: %llu hits, %llu misses (%llu purged), %llu puts, %llu wrong | cache: %llu "
        "entries, %llu bytes, %llu hits, %llu misses (%llu purged)\n",
        static_cast<int>(getpid()), static_cast<unsigned long long>(mine.hits),
        static_cast<unsigned long long>(mine.misses),
        static_cast<unsigned long long>(mine.purged_misses),
        static_cast<unsigned long long>(mine.puts), static_cast<unsigned long long>(wrong),
        static_cast<unsigned long long>(all.entries), static_cast<unsigned long long>(all.bytes),
        static_cast<unsigned long long>(all.hits), static_cast<unsigned long long>(all.misses),
        static_cast<unsigned long long>(all.purged_misses));
    return wrong == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cache_example: %s\n", e.what());
    return 1;
  }
}
