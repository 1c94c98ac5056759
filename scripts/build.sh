#!/usr/bin/env bash
# Builds volfs with CMake into build/ (plain), build-asan/ (ASan+UBSan) or build-tsan/ (TSan).
# Progress goes to stderr; on success the absolute build directory is the only line on stdout,
# so other scripts can write dir="$(scripts/build.sh --asan)". Executables are in DIR/bin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/build.sh [--asan|--tsan] [--type Release|Debug|RelWithDebInfo]
  --asan       AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
  --tsan       ThreadSanitizer build in build-tsan/
  --type TYPE  CMake build type (default RelWithDebInfo)
Without --asan/--tsan it builds in build/. Prints the build directory on success.
EOF
}
die_usage() { echo "build.sh: $*" >&2; usage >&2; exit 2; }

sanitize="" type="RelWithDebInfo"
while (($#)); do
  case "$1" in
    --asan | --tsan)
      want=address; [[ $1 == --asan ]] || want=thread
      [[ -z $sanitize || $sanitize == "$want" ]] || die_usage "--asan and --tsan exclude each other"
      sanitize="$want" ;;
    --type) (($# >= 2)) || die_usage "--type needs a value"; type="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument: $1" ;;
  esac
  shift
done
case "$type" in
  Release | Debug | RelWithDebInfo) ;;
  *) die_usage "unknown build type: $type" ;;
esac
case "$sanitize" in
  address) dir="$root/build-asan" ;;
  thread) dir="$root/build-tsan" ;;
  *) dir="$root/build" ;;
esac

"$root/scripts/deps.sh" >&2
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DVOLFS_SANITIZE="$sanitize" >&2
cmake --build "$dir" -j"$(nproc)" >&2
echo "$dir"
