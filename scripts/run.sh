#!/usr/bin/env bash
# Builds volfs and mounts it for interactive use (default ./mnt in the checkout, -o size=1G).
# Harmless to run again: a live volfs already mounted at the mountpoint is left as it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/run.sh [MOUNTPOINT] [-o OPTIONS]
  MOUNTPOINT  where to mount (default: mnt/ in the checkout); created if missing
  -o OPTIONS  mount options for the daemon (default: size=1G); may be repeated
EOF
}
die_usage() { echo "run.sh: $*" >&2; usage >&2; exit 2; }

mp="" opts=""
while (($#)); do
  case "$1" in
    -o) (($# >= 2)) || die_usage "-o needs a value"; opts="${opts:+$opts,}$2"; shift ;;
    -o?*) opts="${opts:+$opts,}${1#-o}" ;;
    -h | --help) usage; exit 0 ;;
    -*) die_usage "unknown option: $1" ;;
    *) [[ -z $mp ]] || die_usage "more than one mountpoint"; mp="$1" ;;
  esac
  shift
done
opts="${opts:-size=1G}"

dir="$("$root/scripts/build.sh")"
mp="$(realpath -m "${mp:-$root/mnt}")"
mounted() { findmnt -n -t fuse.volfs --mountpoint "$mp" >/dev/null; }

show() {
  echo "volfs is mounted at $mp"
  echo "  options: $(findmnt -n -t fuse.volfs -o OPTIONS --mountpoint "$mp")"
  echo "  unmount: fusermount3 -u $mp   (or: umount $mp)"
}

if mounted; then
  if ! stat "$mp" >/dev/null 2>&1; then
    echo "run.sh: $mp holds a stale volfs mount (its daemon is gone);" \
      "unmount it with: fusermount3 -u $mp" >&2
    exit 1
  fi
  echo "run.sh: volfs is already mounted there; leaving it as it is"
  show
  exit 0
fi

mkdir -p "$mp"
# Without -f the daemon detaches itself once the mount is set up.
"$dir/bin/volfs" "$mp" -o "$opts" || {
  echo "run.sh: volfs failed to start (exit status $?)" >&2
  exit 1
}
for _ in $(seq 100); do
  mounted && break
  sleep 0.1
done
if ! mounted; then
  echo "run.sh: volfs did not appear at $mp within 10 s (findmnt -t fuse.volfs)" >&2
  exit 1
fi
show
