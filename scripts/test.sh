#!/usr/bin/env bash
# Builds volfs and runs its ctest suite: plain, under ASan+UBSan, TSan, or with the daemon under
# Valgrind. Tests get a private TMPDIR; afterwards, even when interrupted, any mount left under
# it is lazily unmounted, named in a warning, and fails the run: tests must never leak mounts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/test.sh [--asan|--tsan|--valgrind] [--label L] [-- CTEST_ARGS...]
  --asan      test the build-asan/ build (ASan+UBSan, halting on the first report)
  --tsan      test the build-tsan/ build (TSan, halting on the first report)
  --valgrind  plain build; only tests labelled integration or shell, one at a time, with the
              daemon started under valgrind (VOLFS_DAEMON_WRAPPER)
  --label L   only tests carrying label L (unit, integration, shell, fuzz; a regex for whole
              labels). fuzz: the libFuzzer smoke runs, in the plain build only
  -- ARGS     passed on to ctest, e.g. -- -R range_map --repeat until-fail:3
Tests without a TIMEOUT property get 600 s; failed runs keep their temp files (daemon logs).
EOF
}
die_usage() { echo "test.sh: $*" >&2; usage >&2; exit 2; }

mode="" label="" extra=()
while (($#)); do
  case "$1" in
    --asan | --tsan | --valgrind)
      [[ -z $mode || $mode == "${1#--}" ]] || die_usage "use one of --asan, --tsan, --valgrind"
      mode="${1#--}" ;;
    --label) (($# >= 2)) || die_usage "--label needs a value"; label="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die_usage "unknown argument: $1" ;;
  esac
  shift
done

build_args=() jobs=2 filters=()
case "$mode" in
  asan | tsan) build_args=("--$mode") ;;
  valgrind) jobs=1; filters=(-L '^(integration|shell)$') ;;
esac
[[ -z $label ]] || filters+=(-L "^($label)\$") # several -L must all match
dir="$("$root/scripts/build.sh" "${build_args[@]}")"

case "$mode" in
  asan)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
  tsan) export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/scripts/tsan.supp" ;;
  valgrind)
    export VOLFS_DAEMON_WRAPPER="valgrind --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --track-fds=no -q" ;;
esac

# A private temp root, so that this run never touches the mounts of a concurrent run. Mode 1777
# as /tmp has: tests that drop privileges must still reach (and create) things under it.
run_tmp="$(mktemp -d "$(realpath -m "${TMPDIR:-/tmp}")/volfs-run.XXXXXX")"
chmod 1777 "$run_tmp"
export TMPDIR="$run_tmp"

finish() {
  local rc=$? target fstype leaked=0
  trap - EXIT
  # Deepest first; findmnt -r escapes blanks and backslashes as \xNN.
  while read -r target fstype; do
    target="$(printf '%b' "$target")"
    [[ $target == "$run_tmp"/* ]] || continue
    echo "test.sh: !!! WARNING: a test leaked the $fstype mount $target; unmounting it lazily" >&2
    fusermount3 -u -z "$target" 2>/dev/null || umount -l "$target" || true
    leaked=$((leaked + 1))
  done < <(findmnt -rn -o TARGET,FSTYPE | sort -r)
  if ((leaked)); then
    echo "test.sh: !!! FAILED: $leaked leaked mount(s); tests must always unmount" >&2
    ((rc)) || rc=1
  fi
  if ((rc == 0)); then
    rm -rf --one-file-system "$run_tmp"
  elif ! rmdir "$run_tmp" 2>/dev/null; then
    echo "test.sh: test temp files kept in $run_tmp" >&2
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctest_args=(--test-dir "$dir" --output-on-failure --no-tests=error --timeout 600 -j"$jobs"
  "${filters[@]}" "${extra[@]}")
echo "test.sh: ctest ${ctest_args[*]}" >&2
ctest "${ctest_args[@]}"
