#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then builds small out-of-tree
# programs against what it installed, the two ways applications do: CMake's
# find_package(volfs) and pkg-config volfs; and runs them. No mount needed.
# Usage: install_package.sh BUILD_DIR
# Environment: CC, CXX (default cc, c++); VOLFS_SANITIZE as the build was
# configured (address, thread), since a sanitized library needs the same
# flags in the programs that link it.
source "$(dirname "$0")/lib.sh" # (its VOLFS/VOLCTL defaults are unused here)

build_dir="${1:?usage: install_package.sh BUILD_DIR}"
consumer_src="$(cd "$(dirname "$0")/consumer" && pwd)"
CC="${CC:-cc}" CXX="${CXX:-c++}"
command -v cmake >/dev/null || skip "cmake not found"

make_test_dir
prefix="$TEST_DIR/prefix"

case "${VOLFS_SANITIZE:-}" in
  address) san="-fsanitize=address,undefined" ;;
  thread) san="-fsanitize=thread" ;;
  *) san="" ;;
esac

# --- Install. -------------------------------------------------------------------
cmake --install "$build_dir" --prefix "$prefix" >"$TEST_DIR/install.log" ||
  fail "cmake --install failed: $(cat "$TEST_DIR/install.log")"
for file in bin/volfs bin/volctl include/volfs/volfs.h include/volfs/client.h \
  include/volfs/file.h; do
  [[ -f "$prefix/$file" ]] || fail "not installed: $file"
done
lib="$(find "$prefix" -name libvolfs.a)"
config="$(find "$prefix" -name volfsConfig.cmake)"
version="$(find "$prefix" -name volfsConfigVersion.cmake)"
pc="$(find "$prefix" -name volfs.pc)"
[[ -n "$lib" && -n "$config" && -n "$version" && -n "$pc" ]] ||
  fail "missing library, CMake package or volfs.pc: $(cd "$prefix" && find . -type f)"
# Everything went below the prefix, and the tools run from there.
grep -q "^prefix=$prefix\$" "$pc" || fail "volfs.pc names another prefix: $(grep prefix= "$pc")"
"$prefix/bin/volctl" --version >/dev/null || fail "installed volctl does not run"
"$prefix/bin/volfs" --version >/dev/null || fail "installed volfs does not run"

# A regular file outside volfs, for the programs to be refused.
echo "not volfs" >"$TEST_DIR/plain"

# --- find_package(volfs). ---------------------------------------------------------
# Both languages in one project; then a project with only C enabled.
for project in "$consumer_src" "$consumer_src/c_only"; do
  bin="$TEST_DIR/cmake-$(basename "$project")"
  cmake -S "$project" -B "$bin" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror -pedantic $san" \
    -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror -pedantic $san" \
    -DCMAKE_EXE_LINKER_FLAGS="$san" >"$TEST_DIR/cmake.log" 2>&1 ||
    fail "configuring $project failed: $(cat "$TEST_DIR/cmake.log")"
  cmake --build "$bin" >"$TEST_DIR/build.log" 2>&1 ||
    fail "building $project failed: $(cat "$TEST_DIR/build.log")"
  "$bin/consumer_c" "$TEST_DIR/plain" || fail "consumer_c (CMake) failed"
done
"$TEST_DIR/cmake-consumer/consumer_cxx" "$TEST_DIR/plain" || fail "consumer_cxx (CMake) failed"

# The version file refuses a version that is not there.
mkdir "$TEST_DIR/version-check"
cat >"$TEST_DIR/version-check/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(version_check LANGUAGES NONE)
find_package(volfs 99 QUIET PATHS "$prefix" NO_DEFAULT_PATH)
if(volfs_FOUND)
  message(FATAL_ERROR "find_package(volfs 99) accepted version \${volfs_VERSION}")
endif()
EOF
cmake -S "$TEST_DIR/version-check" -B "$TEST_DIR/version-check/build" >"$TEST_DIR/cmake.log" 2>&1 ||
  fail "version check: $(cat "$TEST_DIR/cmake.log")"

# --- pkg-config volfs. -------------------------------------------------------------
if command -v pkg-config >/dev/null; then
  PKG_CONFIG_PATH="$(dirname "$pc")"
  export PKG_CONFIG_PATH
  expect_eq "$(pkg-config --modversion volfs)" "$(sed -n 's/^Version: //p' "$pc")" "modversion"
  read -r -a flags <<<"$(pkg-config --cflags --libs volfs)"
  # shellcheck disable=SC2086 # $san is empty or one flag
  "$CXX" -std=c++20 -Wall -Wextra -Werror -pedantic $san "$consumer_src/consumer.cc" \
    "${flags[@]}" -o "$TEST_DIR/pc_consumer_cxx" || fail "c++ with pkg-config failed"
  # shellcheck disable=SC2086
  "$CC" -std=c11 -Wall -Wextra -Werror -pedantic $san "$consumer_src/consumer.c" \
    "${flags[@]}" -o "$TEST_DIR/pc_consumer_c" || fail "cc with pkg-config failed"
  "$TEST_DIR/pc_consumer_cxx" "$TEST_DIR/plain" || fail "consumer_cxx (pkg-config) failed"
  "$TEST_DIR/pc_consumer_c" "$TEST_DIR/plain" || fail "consumer_c (pkg-config) failed"
else
  note "pkg-config not found: pkg-config part not checked"
fi
