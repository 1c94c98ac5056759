#!/usr/bin/env bash
# Strict ranges (`volctl mark --strict`): once purged, their pages fail every
# read and write with EIO (SIGBUS through mmap) until unmarked, so stale or
# missing data can never be mistaken for real zeros. Pages beside them work.
# Usage: volctl_strict.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m
# Strict marks need the cached io mode: files made in the root from now on
# take it (the default is FUSE passthrough, where the daemon never sees a read).
setfattr -n user.volfs.iomode -v cached "$MNT"
f="$MNT/frames"

dd if=/dev/urandom of="$TEST_DIR/orig" bs="$PAGE" count=3 status=none
cp "$TEST_DIR/orig" "$f"

# Page 1 of 0..2 is strict-volatile.
"$VOLCTL" mark "$f" --offset "$PAGE" --length "$PAGE" --strict
expect_range_status "$f" 0 0 volatile_pages=1 strict_pages=1 nonvolatile_pages=2
# Not purged yet: reading works as usual.
cmp "$f" "$TEST_DIR/orig" || fail "strict page unreadable before any purge"

expect_eq "$("$VOLCTL" purge "$MNT" --all)" "$PAGE" "bytes purged"
expect_range_status "$f" "$PAGE" "$PAGE" purged_pages=1 strict_pages=1 resident_pages=0

# Any read that touches the purged page fails with EIO...
expect_status 1 cat "$f"
grep -q "Input/output error" <<<"$ERR" || fail "cat: expected EIO, got '$ERR'"
expect_status 1 dd if="$f" of=/dev/null bs="$PAGE" skip=1 count=1 status=none
grep -q "Input/output error" <<<"$ERR" || fail "dd read: expected EIO, got '$ERR'"
# ...and so does a write into it.
expect_status 1 dd if=/dev/zero of="$f" bs="$PAGE" seek=1 count=1 conv=notrunc status=none
grep -q "Input/output error" <<<"$ERR" || fail "dd write: expected EIO, got '$ERR'"
# The pages beside it read as before.
expect_status 0 dd if="$f" of="$TEST_DIR/page0" bs="$PAGE" count=1 status=none
cmp -n "$PAGE" "$TEST_DIR/page0" "$TEST_DIR/orig" || fail "page 0 changed"
expect_status 0 dd if="$f" of="$TEST_DIR/page2" bs="$PAGE" skip=2 count=1 status=none
cmp "$TEST_DIR/page2" <(tail -c "$PAGE" "$TEST_DIR/orig") || fail "page 2 changed"

# Unmark tells the owner the data is gone; from then on the page is an
# ordinary page of zeros.
expect_eq "$("$VOLCTL" unmark "$f" --offset "$PAGE" --length "$PAGE")" purged "unmark"
expect_status 0 dd if="$f" of="$TEST_DIR/page1" bs="$PAGE" skip=1 count=1 status=none
cmp -n "$PAGE" "$TEST_DIR/page1" /dev/zero || fail "unmarked purged page is not zeros"
cat "$f" >/dev/null
expect_range_status "$f" 0 0 volatile_pages=0 strict_pages=0 purged_pages=0
