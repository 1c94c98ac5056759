// volctl: volatile ranges from shell scripts, over the C++ client library
// (volfs/file.h). Contract with scripts: exit 0 on success, 1 when an
// operation failed (one line on stderr naming file, range and reason), 2 on
// bad usage, 3 for `unmark --exit-code` of a purged range; never a crash.
#include <fcntl.h>
#include <sys/stat.h>
#include <volfs/file.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#ifndef VOLFS_VERSION
#define VOLFS_VERSION "unknown"
#endif

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitPurged = 3;

// Bad usage: the message names what was wrong (the caller adds the --help hint).
struct UsageError {
  std::string message;
};

// A failed operation: the full line after "volctl: ".
struct OperationError {
  std::string message;
};

// Options, as bits, so each command can say which ones it takes.
enum OptionBit : unsigned {
  kOffset = 1u << 0,
  kLength = 1u << 1,
  kStrict = 1u << 2,
  kPriority = 1u << 3,
  kExitCode = 1u << 4,
  kJson = 1u << 5,
  kBytes = 1u << 6,
  kAll = 1u << 7,
  kWatch = 1u << 8,
  kCount = 1u << 9,
};

struct OptionSpec {
  const char* name;  // without the leading "--"
  OptionBit bit;
  bool takes_value;
  bool optional_value = false;  // --watch [INTERVAL]: the next word if it is a number
};

constexpr OptionSpec kOptions[] = {
    {"offset", kOffset, true},       {"length", kLength, true},
    {"strict", kStrict, false},      {"priority", kPriority, true},
    {"exit-code", kExitCode, false}, {"json", kJson, false},
    {"bytes", kBytes, true},         {"all", kAll, false},
    {"watch", kWatch, false, true},  {"count", kCount, true},
};

struct Args {
  std::string path;
  uint64_t offset = 0;
  uint64_t length = 0;  // 0: to the end of the file
  bool strict = false;
  std::optional<int> priority;
  bool exit_code = false;
  bool json = false;
  std::optional<uint64_t> bytes;
  bool all = false;
  std::optional<double> watch;  // seconds between lines
  std::optional<uint64_t> count;
};

struct Command {
  const char* name;
  const char* synopsis;  // arguments after the command name
  const char* summary;   // one line for the tool's help
  const char* details;   // the rest of `volctl CMD --help`
  unsigned options;
  int (*run)(const Args&);
};

// ---- Numbers ---------------------------------------------------------------

// "4096", "64k", "1m", "2G": bytes, suffixes are powers of 1024.
uint64_t parse_size(std::string_view text, std::string_view option) {
  auto malformed = [&] {
    return UsageError{"malformed number for --" + std::string(option) + ": '" + std::string(text) +
                      "' (expected bytes with an optional k, m or g suffix)"};
  };
  auto too_large = [&] {
    return UsageError{"number for --" + std::string(option) + " too large: '" + std::string(text) +
                      "'"};
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || text.size() - digits > 1) throw malformed();
  unsigned shift = 0;
  if (digits < text.size()) {
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
      default:
        throw malformed();
    }
  }
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - d) / 10) throw too_large();
    value = value * 10 + d;
  }
  if (shift && value > (UINT64_MAX >> shift)) throw too_large();
  return value << shift;
}

int parse_priority(std::string_view text) {
  if (text.size() != 1 || text[0] < '0' || text[0] > '7') {
    throw UsageError{"invalid --priority '" + std::string(text) +
                     "' (expected 0..7, lower is purged first)"};
  }
  return text[0] - '0';
}

// Seconds between --watch lines: a decimal number from 0.01 to 3600.
double parse_interval(std::string_view text) {
  std::string t(text);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(t.c_str(), &end);
  if (t.empty() || errno || *end || !(v >= 0.01 && v <= 3600)) {
    throw UsageError{"invalid --watch interval '" + t + "' (seconds, 0.01 to 3600, e.g. 0.1)"};
  }
  return v;
}

// ---- Messages --------------------------------------------------------------

std::string range_text(uint64_t offset, uint64_t length) {
  std::string s = "[" + std::to_string(offset) + ", ";
  s += length ? std::to_string(offset + length) + ")" : "end of file)";
  return s;
}

// "mark /mnt/f [0, 4096)": what failed, for the start of an error line.
std::string subject(const char* command, const std::string& path,
                    std::optional<std::pair<uint64_t, uint64_t>> range = std::nullopt) {
  std::string s = std::string(command) + " " + path;
  if (range) s += " " + range_text(range->first, range->second);
  return s;
}

std::string reason(int err) { return std::strerror(err); }

// ---- Opening files ---------------------------------------------------------

enum class Kind { kRegular, kRegularOrDirectory };

// Opens `path` through the client library, which refuses anything that is not
// on a volfs mount. Turns every failure into an OperationError line.
volfs::File open_volfs(const char* command, const std::string& path, int flags, Kind kind) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw OperationError{subject(command, path) + ": " + reason(errno)};
  }
  bool ok_type = S_ISREG(st.st_mode) || (kind == Kind::kRegularOrDirectory && S_ISDIR(st.st_mode));
  if (!ok_type) {
    std::string why = S_ISDIR(st.st_mode)      ? reason(EISDIR)
                      : kind == Kind::kRegular ? "not a regular file"
                                               : "not a regular file or a directory";
    throw OperationError{subject(command, path) + ": " + why};
  }
  try {
    return volfs::File::open(path, flags);
  } catch (const std::system_error& e) {
    int err = e.code().value();
    if (err == ENOTTY) {
      throw OperationError{std::string(command) + ": " + path + " is not on a volfs mount"};
    }
    std::string line = subject(command, path) + ": " + reason(err);
    if ((err == EACCES || err == EPERM) && (flags & O_ACCMODE) == O_RDWR) {
      line += " (" + std::string(command) + " opens the file for reading and writing)";
    }
    throw OperationError{line};
  }
}

// Offset and length must be page multiples (the ABI's rule); checked here so
// that the message can say so instead of a bare "Invalid argument".
void check_range(const char* command, const Args& a) {
  const uint64_t page = volfs::File::page_size();
  auto fail = [&](const std::string& why) {
    throw OperationError{subject(command, a.path, std::pair{a.offset, a.length}) + ": " + why};
  };
  if (a.offset % page) {
    fail("offset " + std::to_string(a.offset) + " is not a multiple of the page size (" +
         std::to_string(page) + ")");
  }
  if (a.length % page) {
    fail("length " + std::to_string(a.length) + " is not a multiple of the page size (" +
         std::to_string(page) + "); use --length 0 for \"to the end of the file\"");
  }
  if (a.length > UINT64_MAX - a.offset) fail("offset + length overflows");
}

// Runs one operation of the library; a system_error becomes the standard line.
template <class F>
auto checked(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::system_error& e) {
    throw OperationError{what + ": " + reason(e.code().value())};
  }
}

// ---- Output ----------------------------------------------------------------

using Fields = std::vector<std::pair<const char*, uint64_t>>;

void print_fields(const Fields& fields, bool json) {
  if (json) {
    std::fputs("{", stdout);
    for (size_t i = 0; i < fields.size(); ++i) {
      std::printf("%s\"%s\": %" PRIu64, i ? ", " : "", fields[i].first, fields[i].second);
    }
    std::fputs("}\n", stdout);
  } else {
    for (const auto& [key, value] : fields) std::printf("%s: %" PRIu64 "\n", key, value);
  }
}

// ---- Commands --------------------------------------------------------------

int run_mark(const Args& a) {
  check_range("mark", a);
  volfs::File f = open_volfs("mark", a.path, O_RDWR, Kind::kRegular);
  volfs::MarkOptions o;
  o.strict = a.strict;
  if (a.priority) o.priority = *a.priority;
  try {
    f.mark_volatile(volfs::Range{a.offset, a.length}, o);
  } catch (const std::system_error& e) {
    int err = e.code().value();
    std::string line = subject("mark", a.path, std::pair{a.offset, a.length}) + ": " + reason(err);
    // MARK may not reach past the end of the file: say so when that is why.
    struct stat st {};
    if (err == EINVAL && ::fstat(f.fd(), &st) == 0) {
      const uint64_t page = volfs::File::page_size();
      uint64_t end = (static_cast<uint64_t>(st.st_size) + page - 1) / page * page;
      if (a.offset + a.length > end || a.offset > end) {
        line += " (the range reaches past the end of the file, which is " +
                std::to_string(st.st_size) + " bytes)";
      }
    }
    throw OperationError{line};
  }
  return kExitOk;
}

int run_unmark(const Args& a) {
  check_range("unmark", a);
  volfs::File f = open_volfs("unmark", a.path, O_RDWR, Kind::kRegular);
  bool purged = checked(subject("unmark", a.path, std::pair{a.offset, a.length}), [&] {
    return f.unmark(volfs::Range{a.offset, a.length}).purged();
  });
  std::puts(purged ? "purged" : "intact");
  return purged && a.exit_code ? kExitPurged : kExitOk;
}

int run_status(const Args& a) {
  check_range("status", a);
  volfs::File f = open_volfs("status", a.path, O_RDONLY, Kind::kRegular);
  volfs::RangeStatus s = checked(subject("status", a.path, std::pair{a.offset, a.length}), [&] {
    return f.status(volfs::Range{a.offset, a.length});
  });
  print_fields(
      {
          {"nonvolatile_pages", s.nonvolatile_pages},
          {"volatile_pages", s.volatile_pages},
          {"purged_pages", s.purged_pages},
          {"resident_pages", s.resident_pages},
          {"strict_pages", s.strict_pages},
          {"slots", s.slots},
          {"pinned_slots", s.pinned_slots},
          {"purged_slots", s.purged_slots},
      },
      a.json);
  return kExitOk;
}

// Purge sources in VOLFS_SOURCE_* order, as JSON key prefixes.
constexpr const char* kSourceNames[] = {"size_limit", "watermark", "ioctl", "on_mark",
                                        "memavail",   "psi",       "cgroup"};

// The stats as printed: version 1's keys first, in their documented order,
// then (from a version 2 daemon) the pressure figures and, per source,
// SOURCE_signals, SOURCE_purges and SOURCE_purged_bytes, then requests. New
// keys go at the end.
Fields stats_fields(const volfs_stats& s) {
  Fields f = {
      {"page_size", s.page_size},
      {"files", s.files},
      {"resident_pages", s.resident_pages},
      {"volatile_pages", s.volatile_pages},
      {"volatile_resident_pages", s.volatile_resident_pages},
      {"purged_pages", s.purged_pages},
      {"pages_purged_total", s.pages_purged_total},
      {"purge_events_total", s.purge_events_total},
      {"size_limit_bytes", s.size_limit_bytes},
      {"false_purged_total", s.false_purged_total},
      {"unmark_purged_total", s.unmark_purged_total},
      {"unmark_intact_total", s.unmark_intact_total},
  };
  if (s.version < 2) return f;
  static std::vector<std::string> names;  // the keys must outlive the Fields
  if (names.empty()) {
    for (const char* src : kSourceNames) {
      for (const char* what : {"_signals", "_purges", "_purged_bytes"}) {
        names.push_back(std::string(src) + what);
      }
    }
  }
  f.insert(f.end(), {
                        {"stats_version", s.version},
                        {"sources_active", s.sources_active},
                        {"mem_available_bytes", s.mem_available_bytes},
                        {"mem_min_bytes", s.mem_min_bytes},
                        {"cgroup_limit_bytes", s.cgroup_limit_bytes},
                        {"cgroup_used_bytes", s.cgroup_used_bytes},
                        {"cgroup_min_bytes", s.cgroup_min_bytes},
                        {"psi_step_bytes", s.psi_step_bytes},
                    });
  for (size_t k = 0; k < std::size(kSourceNames); ++k) {
    f.push_back({names[3 * k].c_str(), s.sources[k].signals});
    f.push_back({names[3 * k + 1].c_str(), s.sources[k].purges});
    f.push_back({names[3 * k + 2].c_str(), s.sources[k].purged_bytes});
  }
  f.push_back({"requests", s.requests});  // 0 from a daemon that does not count them
  return f;
}

int run_stats(const Args& a) {
  volfs::File f = open_volfs("stats", a.path, O_RDONLY, Kind::kRegularOrDirectory);
  if (!a.watch) {
    volfs_stats s = checked(subject("stats", a.path), [&] { return f.stats(); });
    print_fields(stats_fields(s), a.json);
    return kExitOk;
  }
  // One JSON line per interval, "time_ms" (wall clock, ms since the epoch)
  // first, flushed at once so a pipe sees each line as it comes.
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(*a.watch));
  auto next = std::chrono::steady_clock::now();
  for (uint64_t n = 0; !a.count || n < *a.count; ++n) {
    if (n) {
      next += interval;
      std::this_thread::sleep_until(next);
    }
    volfs_stats s = checked(subject("stats", a.path), [&] { return f.stats(); });
    uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
    Fields fields = stats_fields(s);
    fields.insert(fields.begin(), {"time_ms", ms});
    print_fields(fields, true);
    if (std::fflush(stdout) != 0) return kExitFailed;
  }
  return kExitOk;
}

int run_purge(const Args& a) {
  volfs::File f = open_volfs("purge", a.path, O_RDONLY, Kind::kRegularOrDirectory);
  uint64_t want = a.all ? VOLFS_PURGE_ALL : *a.bytes;
  uint64_t purged;
  try {
    purged = f.purge(want);
  } catch (const std::system_error& e) {
    int err = e.code().value();
    std::string line = subject("purge", a.path) + ": " + reason(err);
    if (err == EPERM) line += " (only root and the user who mounted volfs may purge)";
    throw OperationError{line};
  }
  std::printf("%" PRIu64 "\n", purged);
  return kExitOk;
}

const Command kCommands[] = {
    {"mark", "FILE [--offset N] [--length N] [--strict] [--priority P]",
     "mark a range volatile: volfs may purge its pages",
     "Marks a range of FILE volatile: when memory is short, volfs may discard\n"
     "(purge) its pages. The range must lie inside the file.\n"
     "\n"
     "  --offset N    start of the range in bytes (default 0)\n"
     "  --length N    length of the range in bytes; 0 (the default) means to the end\n"
     "                of the file\n"
     "  --strict      purged pages fail reads and writes with EIO (SIGBUS through\n"
     "                mmap) until unmarked, instead of reading as zeros\n"
     "  --priority P  purge priority 0..7, lower is purged first (default 4)\n",
     kOffset | kLength | kStrict | kPriority, run_mark},
    {"unmark", "FILE [--offset N] [--length N] [--exit-code]",
     "make a range non-volatile; prints \"purged\" or \"intact\"",
     "Makes a range of FILE non-volatile again and prints on one line \"purged\" if\n"
     "data of the range was discarded while it was volatile, else \"intact\".\n"
     "\n"
     "  --offset N    start of the range in bytes (default 0)\n"
     "  --length N    length of the range in bytes; 0 (the default) means to the end\n"
     "                of the file\n"
     "  --exit-code   exit with status 3 when the range was purged (0 when intact)\n",
     kOffset | kLength | kExitCode, run_unmark},
    {"status", "FILE [--offset N] [--length N] [--json]", "page counts of a range",
     "Prints the page counts of a range of FILE: nonvolatile_pages, volatile_pages,\n"
     "purged_pages (volatile pages whose data was discarded), resident_pages (held\n"
     "in memory) and strict_pages (volatile pages marked --strict); then the slots\n"
     "whose data overlaps the range: slots, pinned_slots (pinned now) and\n"
     "purged_slots (purged and not pinned since).\n"
     "\n"
     "  --offset N    start of the range in bytes (default 0)\n"
     "  --length N    length of the range in bytes; 0 (the default) means to the end\n"
     "                of the file\n"
     "  --json        one JSON object instead of \"key: value\" lines\n",
     kOffset | kLength | kJson, run_status},
    {"stats", "PATH [--json] [--watch [INTERVAL]] [--count N]",
     "global accounting of the volfs mount PATH is on",
     "Prints the global accounting of the volfs mount that PATH (a file or a\n"
     "directory) is on, in pages counted once however many processes map them:\n"
     "page_size, files, resident_pages, volatile_pages, volatile_resident_pages,\n"
     "purged_pages, pages_purged_total, purge_events_total, size_limit_bytes,\n"
     "false_purged_total, unmark_purged_total, unmark_intact_total; then, from a\n"
     "daemon with pressure sources: stats_version, sources_active (a bit per\n"
     "source below), mem_available_bytes, mem_min_bytes, cgroup_limit_bytes,\n"
     "cgroup_used_bytes, cgroup_min_bytes, psi_step_bytes, and for each purge\n"
     "source (size_limit, watermark, ioctl, on_mark, memavail, psi, cgroup)\n"
     "SOURCE_signals, SOURCE_purges and SOURCE_purged_bytes; last, requests:\n"
     "the FUSE requests the daemon has served since it started, this one\n"
     "included (0 from a daemon that does not count them).\n"
     "\n"
     "  --json        one JSON object instead of \"key: value\" lines\n"
     "  --watch [INTERVAL]\n"
     "                one JSON line every INTERVAL seconds (default 1, e.g. 0.1),\n"
     "                with \"time_ms\" (ms since the epoch) first; until interrupted\n"
     "  --count N     with --watch: stop after N lines\n",
     kJson | kWatch | kCount, run_stats},
    {"purge", "PATH (--bytes N | --all)",
     "purge volatile data of the mount now; prints the bytes purged",
     "Purges volatile pages of the volfs mount that PATH (a file or a directory)\n"
     "is on, in purge order (priority, then least recently marked), as memory\n"
     "pressure would, and prints how many bytes were purged. Only root and the\n"
     "user who mounted volfs may purge.\n"
     "\n"
     "  --bytes N     purge up to N bytes (rounded down to whole pages)\n"
     "  --all         purge every volatile page\n",
     kBytes | kAll, run_purge},
};

const Command* find_command(std::string_view name) {
  for (const Command& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void print_tool_help() {
  std::printf(
      "usage: volctl COMMAND ARGS... [--help]\n"
      "\n"
      "Marks and unmarks volatile ranges of files on a volfs mount, and shows and\n"
      "drives the mount's purging.\n"
      "\n"
      "commands:\n");
  for (const Command& c : kCommands) {
    std::printf("  %s %s\n      %s\n", c.name, c.synopsis, c.summary);
  }
  std::printf(
      "\n"
      "Sizes and offsets are bytes, with an optional k, m or g suffix (powers of\n"
      "1024). Offsets and lengths must be multiples of the page size.\n"
      "\n"
      "Exit status: 0 success, 1 an operation failed, 2 bad usage,\n"
      "3 `unmark --exit-code` found the range purged.\n"
      "'volctl COMMAND --help' describes one command; 'volctl --version' the version.\n");
}

void print_command_help(const Command& c) {
  std::printf("usage: volctl %s %s\n\n%s", c.name, c.synopsis, c.details);
  std::printf("  --help        show this help\n");
}

// ---- Command line ----------------------------------------------------------

Args parse_args(const Command& c, const std::vector<std::string_view>& argv) {
  Args a;
  bool have_path = false;
  bool options_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string_view arg = argv[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-") {
      if (have_path) throw UsageError{"unexpected argument '" + std::string(arg) + "'"};
      a.path = std::string(arg);
      have_path = true;
      continue;
    }
    if (arg.size() < 3 || arg[1] != '-') {
      throw UsageError{"unknown option '" + std::string(arg) + "'"};
    }
    std::string_view name = arg.substr(2);
    std::optional<std::string_view> value;
    if (size_t eq = name.find('='); eq != std::string_view::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& o : kOptions) {
      if (name == o.name && (c.options & o.bit)) spec = &o;
    }
    if (!spec) throw UsageError{"unknown option '--" + std::string(name) + "'"};
    if (!spec->takes_value && !spec->optional_value && value) {
      throw UsageError{"option '--" + std::string(name) + "' takes no value"};
    }
    if (spec->optional_value && !value && i + 1 < argv.size() && !argv[i + 1].empty() &&
        ((argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') || argv[i + 1][0] == '.')) {
      value = argv[++i];
    }
    if (spec->takes_value && !value) {
      if (i + 1 >= argv.size()) {
        throw UsageError{"option '--" + std::string(name) + "' needs a value"};
      }
      value = argv[++i];
    }
    switch (spec->bit) {
      case kOffset:
        a.offset = parse_size(*value, name);
        break;
      case kLength:
        a.length = parse_size(*value, name);
        break;
      case kStrict:
        a.strict = true;
        break;
      case kPriority:
        a.priority = parse_priority(*value);
        break;
      case kExitCode:
        a.exit_code = true;
        break;
      case kJson:
        a.json = true;
        break;
      case kBytes:
        a.bytes = parse_size(*value, name);
        break;
      case kAll:
        a.all = true;
        break;
      case kWatch:
        a.watch = value ? parse_interval(*value) : 1.0;
        break;
      case kCount: {
        uint64_t n = parse_size(*value, name);
        if (n == 0) throw UsageError{"--count must be at least 1"};
        a.count = n;
        break;
      }
    }
  }
  if (!have_path) {
    // The synopsis starts with the operand's name: FILE or PATH.
    std::string_view synopsis = c.synopsis;
    throw UsageError{"missing " + std::string(synopsis.substr(0, synopsis.find(' ')))};
  }
  if (a.count && !a.watch) throw UsageError{"--count needs --watch"};
  if (c.options & kBytes) {
    if (a.all && a.bytes) throw UsageError{"--bytes and --all exclude each other"};
    if (!a.all && !a.bytes) throw UsageError{"needs --bytes N or --all"};
  }
  return a;
}

int usage_error(const Command* c, const std::string& message) {
  std::string cmd = c ? std::string(" ") + c->name : "";
  std::fprintf(stderr, "volctl:%s%s %s (see 'volctl%s --help')\n", cmd.c_str(), c ? ":" : "",
               message.c_str(), cmd.c_str());
  return kExitUsage;
}

int run(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) return usage_error(nullptr, "missing command");
  std::string_view first = args[0];
  if (first == "--help" || first == "-h") {
    print_tool_help();
    return kExitOk;
  }
  if (first == "--version") {
    std::printf("volctl %s\n", VOLFS_VERSION);
    return kExitOk;
  }
  if (first == "help") {
    if (args.size() == 1) {
      print_tool_help();
      return kExitOk;
    }
    const Command* c = find_command(args[1]);
    if (!c || args.size() > 2) {
      return usage_error(nullptr, "help: unknown command '" + std::string(args[1]) + "'");
    }
    print_command_help(*c);
    return kExitOk;
  }
  const Command* c = find_command(first);
  if (!c) {
    return usage_error(
        nullptr, (first.size() && first[0] == '-' ? "unknown option '" : "unknown command '") +
                     std::string(first) + "'");
  }
  std::vector<std::string_view> rest(args.begin() + 1, args.end());
  for (std::string_view a : rest) {
    if (a == "--") break;
    if (a == "--help" || a == "-h") {
      print_command_help(*c);
      return kExitOk;
    }
  }
  Args parsed;
  try {
    parsed = parse_args(*c, rest);
  } catch (const UsageError& e) {
    return usage_error(c, e.message);
  }
  try {
    return c->run(parsed);
  } catch (const OperationError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "volctl: %s\n", e.message.c_str());
    return kExitFailed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int status;
  try {
    status = run(argc, argv);
  } catch (const std::exception& e) {
    // Out of memory or a library bug: still one line and a defined status.
    std::fprintf(stderr, "volctl: %s\n", e.what());
    status = kExitFailed;
  } catch (...) {
    std::fprintf(stderr, "volctl: unexpected error\n");
    status = kExitFailed;
  }
  // A script reading our output must not miss a failed write (a full disk,
  // a closed pipe): report it rather than exit 0.
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "volctl: writing the output: %s\n", std::strerror(errno));
    if (status == kExitOk || status == kExitPurged) status = kExitFailed;
  }
  return status;
}
