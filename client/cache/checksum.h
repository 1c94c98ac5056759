// checksum.h: the 64-bit hashes of the cache. checksum64 is XXH64 (Yann
// Collet's xxHash, 64-bit variant), written out here so the cache depends on
// nothing but Boost headers: the key hash. value_checksum is the checksum of
// values, which the index stores and every get verifies.
#pragma once

#include <cstddef>
#include <cstdint>

namespace volfs::cache_detail {

uint64_t checksum64(const void* data, size_t size, uint64_t seed = 0);

// The checksum of a value (seed: its key's hash). XXH64 runs at 4 bytes a
// cycle at best (its eight 64-bit multiplies per 32 bytes), ~0.4-0.65 us
// for 4 KiB here, most of a get. This one keeps eight 64-bit lanes over
// 64-byte stripes: per 8-byte word d of lane i, with the lane's key k (which
// steps by a per-lane constant every stripe, so the same word in another
// stripe counts differently), acc[i] += lo32(d ^ k) * hi32(d ^ k) and
// acc[i ^ 1] += d. The 32 x 32 -> 64 multiplies run four at a time in AVX2
// (chosen at run time; a scalar loop computes the same value elsewhere), so
// 4 KiB takes ~0.1 us. A tail is zero-padded to a stripe; the size, the
// seed and every lane go through XXH64's mixing at the end. Any change of a
// single 8-byte word changes acc[i ^ 1] by its difference, so it is always
// detected; the multiplies and the stepping keys make other changes
// (swapped stripes, words moved between lanes) count too. Not XXH64's
// value, and part of the index layout (kLayoutVersion): changing it changes
// every stored checksum.
uint64_t value_checksum(const void* data, size_t size, uint64_t seed);
// The same computed by the portable loop, whatever the CPU (for tests).
uint64_t value_checksum_scalar(const void* data, size_t size, uint64_t seed);

}  // namespace volfs::cache_detail
