#!/usr/bin/env bash
# pressure-demo.sh: issue 9's scenario, measured and plotted. Mounts volfs
# (default options, or -o nopressure with --off), writes VOLATILE of volatile
# data, then a memory hog allocates until it holds all but LEAVE of what the
# system had available before that data was written (build/bin/pressure_demo).
# Records MemAvailable, PSI and the mount's figures every 100 ms into a TSV,
# prints a JSON summary, plots a PNG (gnuplot, installed if missing). Always
# unmounts, even on failure or Ctrl-C. Never run by the test suite.
#
# It takes most of the machine's memory for a while: it refuses to start with
# too little MemAvailable; the hog pauses near --abort-below + 128 MiB, frees
# everything and stops below 1 GiB of MemAvailable; with --off it stops at
# 1.5 GiB instead of going on to the OOM killer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/pressure-demo.sh [--off] [--volatile N] [--leave N] [--out DIR] [--plot-only]
  --off         mount with -o nopressure (the system pressure sources off)
  --volatile N  volatile data to write (default 6g)
  --leave N     the hog stops at MemAvailable-before-the-data minus N (default 2g)
  --out DIR     where the .tsv, .json, .log and .png go (default build/pressure-demo)
  --plot-only   only plot DIR/pressure-{on,off}.tsv again (no mount, no hog)
EOF
}
mode=on volatile=6g leave=2g out="$root/build/pressure-demo" plot_only=0
while (($#)); do
  case "$1" in
    --off) mode=off ;;
    --volatile) volatile="$2"; shift ;;
    --leave) leave="$2"; shift ;;
    --out) out="$2"; shift ;;
    --plot-only) plot_only=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "pressure-demo.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

# plot: DIR/pressure-$mode.png from its .tsv and .json. Memory on the left
# axis, PSI (avg10, %) on the right.
plot() {
  floor_mib="$(sed -n 's/.*"mem_min_bytes": \([0-9]*\).*/\1/p' "$out/pressure-$mode.json")"
  floor_mib=$((${floor_mib:-0} >> 20))
  purged_mib="$(sed -n 's/.*"purged_bytes": \([0-9]*\).*/\1/p' "$out/pressure-$mode.json")"
  purged_mib=$((${purged_mib:-0} >> 20))
  title="volfs -o $([[ $mode == on ]] && echo "defaults (pressure sources on)" || echo nopressure):"
  title+=" $volatile volatile, hog to MemAvailable(before) - $leave; purged $purged_mib MiB"
  floor_plot=""
  ((floor_mib > 0)) && floor_plot="$floor_mib with lines dt 2 lc rgb 'gray' title 'mem_min',"
  terminal="png size 1000,560"
  gnuplot -e "set terminal" 2>&1 | grep -q pngcairo && terminal="pngcairo size 1000,560 font 'sans,9'"
  gnuplot <<EOF
set terminal $terminal noenhanced
set output "$out/pressure-$mode.png"
set title "$title"
set xlabel "seconds"
set ylabel "MiB"
set y2label "PSI memory avg10 (%)"
set ytics nomirror
set y2tics
set y2range [0:*]
set yrange [0:*]
set key outside bottom center horizontal
set grid
plot "$out/pressure-$mode.tsv" using 1:2 with lines lw 2 title "MemAvailable", \
     "" using 1:13 with lines lw 2 title "hog", \
     "" using 1:7 with lines lw 2 title "volfs resident", \
     "" using 1:8 with lines title "volfs volatile resident", \
     "" using 1:9 with lines lw 2 title "volfs purged (total)", \
     $floor_plot \
     "" using 1:4 axes x1y2 with lines dt 3 title "PSI some", \
     "" using 1:5 axes x1y2 with lines dt 3 title "PSI full"
EOF
}

if ((plot_only)); then
  plot
  exit 0
fi

bytes() { numfmt --from=iec "${1^^}"; }
avail() { echo $(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) * 1024)); }

dir="$("$root/scripts/build.sh")"
cmake --build "$dir" -j2 --target pressure_demo >&2
if ! command -v gnuplot >/dev/null; then
  echo "pressure-demo.sh: installing gnuplot-nox for the plot" >&2
  as_root=(env DEBIAN_FRONTEND=noninteractive)
  [[ $EUID -eq 0 ]] || as_root=(sudo "${as_root[@]}")
  "${as_root[@]}" apt-get update -qq </dev/null
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends gnuplot-nox </dev/null
fi

# The volatile data, what the hog leaves, and 2 GiB besides (the default
# mem_min and a margin): less than that and the run proves nothing safely.
need=$(($(bytes "$volatile") + $(bytes "$leave") + 2 * 1024 * 1024 * 1024))
if (($(avail) < need)); then
  echo "pressure-demo.sh: MemAvailable $(($(avail) >> 20)) MiB < $((need >> 20)) MiB needed; not now" >&2
  exit 1
fi

mkdir -p "$out"
tmp="$(mktemp -d /tmp/volfs-demo.XXXXXX)"
mnt="$tmp/mnt" log="$tmp/daemon.log" daemon=""
mkdir "$mnt"
cleanup() {
  local rc=$?
  trap - EXIT
  set +e
  if findmnt -rn "$mnt" >/dev/null 2>&1; then
    umount "$mnt" 2>/dev/null || { sleep 1 && umount "$mnt"; } || umount -l "$mnt"
  fi
  if [[ -n "$daemon" ]]; then
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$daemon" 2>/dev/null
    wait "$daemon" 2>/dev/null
  fi
  [[ -f "$log" ]] && cp "$log" "$out/pressure-$mode.daemon.log"
  findmnt -rn "$mnt" >/dev/null 2>&1 || rm -rf --one-file-system "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

opts=()
[[ $mode == on ]] || opts=(-o nopressure)
"$dir/bin/volfs" "$mnt" -f "${opts[@]}" </dev/null >"$log" 2>&1 &
daemon=$!
for _ in $(seq 200); do
  findmnt -rn "$mnt" >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
findmnt -rn "$mnt" >/dev/null || { echo "pressure-demo.sh: volfs did not mount" >&2; exit 1; }

demo_args=("$mnt" --volatile "$volatile" --leave "$leave" --out "$out/pressure-$mode.tsv")
[[ $mode == on ]] || demo_args+=(--stop-below 1536m)
echo "pressure-demo.sh: $dir/bin/pressure_demo ${demo_args[*]}" >&2
rc=0
"$dir/bin/pressure_demo" "${demo_args[@]}" | tee "$out/pressure-$mode.json" || rc=$?
# The daemon's own account of each MemAvailable episode: from the round that
# saw the shortfall to the round that saw MemAvailable at the floor again.
if grep -q "MemAvailable back at" "$log"; then
  sed -n 's/.*MemAvailable back at .* after \([0-9]*\) ms.*/\1/p' "$log" | sort -n |
    awk '{ v[NR] = $1 } END { printf "pressure-demo.sh: %d MemAvailable episodes, back at the floor after: median %d ms, max %d ms\n", NR, v[int((NR + 1) / 2)], v[NR] }' >&2
fi

plot
echo "pressure-demo.sh: $out/pressure-$mode.{tsv,json,png,daemon.log}" >&2
exit "$rc"
