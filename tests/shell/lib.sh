# shellcheck shell=bash
# lib.sh: helpers shared by the volfs shell tests; each test sources it first.
# Invariant: once volfs_mount has run, the EXIT trap always unmounts that mount,
# reaps its daemon and removes the temporary directory, whatever happened (a
# failed check, an error under `set -e`, Ctrl-C), and fails the test if the
# daemon exited non-zero or its log shows a sanitizer or Valgrind report.
#
# A test script is run as   TEST.sh [VOLFS [VOLCTL]]
# (defaults: $VOLFS and $VOLCTL, else `volfs` and `volctl` from PATH), so the
# same scripts work against a build tree (ctest passes build/bin/...) and an
# installed volfs. $VOLFS_DAEMON_WRAPPER, if set, is a command prefix for the
# daemon, e.g. "valgrind --error-exitcode=99 -q".
# Exit status: 0 pass, 1 fail, 77 skip (ctest's SKIP_RETURN_CODE).

set -euo pipefail

VOLFS="${1:-${VOLFS:-volfs}}"
VOLCTL="${2:-${VOLCTL:-volctl}}"
# shellcheck disable=SC2034 # used by the tests that source this file
PAGE="$(getconf PAGESIZE)"

TEST_NAME="$(basename "$0" .sh)"
TEST_DIR="" MNT="" LOG="" DAEMON_PID=""

# ---- Reporting ---------------------------------------------------------------

note() { echo "[$TEST_NAME] $*"; }
fail() {
  echo "[$TEST_NAME] FAIL: $*" >&2
  exit 1
}
skip() {
  echo "[$TEST_NAME] SKIP: $*"
  exit 77
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
  [[ "$1" == "$2" ]] || fail "$3: got '$1', expected '$2'"
}

# run CMD...: runs CMD without letting `set -e` end the script, and leaves its
# exit status in RC, its stdout in OUT and its stderr in ERR.
run() {
  [[ -n "$TEST_DIR" ]] || make_test_dir
  local out_file="$TEST_DIR/run.out" err_file="$TEST_DIR/run.err"
  RC=0
  "$@" >"$out_file" 2>"$err_file" || RC=$?
  OUT="$(tr -d '\0' <"$out_file")" # binary output is not for comparing
  ERR="$(cat "$err_file")"
}

# expect_status N CMD...: runs CMD (see run) and checks its exit status.
expect_status() {
  local want="$1"
  shift
  run "$@"
  [[ "$RC" == "$want" ]] ||
    fail "'$*' exited $RC, expected $want (stdout: '$OUT', stderr: '$ERR')"
}

# expect_stderr_line PATTERN: the last command wrote exactly one line to
# stderr, and it matches the extended regex PATTERN.
expect_stderr_line() {
  local lines
  lines="$(printf '%s' "$ERR" | grep -c '' || true)"
  [[ "$lines" == 1 ]] || fail "expected one line on stderr, got $lines: '$ERR'"
  grep -Eq -- "$1" <<<"$ERR" || fail "stderr '$ERR' does not match /$1/"
}

# ---- volctl output -----------------------------------------------------------

# json_field KEY JSON: the number that KEY has in the flat JSON object JSON.
json_field() {
  sed -n "s/.*\"$1\": \([0-9][0-9]*\).*/\1/p" <<<"$2"
}

# expect_stats PATH KEY=VALUE...: `volctl stats --json PATH` has exactly these
# values for these keys (the others are not checked).
expect_stats() {
  local path="$1" json kv key want got
  shift
  json="$("$VOLCTL" stats --json "$path")"
  for kv in "$@"; do
    key="${kv%%=*}" want="${kv#*=}"
    got="$(json_field "$key" "$json")"
    [[ "$got" == "$want" ]] || fail "stats $key is '$got', expected $want (in $json)"
  done
}

# expect_range_status FILE OFFSET LENGTH KEY=VALUE...: the same for
# `volctl status --json FILE --offset OFFSET --length LENGTH`.
expect_range_status() {
  local file="$1" offset="$2" length="$3" json kv key want got
  shift 3
  json="$("$VOLCTL" status --json "$file" --offset "$offset" --length "$length")"
  for kv in "$@"; do
    key="${kv%%=*}" want="${kv#*=}"
    got="$(json_field "$key" "$json")"
    [[ "$got" == "$want" ]] ||
      fail "status [$offset, +$length) $key is '$got', expected $want (in $json)"
  done
}

# ---- Mounting ----------------------------------------------------------------

# True while /proc/self/mountinfo shows a volfs mount at $MNT. Read from
# /proc rather than by stat(), so a hung daemon cannot hang the test.
is_mounted() {
  [[ -n "$MNT" ]] &&
    awk -v m="$MNT" '$5 == m && / - fuse(\.volfs)? / { found = 1 } END { exit !found }' \
      /proc/self/mountinfo
}

# Log lines that mean the daemon has a memory or UB error (as the C++ fixture).
memory_error_in_log() {
  grep -E -m1 'ERROR: AddressSanitizer|runtime error:|WARNING: ThreadSanitizer|ERROR: LeakSanitizer|Invalid (read|write|free)|Mismatched free|ERROR SUMMARY: [1-9]|definitely lost: [1-9]' \
    "$LOG"
}

# wait_gone PID SECONDS: true once PID has exited (bash reaps its children as
# they exit, so kill -0 then fails), false if still there after SECONDS.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

# The EXIT trap: unmount, reap the daemon, judge it, clean up.
cleanup() {
  local rc=$? status=0
  trap - EXIT
  set +e
  if is_mounted; then
    # A plain unmount, as a user would; a busy mount (something still has a
    # file open) is retried, then detached lazily. fusermount3 for non-root.
    umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null ||
      { sleep 1 && umount "$MNT" 2>/dev/null; } ||
      umount -l "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"
  fi
  if [[ -n "$DAEMON_PID" ]]; then
    # After an unmount the daemon exits by itself; a hung one gets SIGTERM,
    # then SIGKILL, and fails the test.
    if ! wait_gone "$DAEMON_PID" 10; then
      echo "[$TEST_NAME] FAIL: daemon still running 10 s after unmount; SIGTERM" >&2
      kill -TERM "$DAEMON_PID" 2>/dev/null
      wait_gone "$DAEMON_PID" 10 || kill -KILL "$DAEMON_PID" 2>/dev/null
      rc=1
    fi
    wait "$DAEMON_PID"
    status=$?
    if ((status != 0)); then
      echo "[$TEST_NAME] FAIL: daemon exited with status $status" >&2
      rc=1
    fi
    if [[ -f "$LOG" ]] && memory_error_in_log >/dev/null; then
      echo "[$TEST_NAME] FAIL: daemon log reports: $(memory_error_in_log)" >&2
      rc=1
    fi
    if ((rc != 0)) && [[ -f "$LOG" ]]; then
      echo "----- daemon.log -----" >&2
      tail -n 100 "$LOG" >&2
      echo "----- end of daemon.log -----" >&2
    fi
  fi
  # Never recurse into a mount that is somehow still there.
  if [[ -n "$TEST_DIR" ]] && ! is_mounted; then
    rm -rf --one-file-system "$TEST_DIR"
  fi
  ((rc == 0)) && note "PASS"
  exit "$rc"
}

# make_test_dir: a fresh ${TMPDIR:-/tmp}/volfs-test.XXXXXX in $TEST_DIR, and
# the EXIT trap that removes it (and takes down a mount made later).
make_test_dir() {
  TEST_DIR="$(mktemp -d "${TMPDIR:-/tmp}/volfs-test.XXXXXX")"
  TEST_DIR="$(realpath "$TEST_DIR")" # mountinfo shows the real path
  chmod 0755 "$TEST_DIR"              # tests may act as another user
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# volfs_mount OPTIONS: mounts a private volfs with -o OPTIONS at $MNT (in
# $TEST_DIR, daemon output in $LOG), to be taken down by the EXIT trap.
# Unless OPTIONS name a pressure option (mem_min, psi, cgroup, pressure),
# nopressure is added: memory pressure from other work on the machine must
# not purge a test's volatile pages behind its back.
volfs_mount() {
  local opts="$1"
  [[ "$opts" =~ (mem_min|psi|cgroup|pressure) ]] || opts="${opts:+$opts,}nopressure"
  set -- "$opts"
  [[ -c /dev/fuse ]] || skip "/dev/fuse does not exist here (modprobe fuse, or --device /dev/fuse)"
  command -v "$VOLFS" >/dev/null || fail "volfs daemon '$VOLFS' not found (pass its path)"
  command -v "$VOLCTL" >/dev/null || fail "volctl '$VOLCTL' not found (pass its path)"

  [[ -n "$TEST_DIR" ]] || make_test_dir
  MNT="$TEST_DIR/mnt"
  LOG="$TEST_DIR/daemon.log"
  mkdir "$MNT"

  local -a cmd=()
  read -r -a cmd <<<"${VOLFS_DAEMON_WRAPPER:-}"
  # Should this script be killed outright (a ctest timeout), the daemon gets
  # SIGTERM and unmounts itself rather than leaving a dead mount behind.
  if setpriv --pdeathsig TERM true 2>/dev/null; then
    cmd=(setpriv --pdeathsig TERM "${cmd[@]}")
  fi
  # -f: stay in the foreground, so that $! is the daemon and `wait` reaps it.
  "${cmd[@]}" "$VOLFS" "$MNT" -f -o "$1" </dev/null >"$LOG" 2>&1 &
  DAEMON_PID=$!

  local i
  for ((i = 0; i < 200; i++)); do # 20 s: generous for a daemon under Valgrind
    is_mounted && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || fail "volfs exited before mounting (-o $1)"
    sleep 0.1
  done
  fail "volfs not mounted at $MNT after 20 s (-o $1)"
}
