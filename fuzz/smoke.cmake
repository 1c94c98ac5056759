# Fuzz smoke tests (ctest label `fuzz`): builds fuzz/ with clang as an external project in
# build/fuzz and runs each libFuzzer target for VOLFS_FUZZ_SECONDS. Plain builds only: the
# targets carry their own ASan+UBSan, so an ASan or TSan build of the suite adds nothing to them.
# Without a clang++ that links -fsanitize=fuzzer the tests report SKIP (exit 77), never a pass.
set(VOLFS_FUZZ_TARGETS page_map_fuzz ioctl_decode_fuzz)
set(VOLFS_FUZZ_SECONDS 20 CACHE STRING "How long each fuzz smoke test runs, in seconds")
if(NOT VOLFS_SANITIZE STREQUAL "")
  return()
endif()

find_program(VOLFS_FUZZ_CXX NAMES clang++-14 clang++
             DOC "clang++ with libFuzzer, for the fuzz targets (empty: they report SKIP)")
set(volfs_fuzz_skip "")
if(NOT VOLFS_FUZZ_CXX)
  set(volfs_fuzz_skip "no clang++ found (Debian: clang-14 libclang-rt-14-dev)")
else()
  set(probe_dir ${CMAKE_BINARY_DIR}/fuzz-probe)
  file(WRITE ${probe_dir}/probe.cc
       "#include <cstddef>\n#include <cstdint>\n"
       "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(
    COMMAND ${VOLFS_FUZZ_CXX} -fsanitize=fuzzer,address,undefined ${probe_dir}/probe.cc
            -o ${probe_dir}/probe
    RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_QUIET)
  if(NOT probe_rc EQUAL 0)
    set(volfs_fuzz_skip "${VOLFS_FUZZ_CXX} cannot link -fsanitize=fuzzer (Debian: libclang-rt-14-dev)")
  endif()
endif()

if(volfs_fuzz_skip)
  message(STATUS "Fuzz targets: SKIP, ${volfs_fuzz_skip}")
  foreach(t ${VOLFS_FUZZ_TARGETS})
    add_test(NAME ${t} COMMAND sh -c "echo 'SKIP: ${volfs_fuzz_skip}'; exit 77")
    set_tests_properties(${t} PROPERTIES LABELS fuzz SKIP_RETURN_CODE 77)
  endforeach()
  return()
endif()

message(STATUS "Fuzz targets: built with ${VOLFS_FUZZ_CXX} in ${CMAKE_BINARY_DIR}/fuzz")
include(ExternalProject)
ExternalProject_Add(volfs_fuzz
  SOURCE_DIR ${PROJECT_SOURCE_DIR}/fuzz
  BINARY_DIR ${CMAKE_BINARY_DIR}/fuzz
  CMAKE_ARGS -DCMAKE_CXX_COMPILER=${VOLFS_FUZZ_CXX}
  BUILD_ALWAYS ON  # its own make decides what is out of date
  INSTALL_COMMAND "")
# A failing input is written there as crash-*, leak-* or timeout-*: rerun with it as argument.
set(artifacts ${CMAKE_BINARY_DIR}/fuzz/artifacts/)
file(MAKE_DIRECTORY ${artifacts})
foreach(t ${VOLFS_FUZZ_TARGETS})
  add_test(NAME ${t}
    COMMAND ${CMAKE_BINARY_DIR}/fuzz/bin/${t} -max_total_time=${VOLFS_FUZZ_SECONDS}
            -print_final_stats=1 -artifact_prefix=${artifacts})
  set_tests_properties(${t} PROPERTIES LABELS fuzz TIMEOUT 300)
endforeach()
