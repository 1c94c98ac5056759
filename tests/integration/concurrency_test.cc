// concurrency_test.cc: processes writing one volfs file at once: disjoint
// pwrite regions under verifying readers (each 8-byte word names its own
// position, so any word can be checked, torn or not) and O_APPEND writers.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "child_process.h"
#include "file_util.h"
#include "mount_fixture.h"
#include "tmpfs_compare.h"

namespace volfs::test {
namespace {

constexpr int kWriters = 4;
constexpr int kReaders = 4;
constexpr size_t kRegion = 256 * kKiB;  // one per writer
constexpr size_t kFileSize = kWriters * kRegion;
constexpr size_t kChunk = 16 * kKiB;  // one pwrite
constexpr int kIterations = 16;       // < 256: fits the low byte
constexpr int kReadsPerReader = 300;

// Word i of the file after iteration `iter`: only the low byte changes
// between iterations, so byte-level tearing still yields a valid word.
uint64_t word_at(size_t index, int iter) {
  return (static_cast<uint64_t>(index + 1) << 8) | static_cast<uint64_t>(iter);
}

std::string words(size_t offset, size_t len, int iter) {
  std::string out(len, '\0');
  for (size_t i = 0; i < len; i += 8) {
    uint64_t w = word_at((offset + i) / 8, iter);
    memcpy(&out[i], &w, 8);
  }
  return out;
}

// Empty if buf (read at offset) is valid, else a description of the first
// bad word.
std::string check_words(const std::string& buf, size_t offset, int max_iter) {
  for (size_t i = 0; i + 8 <= buf.size(); i += 8) {
    uint64_t w;
    memcpy(&w, &buf[i], 8);
    size_t index = (offset + i) / 8;
    if ((w >> 8) != index + 1 || static_cast<int>(w & 0xff) > max_iter) {
      char msg[128];
      snprintf(msg, sizeof msg, "bad word at offset %zu: %016llx", offset + i,
               static_cast<unsigned long long>(w));
      return msg;
    }
  }
  return "";
}

TEST(ConcurrencyTest, DisjointPwritersWithVerifyingReaders) {
  VolfsMount m;
  ASSERT_TRUE(m.start());
  std::string f = m.path("shared");
  ASSERT_TRUE(write_file(f, words(0, kFileSize, 0)));

  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("reader seed " + std::to_string(seed));
  std::vector<std::unique_ptr<ChildProcess>> children;
  for (int w = 0; w < kWriters; ++w) {
    children.push_back(std::make_unique<ChildProcess>());
    children.back()->start([&, w]() {
      int fd = open(f.c_str(), O_WRONLY);
      CHILD_CHECK(fd >= 0);
      for (int iter = 1; iter <= kIterations; ++iter) {
        for (size_t off = w * kRegion; off < (w + 1) * kRegion; off += kChunk) {
          CHILD_CHECK(pwrite_all(fd, words(off, kChunk, iter), off));
        }
      }
      CHILD_CHECK(close(fd) == 0);
      return 0;
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    children.push_back(std::make_unique<ChildProcess>());
    children.back()->start([&, r]() {
      int fd = open(f.c_str(), O_RDONLY);
      CHILD_CHECK(fd >= 0);
      std::mt19937 rng(seed + r);
      for (int i = 0; i < kReadsPerReader; ++i) {
        size_t off = (rng() % (kFileSize / 8)) * 8;
        size_t len = std::min<size_t>((1 + rng() % 8192) * 8, kFileSize - off);
        auto buf = pread_some(fd, len, off);
        CHILD_CHECK(buf.has_value());
        CHILD_CHECK(buf->size() == len);  // the size never changes
        std::string bad = check_words(*buf, off, kIterations);
        if (!bad.empty()) child_fail(__FILE__, __LINE__, bad.c_str());
      }
      CHILD_CHECK(close(fd) == 0);
      return 0;
    });
  }
  for (size_t i = 0; i < children.size(); ++i) {
    EXPECT_TRUE(exited_with(children[i]->wait(std::chrono::seconds(60)), 0))
        << (i < kWriters ? "writer " : "reader ") << (i < kWriters ? i : i - kWriters);
  }
  std::string all = read_file(f).value_or("");
  ASSERT_EQ(all.size(), kFileSize);
  const std::string want = words(0, kFileSize, kIterations);
  size_t diff = 0;
  while (diff < all.size() && all[diff] == want[diff]) ++diff;
  EXPECT_EQ(diff, kFileSize) << "final content differs from the last iteration at offset " << diff
                             << " ("
                             << check_words(all.substr(diff & ~size_t{7}, 8), diff & ~size_t{7},
                                            kIterations)
                             << ")";
}

// O_APPEND writers in several processes: every record lands whole, at a
// record boundary, none lost or overlapping (compared with tmpfs).
TEST(ConcurrencyTest, AppendersNeverOverlap) {
  VolfsMount m;
  ASSERT_TRUE(m.start());
  TmpfsDir tmpfs;
  ASSERT_TRUE(tmpfs.ok());
  constexpr int kAppenders = 4, kRecords = 400;
  constexpr size_t kRecord = 100;
  for (const std::string& root : {tmpfs.path(), m.mountpoint()}) {
    SCOPED_TRACE(root);
    std::string f = root + "/log";
    ASSERT_TRUE(write_file(f, ""));
    std::vector<std::unique_ptr<ChildProcess>> children;
    for (int a = 0; a < kAppenders; ++a) {
      children.push_back(std::make_unique<ChildProcess>());
      children.back()->start([&, a]() {
        int fd = open(f.c_str(), O_WRONLY | O_APPEND);
        CHILD_CHECK(fd >= 0);
        for (int r = 0; r < kRecords; ++r) {
          char rec[kRecord + 1];
          snprintf(rec, sizeof rec, "%-*s", static_cast<int>(kRecord - 1),
                   ("writer " + std::to_string(a) + " record " + std::to_string(r)).c_str());
          rec[kRecord - 1] = '\n';
          CHILD_CHECK(write(fd, rec, kRecord) == static_cast<ssize_t>(kRecord));
        }
        CHILD_CHECK(close(fd) == 0);
        return 0;
      });
    }
    for (auto& c : children) EXPECT_TRUE(exited_with(c->wait(), 0));
    std::string all = read_file(f).value_or("");
    ASSERT_EQ(all.size(), size_t{kAppenders} * kRecords * kRecord);
    std::vector<int> next(kAppenders, 0);
    for (size_t off = 0; off < all.size(); off += kRecord) {
      int a = -1, r = -1;
      ASSERT_EQ(sscanf(all.c_str() + off, "writer %d record %d", &a, &r), 2)
          << "garbled record at " << off;
      ASSERT_TRUE(a >= 0 && a < kAppenders);
      EXPECT_EQ(r, next[a]) << "writer " << a << " out of order at " << off;
      next[a] = r + 1;
      EXPECT_EQ(all[off + kRecord - 1], '\n');
    }
  }
}

}  // namespace
}  // namespace volfs::test
