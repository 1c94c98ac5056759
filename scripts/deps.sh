#!/usr/bin/env bash
# Installs the Debian packages volfs needs to build, test and run, and checks for /dev/fuse.
# Idempotent: when every package is present it only asks dpkg and never runs apt-get.
set -euo pipefail

usage() { echo "usage: scripts/deps.sh [--help]"; }
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

# fuse3: fusermount3; util-linux: findmnt; mount: umount; kmod: modprobe;
# googletest: the gtest/gmock sources; clang-format, clang-tidy: scripts/lint.sh;
# clang-14, libclang-rt-14-dev: clang++-14 and libFuzzer for the fuzz targets (fuzz/).
packages=(fuse3 libfuse3-dev libboost-dev cmake g++ make pkg-config libgtest-dev libgmock-dev
  googletest valgrind clang-format clang-tidy clang-14 libclang-rt-14-dev util-linux mount kmod)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == *"ok installed"* ]] || missing+=("$pkg")
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
