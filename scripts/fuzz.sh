#!/usr/bin/env bash
# Long fuzzing runs of one libFuzzer target (see docs/fuzzing.md): builds volfs (which builds
# the targets with clang in build/fuzz), then fuzzes with a corpus kept in build/fuzz/corpus/
# TARGET, so that the next run starts from what this one found. Failing inputs land in
# build/fuzz/artifacts/; rerun one with: build/fuzz/bin/TARGET build/fuzz/artifacts/crash-...
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/fuzz.sh TARGET [SECONDS] [-- LIBFUZZER_ARGS...]
  TARGET    page_map_fuzz or ioctl_decode_fuzz
  SECONDS   how long to fuzz (default 600)
  -- ARGS   passed on to libFuzzer, e.g. -- -jobs=2 -workers=2
EOF
}
die_usage() { echo "fuzz.sh: $*" >&2; usage >&2; exit 2; }

target="" seconds=600 extra=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    page_map_fuzz | ioctl_decode_fuzz) [[ -z $target ]] || die_usage "one target"; target="$1" ;;
    *[!0-9]* | "") die_usage "unknown argument: $1" ;;
    *) seconds="$1" ;;
  esac
  shift
done
[[ -n $target ]] || die_usage "which target?"

dir="$("$root/scripts/build.sh")"
bin="$dir/fuzz/bin/$target"
[[ -x $bin ]] || {
  echo "fuzz.sh: $bin was not built: no clang++ with libFuzzer (see cmake's 'Fuzz targets' line)" >&2
  exit 1
}
corpus="$dir/fuzz/corpus/$target"
mkdir -p "$corpus" "$dir/fuzz/artifacts"
set -x
"$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$dir/fuzz/artifacts/" \
  "${extra[@]}" "$corpus"
