// volfs daemon entry point: parses the command line (mount.fuse3 style too),
// sets up the FUSE session with the handler table, mounts, serves requests on
// a multi-threaded loop, and tears everything down on unmount or a signal.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "core/pressure.h"
#include "counted_operations.h"
#include "daemon.h"
#include "readahead.h"
#include "request_loop.h"

namespace volfs {
namespace {

constexpr const char* kVersion = "0.1.0";

struct CommandLine {
  MountOptions options;
  std::vector<std::string> positional;  // [SOURCE] MOUNTPOINT
  std::string error;
  uint64_t ram_bytes = 0;
  bool fsname_given = false;
  bool xattr = true;
};

void usage(const char* prog) {
  std::printf(
      "usage: %s [SOURCE] MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]\n"
      "\n"
      "A FUSE filesystem of shared-memory files with volatile ranges.\n"
      "\n"
      "volfs options:\n"
      "    -o size=N              limit of stored data: bytes with k/m/g/t suffix,\n"
      "                           or N%% of RAM (default 50%%)\n"
      "    -o nr_inodes=N         limit of inodes (default: half the RAM pages)\n"
      "    -o mode=M              permission bits of the root directory (default 1777)\n"
      "    -o uid=U,gid=G         owner of the root directory (default: who mounts)\n"
      "    -o purge_high=P%%       purge volatile pages in the background when stored\n"
      "                           data exceeds P%% of size=, down to purge_low=\n"
      "    -o purge_low=Q%%        (default: purge_high minus 10)\n"
      "    -o readahead=N         kernel read-ahead of the mount, with k/m suffix;\n"
      "                           0 keeps the kernel's default (default 512k)\n"
      "    -o noxattr             no extended attributes (EOPNOTSUPP)\n"
      "    -o passthrough=on|off  FUSE passthrough of regular files to their stores\n"
      "                           where the kernel allows it (default on)\n"
      "    -o purge_on_mark       debug: purge every range as soon as it is marked\n"
      "\n"
      "system memory pressure (docs/volatile-ranges.md):\n"
      "    -o mem_min=N           keep MemAvailable above N bytes (k/m/g/t) or N%% of\n"
      "                           RAM by purging (default 5%% of RAM, 64m..2g; 0: off)\n"
      "    -o pressure_step=N     purged beyond a shortfall, to keep clear of it (64m)\n"
      "    -o psi_some=S/W        PSI trigger: S ms of 'some' stall in W ms (150/2000)\n"
      "    -o psi_full=S/W        PSI trigger: S ms of 'full' stall in W ms (50/2000)\n"
      "    -o psi=off             no PSI triggers\n"
      "    -o cgroup=on|off       keep headroom below the daemon's memory cgroup limit (on)\n"
      "    -o cgroup_min=N        that headroom: bytes or N%% of the limit (5%%, 16m..1g)\n"
      "    -o nopressure          all of these off\n"
      "\n",
      prog);
}

// fuse_opt callback: takes our own options out of the argument list, leaves
// FUSE's to libfuse, and collects the positional arguments.
int take_option(void* data, const char* arg, int key, fuse_args*) {
  auto& cl = *static_cast<CommandLine*>(data);
  if (key == FUSE_OPT_KEY_NONOPT) {
    cl.positional.emplace_back(arg);
    return 0;
  }
  if (key != FUSE_OPT_KEY_OPT) return 1;
  std::string_view a(arg);
  auto value_of = [&](std::string_view name) -> std::optional<std::string_view> {
    if (a.size() > name.size() && a.substr(0, name.size()) == name && a[name.size()] == '=') {
      return a.substr(name.size() + 1);
    }
    return std::nullopt;
  };
  auto fail = [&](std::string_view name, std::string_view v) {
    if (cl.error.empty()) {
      cl.error = "invalid value for " + std::string(name) + "=: '" + std::string(v) + "'";
    }
    return 0;
  };
  if (auto v = value_of("size")) {
    Result<uint64_t> r = parse_size(*v, cl.ram_bytes);
    if (!r.ok()) return fail("size", *v);
    cl.options.size_bytes = *r;
    return 0;
  }
  if (auto v = value_of("nr_inodes")) {
    Result<uint64_t> r = parse_count(*v);
    if (!r.ok()) return fail("nr_inodes", *v);
    cl.options.nr_inodes = *r;
    return 0;
  }
  if (auto v = value_of("mode")) {
    Result<mode_t> r = parse_mode(*v);
    if (!r.ok()) return fail("mode", *v);
    cl.options.root_mode = *r;
    return 0;
  }
  if (auto v = value_of("uid")) {
    Result<uint64_t> r = parse_count(*v);
    if (!r.ok() || *r >= UINT32_MAX) return fail("uid", *v);
    cl.options.uid = static_cast<uid_t>(*r);
    return 0;
  }
  if (auto v = value_of("gid")) {
    Result<uint64_t> r = parse_count(*v);
    if (!r.ok() || *r >= UINT32_MAX) return fail("gid", *v);
    cl.options.gid = static_cast<gid_t>(*r);
    return 0;
  }
  if (auto v = value_of("readahead")) {
    Result<uint64_t> r = parse_count(*v);
    if (!r.ok()) return fail("readahead", *v);
    cl.options.readahead_bytes = *r;
    return 0;
  }
  if (auto v = value_of("purge_high")) {
    Result<unsigned> r = parse_percent(*v);
    if (!r.ok() || *r == 0) return fail("purge_high", *v);
    cl.options.purge_high_pct = *r;
    return 0;
  }
  if (auto v = value_of("purge_low")) {
    Result<unsigned> r = parse_percent(*v);
    if (!r.ok()) return fail("purge_low", *v);
    cl.options.purge_low_pct = *r;
    return 0;
  }
  if (std::optional<std::string> e = parse_pressure_option(a, cl.ram_bytes, cl.options.pressure)) {
    if (!e->empty() && cl.error.empty()) cl.error = *e;
    return 0;
  }
  if (a.substr(0, 7) == "fsname=") cl.fsname_given = true;  // left for libfuse
  if (a == "noxattr") {
    cl.xattr = false;
    return 0;
  }
  if (auto v = value_of("passthrough")) {
    if (*v != "on" && *v != "off") return fail("passthrough", *v);
    cl.options.passthrough = *v == "on";
    return 0;
  }
  if (a == "purge_on_mark") {
    cl.options.purge_on_mark = true;
    return 0;
  }
  return 1;  // FUSE's own, or unknown: fuse_session_new judges
}

// Feature flags: libfuse 3.17 keeps what the filesystem wants in the 64-bit want_ext, changed
// through these helpers (which keep the old 32-bit want in step); 3.16 has only want. Neither
// asks for a feature the kernel lacks: libfuse would fail the whole init for it.
// Returns whether the flag is wanted now.
bool want_feature(fuse_conn_info* conn, uint64_t flag) {
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 17)
  return fuse_set_feature_flag(conn, flag);
#else
  if (!(conn->capable & flag)) return false;
  conn->want |= flag;
  return true;
#endif
}

void drop_feature(fuse_conn_info* conn, uint64_t flag) {
#if FUSE_VERSION >= FUSE_MAKE_VERSION(3, 17)
  fuse_unset_feature_flag(conn, flag);
#else
  conn->want &= ~flag;
#endif
}

void init(void* userdata, fuse_conn_info* conn) {
  auto& d = *static_cast<Daemon*>(userdata);
  conn->max_write = 1 << 20;
  // Read-ahead (see readahead.h): the reply carries our value only if the
  // bdi took it too; otherwise the kernel's default stays.
  if (d.readahead_bytes && !d.mountpoint.empty()) {
    std::optional<std::string> dev = volfs_mount_device(d.mountpoint);
    if (dev && set_bdi_readahead(*dev, d.readahead_bytes)) {
      conn->max_readahead = static_cast<unsigned>(d.readahead_bytes);
    }
  }
  want_feature(conn, FUSE_CAP_IOCTL_DIR);
  want_feature(conn, FUSE_CAP_ATOMIC_O_TRUNC);
  want_feature(conn, FUSE_CAP_SPLICE_WRITE);
  // Without it the kernel asks for security.capability (GETXATTR) before
  // every write(2) to learn whether the write must clear privileges, which
  // costs a passthrough write ten times its own time. With it the kernel
  // asks once per change of the inode's attributes, and the daemon clears
  // setuid/setgid where the kernel's SETATTR or OPEN says so (privileges.h,
  // fuse_entry.cc); the kernel still removes security.capability itself.
  if (want_feature(conn, FUSE_CAP_HANDLE_KILLPRIV_V2)) d.killpriv_v2.store(true);
  // Passthrough needs the kernel's consent and a store that enforces size=
  // itself (the private tmpfs); opens then go to the cached mode only for
  // strict files or where the kernel refuses a backing file (it needs
  // CAP_SYS_ADMIN). The daemon never caches data of its own, so the stack
  // depth the kernel must allow is tmpfs's (0), which libfuse's default of
  // max_backing_stack_depth covers.
  if (d.fs.options().passthrough) {
    const char* why = nullptr;
    if (!(conn->capable & FUSE_CAP_PASSTHROUGH)) {
      why = "the kernel does not offer FUSE passthrough";
    } else if (!d.fs.backing().private_tmpfs()) {
      why = d.fs.backing().fallback_reason().c_str();
    } else {
      want_feature(conn, FUSE_CAP_PASSTHROUGH);
      d.fs.set_passthrough(true);
    }
    if (why) {
      fuse_log(FUSE_LOG_WARNING, "volfs: no FUSE passthrough (%s); using the cached io mode\n",
               why);
    }
  }
  // The kernel's cache is only ever changed by this kernel or by our
  // explicit invalidations: never drop it because mtime moved.
  for (uint64_t flag : {FUSE_CAP_AUTO_INVAL_DATA, FUSE_CAP_WRITEBACK_CACHE,
                        FUSE_CAP_HANDLE_KILLPRIV, FUSE_CAP_POSIX_ACL}) {
    drop_feature(conn, flag);
  }
}

// The handler table, every entry counted (counted_operations.h).
fuse_lowlevel_ops operations(Daemon& d, bool xattr) {
  fuse_lowlevel_ops ops{};
  ops.init = init;
  assign_entry_operations(ops);
  assign_dir_operations(ops);
  assign_io_operations(ops);
  assign_ioctl_operations(ops);
  // Without handlers libfuse answers ENOSYS, after which the kernel fails
  // every xattr call with EOPNOTSUPP by itself. (That once also saved the
  // security.capability question before each write(2); KILLPRIV_V2 does now.)
  if (xattr) assign_xattr_operations(ops);
  return counted_operations(d, ops);
}

int run(int argc, char** argv) {
  const uint64_t page_size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  CommandLine cl;
  cl.ram_bytes = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * page_size;
  cl.options = default_mount_options(cl.ram_bytes, page_size);
  cl.options.uid = getuid();
  cl.options.gid = getgid();

  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  if (fuse_opt_parse(&args, &cl, nullptr, take_option) != 0) {
    fuse_opt_free_args(&args);
    return 2;
  }
  fuse_cmdline_opts opts{};
  if (fuse_parse_cmdline(&args, &opts) != 0) {
    fuse_opt_free_args(&args);
    return 2;
  }
  int status = 1;
  std::unique_ptr<Daemon> daemon;
  fuse_session* se = nullptr;
  std::unique_ptr<FuseInvalidator> invalidator;
  std::string mountpoint, source = "volfs";
  SystemPressure pressure;
  if (opts.show_help) {
    usage(argv[0]);
    fuse_cmdline_help();
    fuse_lowlevel_help();
    status = 0;
    goto out;
  }
  if (opts.show_version) {
    std::printf("volfs version %s, libfuse %s\n", kVersion, fuse_pkgversion());
    status = 0;
    goto out;
  }
  if (!cl.error.empty()) {
    std::fprintf(stderr, "volfs: %s\n", cl.error.c_str());
    goto out;
  }
  if (std::string err = validate(cl.options, page_size); !err.empty()) {
    std::fprintf(stderr, "volfs: %s\n", err.c_str());
    goto out;
  }
  if (std::string err = validate_pressure(cl.options.pressure, cl.ram_bytes); !err.empty()) {
    std::fprintf(stderr, "volfs: %s\n", err.c_str());
    goto out;
  }
  if (cl.positional.size() == 1) {
    mountpoint = cl.positional[0];
  } else if (cl.positional.size() == 2) {
    source = cl.positional[0];
    mountpoint = cl.positional[1];
  } else {
    std::fprintf(stderr, "volfs: %s; see '%s --help'\n",
                 cl.positional.empty() ? "no mountpoint given" : "too many arguments", argv[0]);
    goto out;
  }
  // Before mounting: a trigger the kernel refuses (when given explicitly)
  // must leave nothing mounted.
  pressure = open_system_pressure(cl.options.pressure, std::make_shared<RealPressureEnv>());
  if (!pressure.error.empty()) {
    std::fprintf(stderr, "volfs: %s\n", pressure.error.c_str());
    goto out;
  }
  if (cl.options.purge_high_pct && !cl.options.purge_low_pct) {
    cl.options.purge_low_pct = cl.options.purge_high_pct > 10 ? cl.options.purge_high_pct - 10 : 0;
  }
  {
    // Permissions are always the kernel's to check, so a multi-user mount
    // with allow_other is safe; the type shows as fuse.volfs.
    std::string fuse_opts = "-odefault_permissions,subtype=volfs";
    if (!cl.fsname_given) fuse_opts += ",fsname=" + source;
    // Without it the kernel would not check permissions at all: no mount.
    if (fuse_opt_add_arg(&args, fuse_opts.c_str()) != 0) {
      std::fprintf(stderr, "volfs: out of memory adding the mount options\n");
      goto out;
    }
  }
  {
    // Stores live on a private tmpfs with the mount's limits; where the
    // daemon may not mount one (no CAP_SYS_ADMIN), memfds, and no
    // passthrough, since only the tmpfs enforces size= on its own.
    Backing backing = Backing::make(cl.options.size_bytes, cl.options.nr_inodes);
    daemon = std::make_unique<Daemon>(cl.options, page_size, std::move(backing));
  }
  daemon->owner_uid = getuid();
  {
    fuse_lowlevel_ops ops = operations(*daemon, cl.xattr);
    se = fuse_session_new(&args, &ops, sizeof(ops), daemon.get());
  }
  if (!se) goto out;  // libfuse printed which option it did not know
  if (fuse_set_signal_handlers(se) != 0) goto out_destroy;
  // Resolved before mounting: afterwards a lookup of it would wait for us.
  if (char* abs = realpath(mountpoint.c_str(), nullptr)) {
    daemon->mountpoint = abs;
    free(abs);
  }
  daemon->readahead_bytes = cl.options.readahead_bytes;
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) goto out_signals;
  // A daemon that could not detach (fork, setsid or chdir failed) would hold
  // mount(8) or the shell forever; unmount and say so instead.
  if (fuse_daemonize(opts.foreground) != 0) {
    std::fprintf(stderr, "volfs: could not run in the background; unmounting\n");
    fuse_session_unmount(se);
    goto out_signals;
  }
  invalidator = std::make_unique<FuseInvalidator>(se);
  // After daemonizing, so that with -f they reach the log, and not the
  // terminal of every mount otherwise.
  for (const std::string& note : pressure.notes) std::fprintf(stderr, "volfs: %s\n", note.c_str());
  daemon->fs.start(invalidator.get(), std::move(pressure.sources));
  if (opts.singlethread) {
    status = fuse_session_loop(se);
  } else {
    // A purge's invalidation waits for write-backs that other threads serve:
    // allow plenty (libfuse's own default is 10; -o max_threads= may raise it).
    constexpr unsigned kMinThreads = 16, kDefaultThreads = 64, kMaxThreads = 100000;
    unsigned threads = opts.max_threads > 0 && opts.max_threads <= kMaxThreads
                           ? std::max(opts.max_threads, kMinThreads)
                           : kDefaultThreads;
    if (opts.clone_fd) {
      // A /dev/fuse fd per worker, read in parallel: libfuse's loop, which
      // does not declare a RELEASE before the next read (request_loop.h).
      fuse_loop_config* cfg = fuse_loop_cfg_create();
      fuse_loop_cfg_set_clone_fd(cfg, 1);
      fuse_loop_cfg_set_max_threads(cfg, threads);
      if (opts.max_idle_threads != UINT_MAX) {  // UINT_MAX: not given
        fuse_loop_cfg_set_idle_threads(cfg, opts.max_idle_threads);
      }
      status = fuse_session_loop_mt(se, cfg);
      fuse_loop_cfg_destroy(cfg);
    } else {
      status = serve_requests(se, daemon->fs,
                              {.max_threads = threads, .max_idle_threads = opts.max_idle_threads});
    }
  }
  // A signal ends the loop with its number; that is a clean stop.
  if (status > 0) status = 0;
  // An unmount ends the loop with ENODEV, which libfuse takes as a clean
  // stop, but a worker that took a request off the queue just as the
  // unmount shut the connection reads ECONNABORTED instead, which libfuse
  // reports as an error ("reading device"). Either way the kernel has ended
  // the connection and nothing is left to serve: also a clean stop.
  if (status == -ECONNABORTED) {
    std::fprintf(stderr, "volfs: the kernel ended the FUSE connection (unmounted or aborted)\n");
    status = 0;
  }
  daemon->fs.stop();
  daemon->files.clear();
  fuse_session_unmount(se);
out_signals:
  fuse_remove_signal_handlers(se);
out_destroy:
  fuse_session_destroy(se);
out:
  if (status < 0) status = 1;
  daemon.reset();
  free(opts.mountpoint);
  fuse_opt_free_args(&args);
  return status;
}

}  // namespace
}  // namespace volfs

int main(int argc, char** argv) { return volfs::run(argc, argv); }
