// tmpfs_compare.cc: records step outcomes on one root and diffs two runs.
// Outcomes are plain strings so that runs in child processes can send them
// back through a pipe.
#include "tmpfs_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "mount_fixture.h"

namespace volfs::test {
namespace {

std::string octal(unsigned v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*o", width, v);
  return buf;
}

std::string type_name(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "reg";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "lnk";
    case S_IFIFO:
      return "fifo";
    case S_IFCHR:
      return "chr";
    case S_IFBLK:
      return "blk";
    case S_IFSOCK:
      return "sock";
    default:
      return "?";
  }
}

}  // namespace

TmpfsDir::TmpfsDir() {
  char templ[] = "/dev/shm/volfs-ref.XXXXXX";
  if (!mkdtemp(templ)) {
    ADD_FAILURE() << "mkdtemp(/dev/shm/volfs-ref.XXXXXX): " << std::strerror(errno);
    return;
  }
  path_ = templ;
}

TmpfsDir::~TmpfsDir() {
  if (!path_.empty()) remove_tree(path_);
}

std::string TmpfsDir::path(std::string_view rel) const { return path_ + "/" + std::string(rel); }

std::string errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "errno" + std::to_string(err);
}

std::string render_bytes(std::string_view data) {
  if (data.size() <= 64) {
    std::string out = "\"";
    for (unsigned char c : data) {
      if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
        out += static_cast<char>(c);
      } else {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    }
    return out + "\"";
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  size_t zeros = 0;
  for (unsigned char c : data) {
    h = (h ^ c) * 1099511628211ull;
    zeros += (c == 0);
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "<%zu bytes, %zu zero, fnv %016" PRIx64 ">", data.size(), zeros,
                h);
  return buf;
}

std::string describe_stat(const struct stat& st, std::string_view fields) {
  std::string out;
  std::string f(fields);
  std::istringstream in(f);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (!out.empty()) out += ' ';
    out += name + "=";
    if (name == "type") {
      out += type_name(st.st_mode);
    } else if (name == "mode") {
      out += octal(st.st_mode & 07777, 4);
    } else if (name == "size") {
      out += std::to_string(st.st_size);
    } else if (name == "nlink") {
      out += std::to_string(st.st_nlink);
    } else if (name == "uid") {
      out += std::to_string(st.st_uid);
    } else if (name == "gid") {
      out += std::to_string(st.st_gid);
    } else if (name == "blocks") {
      out += std::to_string(st.st_blocks);
    } else if (name == "rdev") {
      out += std::to_string(st.st_rdev);
    } else {
      out += "?";
    }
  }
  return out;
}

Scenario::Scenario(std::string root) : root_(std::move(root)) {}

Scenario::~Scenario() {
  for (int fd : fds_) ::close(fd);
}

std::string Scenario::path(std::string_view rel) const {
  if (rel.empty() || rel == ".") return root_;
  return root_ + "/" + std::string(rel);
}

long Scenario::check(std::string_view label, long ret, std::string_view expected) {
  int err = errno;
  note(label, ret == -1 ? errno_name(err) : "ok", expected);
  errno = err;
  return ret;
}

long Scenario::value(std::string_view label, long ret, std::string_view expected) {
  int err = errno;
  note(label, ret == -1 ? errno_name(err) : std::to_string(ret), expected);
  errno = err;
  return ret;
}

void Scenario::note(std::string_view label, std::string observed, std::string_view expected) {
  steps_.push_back(Step{std::string(label), std::move(observed), std::string(expected)});
}

int Scenario::open(std::string_view label, std::string_view rel, int flags, mode_t mode,
                   std::string_view expected) {
  int fd = ::open(path(rel).c_str(), flags | O_CLOEXEC, mode);
  check(label, fd, expected);
  if (fd >= 0) fds_.push_back(fd);
  return fd;
}

long Scenario::write(std::string_view label, int fd, std::string_view data,
                     std::string_view expected) {
  return value(label, ::write(fd, data.data(), data.size()), expected);
}

long Scenario::pwrite(std::string_view label, int fd, std::string_view data, off_t offset,
                      std::string_view expected) {
  return value(label, ::pwrite(fd, data.data(), data.size(), offset), expected);
}

std::string Scenario::pread(std::string_view label, int fd, size_t len, off_t offset,
                            std::string_view expected) {
  std::string buf(len, '\0');
  ssize_t n = ::pread(fd, buf.data(), len, offset);
  if (n < 0) {
    note(label, errno_name(errno), expected);
    return "";
  }
  buf.resize(n);
  note(label, render_bytes(buf), expected);
  return buf;
}

std::string Scenario::content(std::string_view label, std::string_view rel,
                              std::string_view expected) {
  int fd = ::open(path(rel).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    note(label, errno_name(errno), expected);
    return "";
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      note(label, errno_name(errno), expected);
      ::close(fd);
      return "";
    }
    if (n == 0) break;
    data.append(buf, n);
  }
  ::close(fd);
  note(label, render_bytes(data), expected);
  return data;
}

std::string Scenario::stat(std::string_view label, std::string_view rel, std::string_view fields,
                           std::string_view expected) {
  struct stat st;
  std::string out =
      ::lstat(path(rel).c_str(), &st) == 0 ? describe_stat(st, fields) : errno_name(errno);
  note(label, out, expected);
  return out;
}

std::string Scenario::fstat(std::string_view label, int fd, std::string_view fields,
                            std::string_view expected) {
  struct stat st;
  std::string out = ::fstat(fd, &st) == 0 ? describe_stat(st, fields) : errno_name(errno);
  note(label, out, expected);
  return out;
}

std::string Scenario::list(std::string_view label, std::string_view rel,
                           std::string_view expected) {
  DIR* d = ::opendir(path(rel).c_str());
  if (!d) {
    std::string out = errno_name(errno);
    note(label, out, expected);
    return out;
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISDIR(st.st_mode)) name += "/";
      if (S_ISLNK(st.st_mode)) name += "@";
      if (S_ISFIFO(st.st_mode)) name += "|";
    }
    names.push_back(name);
  }
  int err = errno;
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : " ") + n;
  if (err != 0) out += " (readdir: " + errno_name(err) + ")";
  note(label, out, expected);
  return out;
}

std::string Scenario::serialize() const {
  std::string out;
  for (const Step& s : steps_) {
    for (const std::string* f : {&s.label, &s.outcome, &s.expected}) {
      out += std::to_string(f->size()) + ":" + *f;
    }
  }
  return out;
}

std::vector<Step> Scenario::parse(const std::string& text) {
  std::vector<Step> steps;
  size_t pos = 0;
  auto field = [&](std::string* out) {
    size_t colon = text.find(':', pos);
    if (colon == std::string::npos) return false;
    size_t len = std::stoul(text.substr(pos, colon - pos));
    *out = text.substr(colon + 1, len);
    pos = colon + 1 + len;
    return true;
  };
  while (pos < text.size()) {
    Step s;
    if (!field(&s.label) || !field(&s.outcome) || !field(&s.expected)) break;
    steps.push_back(std::move(s));
  }
  return steps;
}

TmpfsComparison::TmpfsComparison(std::string volfs_root) : volfs_root_(std::move(volfs_root)) {}

void TmpfsComparison::run(const std::function<void(Scenario&)>& body) {
  for (bool volfs : {false, true}) {
    Scenario s(volfs ? volfs_root_ : tmpfs_.path());
    body(s);
    auto& into = volfs ? volfs_steps_ : tmpfs_steps_;
    into.insert(into.end(), s.steps().begin(), s.steps().end());
  }
}

void TmpfsComparison::run_as(Credentials who, const std::function<void(Scenario&)>& body) {
  for (bool volfs : {false, true}) {
    std::vector<Step> steps = run_in_child_as(who, volfs ? volfs_root_ : tmpfs_.path(), body);
    auto& into = volfs ? volfs_steps_ : tmpfs_steps_;
    into.insert(into.end(), steps.begin(), steps.end());
  }
}

std::vector<Step> TmpfsComparison::run_in_child_as(Credentials who, const std::string& root,
                                                   const std::function<void(Scenario&)>& body) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    trouble_ += "pipe2 failed\n";
    return {};
  }
  ChildProcess child;
  child.start(
      [&]() {
        ::close(fds[0]);
        std::string text;
        {
          Scenario s(root);
          body(s);
          text = s.serialize();
        }
        size_t off = 0;
        while (off < text.size()) {
          ssize_t n = ::write(fds[1], text.data() + off, text.size() - off);
          if (n <= 0) return 4;
          off += n;
        }
        return 0;
      },
      who);
  ::close(fds[1]);
  std::string text;
  char buf[4096];
  while (wait_readable(fds[0], kChildTimeout)) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, n);
  }
  ::close(fds[0]);
  int status = child.wait();
  if (!exited_with(status, 0)) {
    trouble_ += "scenario child on " + root + " " + describe_wait_status(status) + "\n";
  }
  return Scenario::parse(text);
}

::testing::AssertionResult TmpfsComparison::same() const {
  bool ok = trouble_.empty() && tmpfs_steps_.size() == volfs_steps_.size();
  size_t n = std::max(tmpfs_steps_.size(), volfs_steps_.size());
  std::ostringstream table;
  table << "    step | tmpfs | volfs | expected\n";
  static const Step kMissing{"(missing)", "(missing)", ""};
  for (size_t i = 0; i < n; ++i) {
    const Step& t = i < tmpfs_steps_.size() ? tmpfs_steps_[i] : kMissing;
    const Step& v = i < volfs_steps_.size() ? volfs_steps_[i] : kMissing;
    const std::string& exp = t.expected.empty() ? v.expected : t.expected;
    bool row_ok = t.label == v.label && t.outcome == v.outcome &&
                  (exp.empty() || (t.outcome == exp && v.outcome == exp));
    std::string why;
    if (!exp.empty() && t.outcome != exp) why = "  <- tmpfs differs from the expectation";
    ok = ok && row_ok;
    table << (row_ok ? "     " : "  !! ") << t.label << (t.label == v.label ? "" : " / " + v.label)
          << " | " << t.outcome << " | " << v.outcome << " | " << (exp.empty() ? "=" : exp) << why
          << "\n";
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "volfs differs from tmpfs (" << tmpfs_.path() << "):\n"
                                       << trouble_ << table.str();
}

}  // namespace volfs::test
