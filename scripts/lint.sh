#!/usr/bin/env bash
# The lint CI runs: clang-format (.clang-format) on every tracked C/C++ file, and clang-tidy
# (.clang-tidy) on the project's own sources through a build tree's compile_commands.json.
# Prints one line per finding (path:line:col: message [check]) and exits 1 on any finding.
set -euo pipefail
shopt -s extglob
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
usage: scripts/lint.sh [--fix] [--format|--tidy] [-p BUILD_DIR] [-j N]
  --fix     let clang-format rewrite the files it would change (clang-tidy only reports)
  --format  only the clang-format check
  --tidy    only clang-tidy
  -p DIR    the build tree whose compile_commands.json clang-tidy reads (default build/,
            configured with cmake if it has none; DIR/fuzz adds the fuzz targets once built)
  -j N      clang-tidy processes at once (default 2)
CLANG_FORMAT and CLANG_TIDY name other binaries (default clang-format, clang-tidy).
EOF
}
die_usage() { echo "lint.sh: $*" >&2; usage >&2; exit 2; }

fix=0 do_format=1 do_tidy=1 dir="$root/build" jobs=2
while (($#)); do
  case "$1" in
    --fix) fix=1 ;;
    --format) do_tidy=0 ;;
    --tidy) do_format=0 ;;
    -p) (($# >= 2)) || die_usage "-p needs a value"; dir="$(realpath -m "$2")"; shift ;;
    -j) (($# >= 2)) || die_usage "-j needs a value"; jobs="$2"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument: $1" ;;
  esac
  shift
done
((do_format || do_tidy)) || die_usage "--format and --tidy exclude each other"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die_usage "-j needs a positive number"
clang_format="${CLANG_FORMAT:-clang-format}" clang_tidy="${CLANG_TIDY:-clang-tidy}"
"$root/scripts/deps.sh" >&2
cd "$root"

# Flags in the GCC build's compile commands that clang 14 does not know, and would turn into
# errors under -Werror (see CMakeLists.txt for why each is there).
gcc_only_flags=(-Wno-restrict)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0

# Keeps only diagnostic lines, one per finding, relative to the checkout, each once.
findings() {
  grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error): ' | sed -e "s|^$root/||" \
    -e 's/: error: \(.*\) \[\(.*\),-warnings-as-errors\]$/: warning: \1 [\2]/' | sort -u || true
}

if ((do_format)); then
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files -- '*.c' '*.cc' '*.h')
  else
    mapfile -t files < <(find fs client tests -name '*.c' -o -name '*.cc' -o -name '*.h' | sort)
  fi
  if ((fix)); then
    "$clang_format" -i -- "${files[@]}"
  fi
  "$clang_format" --dry-run -- "${files[@]}" 2>&1 | findings >"$work/format"
  n="$(wc -l <"$work/format")" hint=""
  ((n == 0)) || { failed=1 hint="; scripts/lint.sh --fix rewrites them"; }
  cat "$work/format"
  echo "lint: clang-format ($("$clang_format" --version | grep -o 'version [0-9.]*')):" \
    "${#files[@]} files, $n findings$hint"
fi

if ((do_tidy)); then
  if [[ ! -f $dir/compile_commands.json ]]; then
    echo "lint.sh: no $dir/compile_commands.json; configuring $dir" >&2
    cmake -S "$root" -B "$dir" >&2
  fi
  # One filtered copy of each compile database: the main build, and the fuzz targets' (built
  # with clang in DIR/fuzz by the main build, so only there once it has been built).
  dbs=()
  for db in "$dir" "$dir/fuzz"; do
    [[ -f $db/compile_commands.json ]] || continue
    out="$work/db${#dbs[@]}"
    mkdir -p "$out"
    sed_args=()
    for flag in "${gcc_only_flags[@]}"; do sed_args+=(-e "s/ $flag\\b//g"); done
    sed "${sed_args[@]}" "$db/compile_commands.json" >"$out/compile_commands.json"
    dbs+=("$out")
  done
  [[ -f $dir/fuzz/compile_commands.json ]] ||
    echo "lint.sh: the fuzz targets are not checked: $dir/fuzz is not built yet" >&2
  # The project's own sources, each once (from the first database that has it).
  declare -A seen=()
  dbs_of=() files=()
  for db in "${dbs[@]}"; do
    while read -r f; do
      [[ $f == "$root"/@(fs|client|tests)/* && -z ${seen[$f]:-} ]] || continue
      seen[$f]=1 dbs_of+=("$db") files+=("$f")
    done < <(grep -o '"file": "[^"]*"' "$db/compile_commands.json" | sed 's/^"file": "\(.*\)"$/\1/')
  done
  # Each clang-tidy writes its own file, so that parallel output never interleaves.
  for k in "${!files[@]}"; do
    printf '%s\0' "${dbs_of[k]}" "${files[k]}" "$work/tidy.$k"
  done | xargs -0 -n 3 -P "$jobs" \
    sh -c '"$0" --quiet -p "$1" "$2" >"$3" 2>&1 || echo "$2" >"$3.failed"' "$clang_tidy"
  cat "$work"/tidy.[0-9]* 2>/dev/null | findings >"$work/tidy"
  n="$(wc -l <"$work/tidy")"
  cat "$work/tidy"
  # clang-tidy failed without a finding to show (a crash, a bad compile command): show all.
  if ((n == 0)); then
    for f in "$work"/tidy.*.failed; do
      [[ -e $f ]] || continue
      echo "lint.sh: clang-tidy failed on $(cat "$f"):" >&2
      cat "${f%.failed}" >&2
      failed=1
    done
  fi
  echo "lint: clang-tidy ($("$clang_tidy" --version | grep -o 'version [0-9.]*')):" \
    "${#files[@]} files, $n findings"
  ((n == 0)) || failed=1
fi
exit "$failed"
