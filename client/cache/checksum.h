// checksum.h: the 64-bit checksum of cache keys and values, XXH64 (Yann
// Collet's xxHash, 64-bit variant), written out here so the cache depends on
// nothing but Boost headers. The index stores it; every get verifies it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace volfs::cache_detail {

uint64_t checksum64(const void* data, size_t size, uint64_t seed = 0);

}  // namespace volfs::cache_detail
