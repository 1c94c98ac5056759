// checksum.cc: XXH64, after the reference description in xxHash's
// doc/xxhash_spec.md. Test vectors in cache_index_test.cc.
#include "checksum.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace volfs::cache_detail {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian loads (the only byte order volfs runs on; see the ABI check).
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint64_t round(uint64_t acc, uint64_t input) {
  acc += input * kPrime2;
  acc = rotl(acc, 31);
  return acc * kPrime1;
}

inline uint64_t merge_round(uint64_t acc, uint64_t val) {
  acc ^= round(0, val);
  return acc * kPrime1 + kPrime4;
}

inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime3;
  h ^= h >> 32;
  return h;
}

// ---- value_checksum ----

constexpr size_t kLanes = 8;
constexpr size_t kStripe = kLanes * 8;  // bytes

// Arbitrary odd constants (drawn once at random).
alignas(32) constexpr uint64_t kLaneInit[kLanes] = {
    0x9C2B9D9F2AE75E2FULL, 0x02FF349D4F876AA3ULL, 0xE06C85AFBAEC4EF7ULL, 0xE7158A8021F64545ULL,
    0x3C95AD20819ED6B7ULL, 0x3C7BA9E38BE9794DULL, 0x4D317C68022DD18DULL, 0x8ECA73657965C0FFULL};
alignas(32) constexpr uint64_t kLaneKey[kLanes] = {
    0xDAB4FCB8093F36EBULL, 0xA71DBA495552DA89ULL, 0x27CD95A026AF91D1ULL, 0x8FDE5639132A29CFULL,
    0xAFA2D07C1121A14DULL, 0x4F7B56BF55724A8BULL, 0xAC84EB6AAA32241DULL, 0x7F8EB3335F062FE3ULL};
alignas(32) constexpr uint64_t kLaneStep[kLanes] = {
    0x3974497269842A23ULL, 0xAD1885A37130F0C5ULL, 0x4A35DEC1881F60DDULL, 0x1CFAC13B6D1E96F1ULL,
    0x8BCA49D9622DE24DULL, 0xA4726041AC374EEDULL, 0xD8D12F2491DF3DBFULL, 0x607FA71722A44C6FULL};

struct Lanes {
  alignas(32) uint64_t acc[kLanes];
  alignas(32) uint64_t key[kLanes];
};

// n whole stripes from p.
void stripes_scalar(Lanes& l, const unsigned char* p, size_t n) {
  for (size_t s = 0; s < n; ++s, p += kStripe) {
    for (size_t i = 0; i < kLanes; ++i) {
      const uint64_t d = read64(p + 8 * i);
      const uint64_t x = d ^ l.key[i];
      l.acc[i] += (x & 0xFFFFFFFFu) * (x >> 32);
      l.acc[i ^ 1] += d;
      l.key[i] += kLaneStep[i];
    }
  }
}

#if defined(__x86_64__)
// The same in AVX2: lanes 0-3 in one register, 4-7 in the other; the
// swap of neighbouring lanes (i ^ 1) is a swap of 64-bit halves.
__attribute__((target("avx2"))) void stripes_avx2(Lanes& l, const unsigned char* p, size_t n) {
  __m256i a0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.acc));
  __m256i a1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.acc + 4));
  __m256i k0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.key));
  __m256i k1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(l.key + 4));
  const __m256i s0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(kLaneStep));
  const __m256i s1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(kLaneStep + 4));
  for (size_t s = 0; s < n; ++s, p += kStripe) {
    const __m256i d0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i d1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    const __m256i x0 = _mm256_xor_si256(d0, k0);
    const __m256i x1 = _mm256_xor_si256(d1, k1);
    a0 = _mm256_add_epi64(a0, _mm256_mul_epu32(x0, _mm256_srli_epi64(x0, 32)));
    a1 = _mm256_add_epi64(a1, _mm256_mul_epu32(x1, _mm256_srli_epi64(x1, 32)));
    a0 = _mm256_add_epi64(a0, _mm256_shuffle_epi32(d0, _MM_SHUFFLE(1, 0, 3, 2)));
    a1 = _mm256_add_epi64(a1, _mm256_shuffle_epi32(d1, _MM_SHUFFLE(1, 0, 3, 2)));
    k0 = _mm256_add_epi64(k0, s0);
    k1 = _mm256_add_epi64(k1, s1);
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(l.acc), a0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(l.acc + 4), a1);
  _mm256_store_si256(reinterpret_cast<__m256i*>(l.key), k0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(l.key + 4), k1);
}
#endif

using StripesFn = void (*)(Lanes&, const unsigned char*, size_t);

StripesFn pick_stripes() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return stripes_avx2;
#endif
  return stripes_scalar;
}

uint64_t value_checksum_with(StripesFn stripes, const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  Lanes l;
  for (size_t i = 0; i < kLanes; ++i) {
    l.acc[i] = kLaneInit[i] + seed;
    l.key[i] = kLaneKey[i] ^ seed;
  }
  const size_t whole = size / kStripe;
  if (whole > 0) stripes(l, p, whole);
  if (const size_t rest = size % kStripe; rest != 0) {
    unsigned char last[kStripe] = {};
    std::memcpy(last, p + whole * kStripe, rest);
    stripes(l, last, 1);
  }
  uint64_t h = seed + kPrime5 + static_cast<uint64_t>(size) * kPrime1;
  for (size_t i = 0; i < kLanes; ++i) h = merge_round(h, l.acc[i]);
  return avalanche(h);
}

}  // namespace

uint64_t checksum64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  const unsigned char* const end = p + size;
  uint64_t h;
  if (size >= 32) {
    uint64_t v1 = seed + kPrime1 + kPrime2;
    uint64_t v2 = seed + kPrime2;
    uint64_t v3 = seed;
    uint64_t v4 = seed - kPrime1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = round(v1, read64(p));
      v2 = round(v2, read64(p + 8));
      v3 = round(v3, read64(p + 16));
      v4 = round(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge_round(h, v1);
    h = merge_round(h, v2);
    h = merge_round(h, v3);
    h = merge_round(h, v4);
  } else {
    h = seed + kPrime5;
  }
  h += static_cast<uint64_t>(size);
  while (p + 8 <= end) {
    h ^= round(0, read64(p));
    h = rotl(h, 27) * kPrime1 + kPrime4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= static_cast<uint64_t>(read32(p)) * kPrime1;
    h = rotl(h, 23) * kPrime2 + kPrime3;
    p += 4;
  }
  while (p < end) {
    h ^= static_cast<uint64_t>(*p) * kPrime5;
    h = rotl(h, 11) * kPrime1;
    ++p;
  }
  return avalanche(h);
}

uint64_t value_checksum(const void* data, size_t size, uint64_t seed) {
  static const StripesFn stripes = pick_stripes();
  return value_checksum_with(stripes, data, size, seed);
}

uint64_t value_checksum_scalar(const void* data, size_t size, uint64_t seed) {
  return value_checksum_with(stripes_scalar, data, size, seed);
}

}  // namespace volfs::cache_detail
