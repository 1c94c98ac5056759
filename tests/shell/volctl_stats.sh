#!/usr/bin/env bash
# The mount's global accounting, as `volctl stats` shows it, checked with exact
# numbers at each step of a small scenario, next to what df and stat report.
# Usage: volctl_stats.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m
limit=$((64 * 1024 * 1024))

# v1_keys JSON: the object cut after version 1's twelve keys.
v1_keys() { printf '%s}' "${1%%, \"stats_version\"*}"; }
# no_requests JSON: the object without its last key, requests, which every
# call to the daemon (volctl's own included) raises.
no_requests() { printf '%s}' "${1%, \"requests\": *}"; }

# A fresh mount: the exact JSON, every key in its documented order. This is
# the format scripts parse; it changes only with new keys at the end.
expected="{\"page_size\": $PAGE, \"files\": 0, \"resident_pages\": 0, \"volatile_pages\": 0,"
expected+=" \"volatile_resident_pages\": 0, \"purged_pages\": 0, \"pages_purged_total\": 0,"
expected+=" \"purge_events_total\": 0, \"size_limit_bytes\": $limit, \"false_purged_total\": 0,"
expected+=" \"unmark_purged_total\": 0, \"unmark_intact_total\": 0}"
json="$("$VOLCTL" stats --json "$MNT")"
expect_eq "$(v1_keys "$json")" "$expected" "stats --json of a fresh mount, version 1 keys"
# Then the version 2 keys (lib.sh mounts with nopressure: every source off).
tail="\"stats_version\": 2, \"sources_active\": 0, \"mem_available_bytes\": 0,"
tail+=" \"mem_min_bytes\": 0, \"cgroup_limit_bytes\": 0, \"cgroup_used_bytes\": 0,"
tail+=" \"cgroup_min_bytes\": 0, \"psi_step_bytes\": 0"
for src in size_limit watermark ioctl on_mark memavail psi cgroup; do
  tail+=", \"${src}_signals\": 0, \"${src}_purges\": 0, \"${src}_purged_bytes\": 0"
done
expect_eq "$(no_requests "$json")" "${expected%\}}, $tail}" "stats --json of a fresh mount"
# requests counts the daemon's FUSE requests, the STATS ioctl included: never
# 0, and volctl's next call (open, ioctl, release) adds to it.
requests0="$(json_field requests "$json")"
((requests0 > 0)) || fail "requests of a mount that answered is $requests0"
requests1="$(json_field requests "$("$VOLCTL" stats --json "$MNT")")"
((requests1 > requests0)) || fail "requests does not grow: $requests0 then $requests1"
# It is JSON indeed, with numbers only.
if command -v python3 >/dev/null; then
  "$VOLCTL" stats --json "$MNT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert all(type(v) is int for v in d.values()), d
assert len(d) == 42, d' || fail "stats --json is not an object of 42 numbers"
fi
# The plain form: one "key: value" per line, the same keys.
expect_eq "$("$VOLCTL" stats "$MNT" | head -n 2)" "page_size: $PAGE
files: 0" "plain stats"
expect_eq "$("$VOLCTL" stats "$MNT" | wc -l)" 42 "plain stats line count"

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

# Purge it all: three marks, so three purge events, one explicit purge.
expect_eq "$("$VOLCTL" purge "$MNT" --all)" $((8 * PAGE)) "bytes purged"
expect_stats "$MNT" files=2 resident_pages=2 volatile_pages=8 volatile_resident_pages=0 \
  purged_pages=8 pages_purged_total=8 purge_events_total=3 \
  ioctl_signals=1 ioctl_purges=1 ioctl_purged_bytes=$((8 * PAGE)) memavail_purges=0
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
expect_eq "$(v1_keys "$("$VOLCTL" stats --json "$MNT")")" "$expected" "stats --json at the end"

# --watch: one JSON line per interval, time_ms first, the rest as --json.
run "$VOLCTL" stats --watch 0.05 --count 3 "$MNT"
expect_eq "$RC" 0 "stats --watch exit status"
expect_eq "$(grep -c '^{"time_ms": [0-9]*, "page_size": ' <<<"$OUT")" 3 "stats --watch lines"
first="$(head -n 1 <<<"$OUT")"
expect_eq "$(no_requests "{${first#*, }")" "$(no_requests "$("$VOLCTL" stats --json "$MNT")")" \
  "a --watch line without time_ms"
t0="$(json_field time_ms "$first")" t2="$(json_field time_ms "$(tail -n 1 <<<"$OUT")")"
((t2 > t0)) || fail "time_ms does not grow: $t0 then $t2"
expect_status 2 "$VOLCTL" stats --count 2 "$MNT"
expect_stderr_line "--count needs --watch"
expect_status 2 "$VOLCTL" stats --watch 0 "$MNT"
expect_stderr_line "invalid --watch interval '0'"
