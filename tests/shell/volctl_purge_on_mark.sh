#!/usr/bin/env bash
# -o purge_on_mark, the debug mode for testing a program's recovery path: every
# range is purged the moment it is marked, so every unmark answers "purged".
# Usage: volctl_purge_on_mark.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m,purge_on_mark
f="$MNT/f"

dd if=/dev/urandom of="$f" bs="$PAGE" count=2 status=none
"$VOLCTL" mark "$f" --offset 0 --length "$PAGE"
# By the time mark returns, the purge is done and visible.
expect_range_status "$f" 0 "$PAGE" purged_pages=1 resident_pages=0
cmp -n "$PAGE" "$f" /dev/zero || fail "purged page does not read as zeros"
expect_stats "$MNT" purged_pages=1 pages_purged_total=1 purge_events_total=1 resident_pages=1
expect_status 3 "$VOLCTL" unmark "$f" --exit-code
expect_eq "$OUT" purged "unmark output"
# A page that was never marked is untouched.
expect_range_status "$f" "$PAGE" "$PAGE" resident_pages=1 purged_pages=0 volatile_pages=0
