#!/usr/bin/env bash
# The mount's global accounting, as `volctl stats` shows it, checked with exact
# numbers at each step of a small scenario, next to what df and stat report.
# Usage: volctl_stats.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m
limit=$((64 * 1024 * 1024))

# A fresh mount: the exact JSON, every key in its documented order. This is
# the format scripts parse; it changes only with a new key at the end.
expected="{\"page_size\": $PAGE, \"files\": 0, \"resident_pages\": 0, \"volatile_pages\": 0,"
expected+=" \"volatile_resident_pages\": 0, \"purged_pages\": 0, \"pages_purged_total\": 0,"
expected+=" \"purge_events_total\": 0, \"size_limit_bytes\": $limit, \"false_purged_total\": 0,"
expected+=" \"unmark_purged_total\": 0, \"unmark_intact_total\": 0}"
expect_eq "$("$VOLCTL" stats --json "$MNT")" "$expected" "stats --json of a fresh mount"
# It is JSON indeed, with numbers only.
if command -v python3 >/dev/null; then
  "$VOLCTL" stats --json "$MNT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert all(type(v) is int for v in d.values()), d
assert len(d) == 12, d' || fail "stats --json is not an object of 12 numbers"
fi
# The plain form: one "key: value" per line, the same keys.
expect_eq "$("$VOLCTL" stats "$MNT" | head -n 2)" "page_size: $PAGE
files: 0" "plain stats"
expect_eq "$("$VOLCTL" stats "$MNT" | wc -l)" 12 "plain stats line count"

# df sees the size= limit; nothing is used yet.
expect_eq "$(df -B1 --output=size "$MNT" | tail -n 1 | tr -d ' ')" "$limit" "df size"
expect_eq "$(df -B1 --output=used "$MNT" | tail -n 1 | tr -d ' ')" 0 "df used"

# Two files: a of 8 pages, b of 2 pages.
dd if=/dev/urandom of="$MNT/a" bs="$PAGE" count=8 status=none
dd if=/dev/urandom of="$MNT/b" bs="$PAGE" count=2 status=none
expect_eq "$(stat -c %s "$MNT/a")" $((8 * PAGE)) "size of a"
expect_stats "$MNT" files=2 resident_pages=10 volatile_pages=0 volatile_resident_pages=0
expect_eq "$(df -B1 --output=used "$MNT" | tail -n 1 | tr -d ' ')" $((10 * PAGE)) "df used"
# Any file of the mount answers for the whole mount, not just for itself.
expect_stats "$MNT/b" files=2 resident_pages=10

# Mark 6 pages of a (two ranges, so two marks) and all of b.
"$VOLCTL" mark "$MNT/a" --offset 0 --length $((2 * PAGE))
"$VOLCTL" mark "$MNT/a" --offset $((4 * PAGE)) --length $((4 * PAGE))
"$VOLCTL" mark "$MNT/b"
expect_stats "$MNT" volatile_pages=8 volatile_resident_pages=8 purged_pages=0 resident_pages=10

# Purge it all: three marks, so three purge events.
expect_eq "$("$VOLCTL" purge "$MNT" --all)" $((8 * PAGE)) "bytes purged"
expect_stats "$MNT" files=2 resident_pages=2 volatile_pages=8 volatile_resident_pages=0 \
  purged_pages=8 pages_purged_total=8 purge_events_total=3
# The purged pages gave their memory back: df agrees.
expect_eq "$(df -B1 --output=used "$MNT" | tail -n 1 | tr -d ' ')" $((2 * PAGE)) "df used"

# Unmark: one intact answer (a's untouched pages 2-3) and two purged ones.
expect_eq "$("$VOLCTL" unmark "$MNT/a" --offset $((2 * PAGE)) --length $((2 * PAGE)))" intact \
  "a pages 2-3"
expect_eq "$("$VOLCTL" unmark "$MNT/a")" purged "all of a"
expect_eq "$("$VOLCTL" unmark "$MNT/b")" purged "all of b"
expect_stats "$MNT" volatile_pages=0 purged_pages=0 pages_purged_total=8 purge_events_total=3 \
  unmark_purged_total=2 unmark_intact_total=1 false_purged_total=0

# Deleting a file takes its pages out of the accounting.
rm "$MNT/b"
expect_stats "$MNT" files=1 resident_pages=2
# Writing the purged pages back makes them resident again.
dd if=/dev/urandom of="$MNT/a" bs="$PAGE" count=8 conv=notrunc status=none
expected="{\"page_size\": $PAGE, \"files\": 1, \"resident_pages\": 8, \"volatile_pages\": 0,"
expected+=" \"volatile_resident_pages\": 0, \"purged_pages\": 0, \"pages_purged_total\": 8,"
expected+=" \"purge_events_total\": 3, \"size_limit_bytes\": $limit, \"false_purged_total\": 0,"
expected+=" \"unmark_purged_total\": 2, \"unmark_intact_total\": 1}"
expect_eq "$("$VOLCTL" stats --json "$MNT")" "$expected" "stats --json at the end"
