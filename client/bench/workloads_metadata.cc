// workloads_metadata.cc: the metadata workload - create, stat and unlink of
// many small files in one directory, in operations per second, on volfs and
// on the baseline in the same run, reps alternating between the two.
//
// Every rep works in a fresh directory of its own on each side: N files are
// created (open O_CREAT|O_EXCL, one 4 KiB write, close), then stat(2)ed by
// path, then unlinked, each phase timed on its own; the directory is made and
// removed untimed. On volfs each step is one or more FUSE requests (see
// docs/benchmarks.md, "Metadata: where the time goes"); on tmpfs it is a
// syscall into the kernel's own dentry and inode caches.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "bench.h"

namespace volbench {
namespace {

constexpr uint64_t kFileBytes = 4 * kKiB;

// The files of one rep on one side: dir/f000000, dir/f000001, ...
std::vector<std::string> file_names(const std::string& dir, uint64_t n) {
  std::vector<std::string> names;
  names.reserve(n);
  char buf[32];
  for (uint64_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "/f%06llu", static_cast<unsigned long long>(i));
    names.push_back(dir + buf);
  }
  return names;
}

double kops(uint64_t n, double seconds) { return static_cast<double>(n) / seconds / 1e3; }

}  // namespace

void run_metadata(Env& env) {
  const uint64_t n = std::max<uint64_t>(env.cfg.ops / 10, 1);
  Buffer buf = pattern_buffer(kFileBytes);
  Row create = make_row("metadata", "create+4 KiB write+close", "kops/s", Better::kHigher);
  Row stat = make_row("metadata", "stat", "kops/s", Better::kHigher);
  Row unlink = make_row("metadata", "unlink", "kops/s", Better::kHigher);
  alternate(env.cfg.reps, [&](int side, int rep) {
    const std::string dir = (side == 0 ? env.vdir : env.bdir) + "/metadata." + std::to_string(rep);
    check(::mkdir(dir.c_str(), 0700) == 0, "mkdir " + dir);
    const std::vector<std::string> names = file_names(dir, n);

    double t0 = now_sec();
    for (const std::string& name : names) {
      Fd fd = open_file(name, O_WRONLY | O_CREAT | O_EXCL);
      check(::write(fd.get(), buf.get(), kFileBytes) == static_cast<ssize_t>(kFileBytes),
            "write " + name);
    }
    double t1 = now_sec();
    struct stat st {};
    for (const std::string& name : names) {
      check(::stat(name.c_str(), &st) == 0, "stat " + name);
      check(st.st_size == static_cast<off_t>(kFileBytes), "size of " + name);
    }
    double t2 = now_sec();
    for (const std::string& name : names) check(::unlink(name.c_str()) == 0, "unlink " + name);
    double t3 = now_sec();
    check(::rmdir(dir.c_str()) == 0, "rmdir " + dir);

    (side == 0 ? create.volfs : create.baseline).v.push_back(kops(n, t1 - t0));
    (side == 0 ? stat.volfs : stat.baseline).v.push_back(kops(n, t2 - t1));
    (side == 0 ? unlink.volfs : unlink.baseline).v.push_back(kops(n, t3 - t2));
  });
  const std::string files = std::to_string(n) + " files (--ops/10) in a fresh directory per rep";
  create.note = files + ": open(O_CREAT|O_EXCL), one 4 KiB write, close each";
  stat.note = files +
              ": stat(2) by path after the creates (volfs: one FUSE request each, a GETATTR "
              "for a name looked up less than 1 s before, a LOOKUP for an older one)";
  unlink.note = files + ": unlink(2) each, after the stats";
  env.report.add(create);
  env.report.add(stat);
  env.report.add(unlink);
}

}  // namespace volbench
