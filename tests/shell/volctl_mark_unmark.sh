#!/usr/bin/env bash
# The life of a volatile range, driven from the shell: write data, mark it
# volatile, let volfs purge it, unmark it and learn that it was purged; and a
# range nobody purged comes back intact, with its data.
# Usage: volctl_mark_unmark.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m
f="$MNT/cache.bin"

# Four pages of random data, with a copy outside volfs to compare against.
dd if=/dev/urandom of="$TEST_DIR/orig" bs="$PAGE" count=4 status=none
cp "$TEST_DIR/orig" "$f"
expect_eq "$(stat -c %s "$f")" $((4 * PAGE)) "file size"

# --- Marked, not purged: unmark says "intact" and the data is all there. ------
"$VOLCTL" mark "$f" # no --offset/--length: the whole file
expect_range_status "$f" 0 0 volatile_pages=4 nonvolatile_pages=0 resident_pages=4 purged_pages=0
expect_eq "$("$VOLCTL" unmark "$f")" intact "unmark of a range nobody purged"
cmp "$f" "$TEST_DIR/orig" || fail "data changed although the range was intact"
expect_range_status "$f" 0 0 volatile_pages=0 nonvolatile_pages=4

# Unmarking a range that was never marked is harmless, and intact too.
expect_eq "$("$VOLCTL" unmark "$f" --offset "$PAGE" --length "$PAGE")" intact \
  "unmark of an untouched range"

# --- Marked and purged: unmark says "purged". ---------------------------------
"$VOLCTL" mark "$f"
# Force the purge that memory pressure would cause; it prints the bytes purged.
expect_eq "$("$VOLCTL" purge "$MNT" --all)" $((4 * PAGE)) "bytes purged"
expect_range_status "$f" 0 0 volatile_pages=4 purged_pages=4 resident_pages=0
# While still volatile, purged pages read as zeros (the default, non-strict).
cmp -n $((4 * PAGE)) "$f" /dev/zero || fail "purged pages do not read as zeros"
expect_eq "$(stat -c %s "$f")" $((4 * PAGE)) "file size after a purge"
expect_eq "$("$VOLCTL" unmark "$f")" purged "unmark after a purge"
# The answer is given once: the range is non-volatile now, so a second unmark
# has nothing to report.
expect_eq "$("$VOLCTL" unmark "$f")" intact "second unmark"

# --- Part of a file, and --exit-code for `if` in scripts. ---------------------
cp "$TEST_DIR/orig" "$f"
# Pages 1 and 2 of 0..3 (sizes take k, m, g suffixes: 4k is 4096 bytes).
"$VOLCTL" mark "$f" --offset "$PAGE" --length $((2 * PAGE))
"$VOLCTL" purge "$MNT" --all >/dev/null
# Pages 0 and 3 were never volatile: still intact, still the original data.
expect_eq "$("$VOLCTL" unmark "$f" --offset 0 --length "$PAGE")" intact "page 0"
expect_eq "$("$VOLCTL" unmark "$f" --offset $((3 * PAGE)) --length "$PAGE")" intact "page 3"
cmp -n "$PAGE" "$f" "$TEST_DIR/orig" || fail "page 0 changed"
cmp -i $((3 * PAGE)) "$f" "$TEST_DIR/orig" || fail "page 3 changed"
# --exit-code: status 3 when purged, so a script can write
#   if ! volctl unmark --exit-code "$f" >/dev/null; then recompute; fi
expect_status 3 "$VOLCTL" unmark "$f" --offset "$PAGE" --length $((2 * PAGE)) --exit-code
expect_eq "$OUT" purged "unmark --exit-code output"
expect_status 0 "$VOLCTL" unmark "$f" --exit-code
expect_eq "$OUT" intact "unmark --exit-code of an intact range"

# --- Priorities and partial purges: lower priority goes first. ----------------
cp "$TEST_DIR/orig" "$f"
"$VOLCTL" mark "$f" --offset 0 --length "$PAGE" --priority 6
"$VOLCTL" mark "$f" --offset $((3 * PAGE)) --length "$PAGE" --priority 1
# One page's worth: volfs takes it from priority 1 first, although page 0 was
# marked earlier.
expect_eq "$("$VOLCTL" purge "$MNT" --bytes "$PAGE")" "$PAGE" "bytes purged by --bytes"
expect_eq "$("$VOLCTL" unmark "$f" --offset 0 --length "$PAGE")" intact "priority 6 page"
expect_eq "$("$VOLCTL" unmark "$f" --offset $((3 * PAGE)) --length "$PAGE")" purged "priority 1 page"

# --- Nothing volatile, nothing to purge. --------------------------------------
expect_eq "$("$VOLCTL" purge "$MNT" --all)" 0 "purge with nothing volatile"
# Pages that were never written (a hole) hold no data, so they cannot be
# purged: unmark answers intact.
truncate -s $((8 * PAGE)) "$f"
"$VOLCTL" mark "$f" --offset $((4 * PAGE))
expect_eq "$("$VOLCTL" purge "$MNT" --all)" 0 "purge of a hole"
expect_eq "$("$VOLCTL" unmark "$f" --offset $((4 * PAGE)))" intact "unmark of a hole"
