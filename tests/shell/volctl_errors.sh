#!/usr/bin/env bash
# volctl's contract with scripts when things go wrong: exit 2 and one line for
# bad usage (with a pointer to --help), exit 1 and one line naming the file,
# the range and the reason when an operation fails, and --help everywhere.
# Usage: volctl_errors.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

# --- Help: exit 0, on stdout. -------------------------------------------------
expect_status 0 "$VOLCTL" --help
grep -q "^usage: volctl COMMAND" <<<"$OUT" || fail "volctl --help: '$OUT'"
for cmd in mark unmark status stats purge; do
  expect_status 0 "$VOLCTL" "$cmd" --help
  grep -q "^usage: volctl $cmd " <<<"$OUT" || fail "volctl $cmd --help: '$OUT'"
  expect_status 0 "$VOLCTL" help "$cmd"
done
expect_status 0 "$VOLCTL" --version
grep -Eq '^volctl [0-9]+\.[0-9]+\.[0-9]+$' <<<"$OUT" || fail "volctl --version: '$OUT'"

# --- Bad usage: exit 2, one line that names the problem and points to --help.
# None of these gets as far as opening the file, so no mount is needed.
usage_error() { # usage_error PATTERN VOLCTL-ARGS...
  local pattern="$1"
  shift
  expect_status 2 "$VOLCTL" "$@"
  expect_stderr_line "$pattern"
  grep -q -- "--help" <<<"$ERR" || fail "no --help hint in '$ERR'"
  [[ -z "$OUT" ]] || fail "'volctl $*' wrote to stdout: '$OUT'"
}
usage_error "missing command"
usage_error "unknown command 'frobnicate'" frobnicate /x
usage_error "unknown option '--bogus'" --bogus
usage_error "mark: missing FILE" mark
usage_error "stats: missing PATH" stats --json
usage_error "mark: unknown option '--frob'" mark /x --frob
usage_error "unmark: unknown option '--strict'" unmark /x --strict # mark's, not unmark's
usage_error "status: unknown option '--exit-code'" status /x --exit-code
usage_error "mark: option '--offset' needs a value" mark /x --offset
usage_error "mark: option '--strict' takes no value" mark /x --strict=yes
usage_error "malformed number for --offset: '12q'" mark /x --offset 12q
usage_error "malformed number for --length: '-4096'" mark /x --length=-4096
usage_error "malformed number for --offset: '1.5k'" mark /x --offset 1.5k
usage_error "malformed number for --length: ''" mark /x --length ''
usage_error "number for --length too large" status /x --length 99999999999999999999
usage_error "number for --offset too large" status /x --offset 17179869184g
usage_error "invalid --priority '8'" mark /x --priority 8
usage_error "unexpected argument '/y'" mark /x /y
usage_error "purge: needs --bytes N or --all" purge /x
usage_error "purge: --bytes and --all exclude each other" purge /x --bytes 4k --all

# --- Not on volfs: exit 1, one line. ------------------------------------------
echo data >"$TEST_DIR/plain"
for cmd in mark unmark status stats; do
  expect_status 1 "$VOLCTL" "$cmd" "$TEST_DIR/plain"
  expect_stderr_line "^volctl: $cmd: $TEST_DIR/plain is not on a volfs mount$"
done
expect_status 1 "$VOLCTL" purge "$TEST_DIR" --all
expect_stderr_line "^volctl: purge: $TEST_DIR is not on a volfs mount$"
expect_status 1 "$VOLCTL" stats "$TEST_DIR/missing"
expect_stderr_line "^volctl: stats $TEST_DIR/missing: No such file or directory$"

# --- Failed operations on volfs: exit 1, one line with file, range, reason. ---
# allow_other lets the permission checks at the end act as another user (FUSE
# keeps everyone but the mounting user out without it); only root may use it
# unless /etc/fuse.conf says user_allow_other.
if ((EUID == 0)); then volfs_mount size=64m,allow_other; else volfs_mount size=64m; fi
f="$MNT/f"
dd if=/dev/zero of="$f" bs="$PAGE" count=2 status=none

# A range past the end of the file cannot be marked.
expect_status 1 "$VOLCTL" mark "$f" --offset "$PAGE" --length $((2 * PAGE))
expect_stderr_line "^volctl: mark $f \[$PAGE, $((3 * PAGE))\): Invalid argument"
# Offsets and lengths are whole pages; the message says so.
expect_status 1 "$VOLCTL" mark "$f" --offset 100
expect_stderr_line "^volctl: mark $f \[100, end of file\): offset 100 is not a multiple of the page size \($PAGE\)$"
expect_status 1 "$VOLCTL" unmark "$f" --length 100
expect_stderr_line "^volctl: unmark $f \[0, 100\): length 100 is not a multiple of the page size"
expect_status 1 "$VOLCTL" status "$MNT/nothing-here"
expect_stderr_line "^volctl: status $MNT/nothing-here: No such file or directory$"
# A directory has no ranges; stats and purge take one, though.
expect_status 1 "$VOLCTL" mark "$MNT"
expect_stderr_line "^volctl: mark $MNT: Is a directory$"
expect_status 0 "$VOLCTL" stats "$MNT"
expect_status 0 "$VOLCTL" purge "$MNT" --bytes 1m
expect_eq "$OUT" 0 "purge with nothing volatile"
# The file is not changed by failed operations.
expect_range_status "$f" 0 0 nonvolatile_pages=2 volatile_pages=0

# A failed write of the output fails the command, rather than exit 0 with
# the answer lost.
if [[ -w /dev/full ]]; then
  RC=0
  "$VOLCTL" stats "$MNT" >/dev/full 2>"$TEST_DIR/full.err" || RC=$?
  expect_eq "$RC" 1 "exit status of volctl writing to /dev/full"
  grep -q "No space left on device" "$TEST_DIR/full.err" || fail "no error for /dev/full"
fi

# --- Permissions: who may do what. --------------------------------------------
# Needs root to act as another user, and a volctl that user can run.
nobody=65534
if ((EUID == 0)) && setpriv --reuid=$nobody --regid=$nobody --clear-groups \
  "$VOLCTL" --version >/dev/null 2>&1; then
  as_nobody=(setpriv "--reuid=$nobody" "--regid=$nobody" --clear-groups)
  chmod 0644 "$f"
  # mark and unmark open the file for writing.
  expect_status 1 "${as_nobody[@]}" "$VOLCTL" mark "$f"
  expect_stderr_line "^volctl: mark $f: Permission denied \(mark opens the file for reading and writing\)$"
  # status and stats only read.
  expect_status 0 "${as_nobody[@]}" "$VOLCTL" status "$f"
  expect_status 0 "${as_nobody[@]}" "$VOLCTL" stats "$MNT"
  # Only root and the user who mounted may purge.
  expect_status 1 "${as_nobody[@]}" "$VOLCTL" purge "$MNT" --all
  expect_stderr_line "^volctl: purge $MNT: Operation not permitted \(only root and the user who mounted volfs may purge\)$"
else
  note "not checking permissions: needs root and a volctl that uid $nobody can run"
fi
