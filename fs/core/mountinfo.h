// Reading /proc/self/mountinfo: header-only, so that the daemon, the test
// fixture and volbench, which each look their mounts up there, share it
// without linking the core.
#pragma once

#include <string>
#include <string_view>

namespace volfs::core {

// Undoes mountinfo's octal escapes (\040 for space, \011, \012, \134).
inline std::string unescape_mountinfo(std::string_view s) {
  auto octal = [&](size_t k) { return s[k] >= '0' && s[k] <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace volfs::core
