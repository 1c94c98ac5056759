#!/usr/bin/env bash
# Installs the Debian packages volfs needs to build, test and run, checks for /dev/fuse, and,
# where the system's libfuse is older than 3.16 (bookworm ships 3.14), builds Debian trixie's
# libfuse once into .deps/libfuse (a static library, its headers and fuse3.pc), which CMake prefers.
# Idempotent: when all is there it only asks dpkg and reads a stamp file, and never runs apt-get.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { echo "usage: scripts/deps.sh [--help]"; }
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

# fuse3: fusermount3 (which our own libfuse runs, too); util-linux: findmnt, flock; mount: umount;
# kmod: modprobe; googletest: the gtest/gmock sources; attr: setfattr (the io mode, in shell
# tests); clang-format, clang-tidy: scripts/lint.sh; clang-14, libclang-rt-14-dev: clang++-14 and
# libFuzzer for the fuzz targets (fuzz/). To build libfuse (below): dpkg-dev (dpkg-source unpacks
# the source package), xz-utils, patch, meson, ninja-build, gcc, and debian-archive-keyring, whose
# keys verify trixie's Release file.
packages=(fuse3 libfuse3-dev libboost-dev cmake g++ make pkg-config libgtest-dev libgmock-dev
  googletest valgrind clang-format clang-tidy clang-14 libclang-rt-14-dev util-linux mount kmod attr
  gcc meson ninja-build dpkg-dev xz-utils patch debian-archive-keyring)

# One dpkg-query for all (one per package took 0.7 s on a busy machine); it fails when some
# package is unknown to dpkg, which the loop below counts as missing.
declare -A installed=()
while read -r pkg status; do
  [[ $status == *"ok installed"* ]] && installed[$pkg]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for pkg in "${packages[@]}"; do
  [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "deps.sh: installing ${missing[*]}" >&2
  as_root=(env DEBIAN_FRONTEND=noninteractive)
  [[ $EUID -eq 0 ]] || as_root=(sudo "${as_root[@]}")
  "${as_root[@]}" apt-get update -qq </dev/null
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if [[ ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || true
fi
if [[ ! -c /dev/fuse ]]; then
  echo "deps.sh: /dev/fuse does not exist, so nothing can mount volfs here." >&2
  echo "deps.sh: load the module (modprobe fuse) or, in a container, pass --device /dev/fuse" \
    "--cap-add SYS_ADMIN." >&2
  exit 1
fi

# --- libfuse >= 3.16 (FUSE passthrough) ------------------------------------------------------
# Debian's fuse3 source package of trixie, fetched by apt-get with its own sources list, lists
# and cache under .deps/work (the machine's apt configuration stays as it is), built with meson
# with scripts/libfuse-auto-unmount.patch applied, and installed into .deps/libfuse
# (git-ignored). The stamp, written last, names the version and the recipe: libfuse_recipe
# and the patch's hash. Bump libfuse_recipe whenever the build below changes, so that the next
# run builds again.
libfuse_min=3.16
libfuse_suite=trixie
libfuse_patch="$root/scripts/libfuse-auto-unmount.patch"
libfuse_recipe="1-$(sha256sum <"$libfuse_patch" | cut -c 1-16)"
deps_dir="$root/.deps"
prefix="$deps_dir/libfuse"
stamp="$prefix/volfs-build.stamp"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

built_ok() {
  [[ -f $prefix/lib/pkgconfig/fuse3.pc ]] && grep -qx "recipe=$libfuse_recipe" "$stamp" 2>/dev/null
}
system_ok() { pkg-config --atleast-version="$libfuse_min" fuse3 2>/dev/null; }

# The Debian archive this machine's apt uses (a local mirror or proxy works here where
# deb.debian.org may not); VOLFS_DEBIAN_MIRROR overrides it.
debian_mirror() {
  local uri
  uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | sed 's/#.*//' |
    grep -oE '(https?|file)://[^][:space:]]+' | grep -E '/debian/?$' | head -n 1 || true)"
  echo "${VOLFS_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# Runs a command with its output in LOG, which is shown only if the command fails.
logged() {
  local log="$1"
  shift
  "$@" </dev/null >"$log" 2>&1 || { local rc=$?; cat "$log" >&2; return "$rc"; }
}

build_libfuse() {
  local work="$deps_dir/work" start=$SECONDS
  rm -rf "$work"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
  local mirror
  mirror="$(debian_mirror)"
  echo "deps.sh: system libfuse is older than $libfuse_min; building the fuse3 source package" \
    "of Debian $libfuse_suite from $mirror into $prefix" >&2

  # Authenticated all the way, no --allow-unauthenticated: trixie's InRelease is signed by the
  # archive's automatic key for bookworm as well as by trixie's keys, and bookworm's
  # debian-archive-keyring (2023.3+deb12u2) holds them all; apt checks that signature
  # against this keyring only (signed-by), then the Sources index against InRelease, and the
  # .dsc and both tarballs against the hashes in Sources. (dpkg-source would also check the
  # uploader's signature on the .dsc, but that needs the debian-keyring package, 70 MB: it
  # says it cannot and goes on, which adds nothing to the chain above.)
  echo "deb-src [signed-by=$keyring] $mirror $libfuse_suite main" >"$work/apt/sources.list"
  local apt=(apt-get -q
    -o Dir::Etc::sourcelist="$work/apt/sources.list" -o Dir::Etc::sourceparts=-
    -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache")
  if ! logged "$work/update.log" "${apt[@]}" update --error-on=any; then
    echo "deps.sh: could not fetch or verify the $libfuse_suite source index from $mirror." >&2
    echo "deps.sh: a NO_PUBKEY error means $keyring lacks $libfuse_suite's keys:" \
      "apt-get install --only-upgrade debian-archive-keyring" >&2
    exit 1
  fi
  # As root apt downloads as the user _apt, which must be able to write where it downloads.
  if [[ $EUID -eq 0 ]] && id -u _apt >/dev/null 2>&1; then chown _apt "$work/src"; fi
  (cd "$work/src" && logged "$work/source.log" "${apt[@]}" source --only-source fuse3)

  local dsc version upstream
  dsc="$(echo "$work"/src/fuse3_*.dsc)"
  version="$(sed -n 's/^Version: //p' "$dsc")"
  upstream="${version%-*}"
  upstream="${upstream#*:}"
  if ! dpkg --compare-versions "$upstream" ge "$libfuse_min"; then
    echo "deps.sh: $libfuse_suite has fuse3 $version, older than $libfuse_min" >&2
    exit 1
  fi
  local src="$work/src/fuse3-$upstream"
  if ! patch -d "$src" -p1 --forward --quiet <"$libfuse_patch"; then
    echo "deps.sh: $libfuse_patch does not apply to fuse3 $version; update it" >&2
    exit 1
  fi

  # Only the library: no fusermount3/mount.fuse3 (the fuse3 package's stay in use), examples,
  # tests or docs, so none of their build dependencies. Static, so volfs needs no
  # LD_LIBRARY_PATH or RPATH. --bindir=/usr/bin: libfuse runs fusermount3 (to mount as non-root
  # or with auto_unmount, and to unmount as non-root) from the compiled-in FUSERMOUNT_DIR, which
  # is prefix/bindir, and only then from PATH; /usr/bin is where the fuse3 package puts it.
  logged "$work/meson.log" meson setup "$work/build" "$src" \
    --prefix="$prefix" --libdir=lib --bindir=/usr/bin --buildtype=debugoptimized \
    -Ddefault_library=static -Dutils=false -Dexamples=false -Dtests=false
  logged "$work/ninja.log" ninja -C "$work/build" -j"$(nproc)"
  rm -rf "$prefix"
  meson install -C "$work/build" --no-rebuild --quiet >&2
  mkdir -p "$prefix/share/doc/libfuse"
  cp "$src/debian/copyright" "$src/LGPL2.txt" "$prefix/share/doc/libfuse/"
  printf 'recipe=%s\nversion=%s\nsource=%s %s\n' "$libfuse_recipe" "$version" "$mirror" \
    "$libfuse_suite" >"$stamp"
  rm -rf "$work"
  echo "deps.sh: built libfuse $version into $prefix in $((SECONDS - start)) s" >&2
}

if ! built_ok && ! system_ok; then
  mkdir -p "$deps_dir"
  # One build at a time, even when two builds of this checkout start together.
  exec {lock_fd}>"$deps_dir/.lock"
  flock "$lock_fd"
  # (Not `built_ok || build_libfuse`: set -e does not apply inside the right side of ||.)
  if ! built_ok; then build_libfuse; fi
  exec {lock_fd}>&-
fi
