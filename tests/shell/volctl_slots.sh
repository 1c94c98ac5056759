#!/usr/bin/env bash
# `volctl status` shows a range's slots: a helper process (python3, through
# the raw ioctl) registers three slots and so pins them; they are never
# purged while it lives; when it exits its pins go, a purge takes the slots,
# and status counts them purged. Without python3 only the keys of a file
# without slots are checked.
# Usage: volctl_slots.sh [VOLFS [VOLCTL]]
source "$(dirname "$0")/lib.sh"

volfs_mount size=64m
f="$MNT/slots.bin"
dd if=/dev/urandom of="$f" bs="$PAGE" count=4 status=none

# No slots: the three keys at the end, zero.
json="$("$VOLCTL" status --json "$f")"
expect_eq "${json#*\"strict_pages\": 0, }" '"slots": 0, "pinned_slots": 0, "purged_slots": 0}' \
  "status --json of a file without slots"
expect_eq "$("$VOLCTL" status "$f" | tail -n 3)" "slots: 0
pinned_slots: 0
purged_slots: 0" "plain status of a file without slots"

command -v python3 >/dev/null || skip "no python3 to register slots with (the keys were checked)"

# The helper: slot k = page 1 + k, its word at 16 k of page 0; it prints the
# result (0: created) and waits until its stdin closes.
helper='
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
page = int(sys.argv[2])
buf = bytearray(struct.pack("<QQQIIII2Q", page, page, 0, 0, 0, 0, 3, 0, 0))
fcntl.ioctl(fd, 0xC0385608, buf, True)  # VOLFS_IOC_SLOT_REGISTER
print(struct.unpack("<QQQIIII2Q", buf)[5], flush=True)
sys.stdin.read()
'
mkfifo "$TEST_DIR/in" "$TEST_DIR/out"
python3 -c "$helper" "$f" "$PAGE" <"$TEST_DIR/in" >"$TEST_DIR/out" &
helper_pid=$!
exec {to_helper}>"$TEST_DIR/in"
read -r -t 10 created <"$TEST_DIR/out" || fail "the helper did not register its slots"
expect_eq "$created" 0 "REGISTER result (VOLFS_SLOT_CREATED)"

expect_range_status "$f" 0 0 slots=3 pinned_slots=3 purged_slots=0 volatile_pages=0
expect_range_status "$f" "$((2 * PAGE))" "$PAGE" slots=1 pinned_slots=1 purged_slots=0
expect_range_status "$f" 0 "$PAGE" slots=0 pinned_slots=0 purged_slots=0
expect_eq "$("$VOLCTL" purge "$MNT" --all)" 0 "bytes purged while the helper pins"

# The helper ends: the kernel releases its open file and the daemon its pins.
exec {to_helper}>&-
wait "$helper_pid" || fail "the helper failed"
for ((i = 0; i < 1000; i++)); do
  pinned="$(json_field pinned_slots "$("$VOLCTL" status --json "$f")")"
  [[ "$pinned" == 0 ]] && break
  sleep 0.01
done
expect_range_status "$f" 0 0 slots=3 pinned_slots=0 purged_slots=0 volatile_pages=3
expect_eq "$("$VOLCTL" purge "$MNT" --all)" $((3 * PAGE)) "bytes purged once nobody pins"
expect_range_status "$f" 0 0 slots=3 pinned_slots=0 purged_slots=3 purged_pages=3
expect_eq "$("$VOLCTL" status "$f" | tail -n 3)" "slots: 3
pinned_slots: 0
purged_slots: 3" "plain status after the purge"
# Page 0 (the words) is plain data: a purge never takes it.
expect_range_status "$f" 0 "$PAGE" nonvolatile_pages=1 resident_pages=1
note "ok"
