// Parsers for MountOptions. See options.h.
#include "options.h"

#include <cerrno>
#include <charconv>
#include <limits>

namespace volfs::core {
namespace {

Result<uint64_t> parse_u64(std::string_view s, int base = 10) {
  uint64_t v = 0;
  if (s.empty()) return Err{EINVAL};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || end != s.data() + s.size()) return Err{EINVAL};
  return v;
}

Result<uint64_t> with_suffix(std::string_view text) {
  if (text.empty()) return Err{EINVAL};
  unsigned shift = 0;
  switch (text.back()) {
    case 'k':
    case 'K':
      shift = 10;
      break;
    case 'm':
    case 'M':
      shift = 20;
      break;
    case 'g':
    case 'G':
      shift = 30;
      break;
    case 't':
    case 'T':
      shift = 40;
      break;
    default:
      break;
  }
  if (shift) text.remove_suffix(1);
  Result<uint64_t> v = parse_u64(text);
  if (!v.ok()) return v;
  if (shift && *v > (std::numeric_limits<uint64_t>::max() >> shift)) return Err{ERANGE};
  return *v << shift;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text, uint64_t ram_bytes) {
  if (!text.empty() && text.back() == '%') {
    Result<unsigned> pct = parse_percent(text);
    if (!pct.ok() || *pct == 0) return Err{EINVAL};
    return ram_bytes / 100 * *pct;
  }
  return with_suffix(text);
}

Result<uint64_t> parse_count(std::string_view text) { return with_suffix(text); }

Result<mode_t> parse_mode(std::string_view text) {
  Result<uint64_t> v = parse_u64(text, 8);
  if (!v.ok() || *v > 07777) return Err{EINVAL};
  return static_cast<mode_t>(*v);
}

Result<unsigned> parse_percent(std::string_view text) {
  if (!text.empty() && text.back() == '%') text.remove_suffix(1);
  Result<uint64_t> v = parse_u64(text);
  if (!v.ok() || *v > 100) return Err{EINVAL};
  return static_cast<unsigned>(*v);
}

MountOptions default_mount_options(uint64_t ram_bytes, uint64_t page_size) {
  MountOptions o;
  o.size_bytes = ram_bytes / 2;
  o.nr_inodes = ram_bytes / page_size / 2;
  o.pressure = default_pressure_options(ram_bytes);
  return o;
}

std::string validate(const MountOptions& o, uint64_t page_size) {
  if (o.size_bytes < page_size) return "size= must be at least one page";
  if (o.nr_inodes < 1) return "nr_inodes= must be at least 1";
  if (o.readahead_bytes % 1024 || o.readahead_bytes > kMaxReadahead) {
    return "readahead= must be a multiple of 1k and at most 64m";
  }
  if (o.purge_low_pct && !o.purge_high_pct) return "purge_low= needs purge_high=";
  if (o.purge_high_pct && o.purge_low_pct >= o.purge_high_pct) {
    return "purge_low= must be below purge_high=";
  }
  return "";
}

}  // namespace volfs::core
