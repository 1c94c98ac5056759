# Writes OUT with the source tree's commit (git describe --always --dirty) as a
# C string macro, rewriting it only when the commit changed, so that volbench
# reports the tree it was built from at every build, not at configure time.
execute_process(
  COMMAND git -C ${SRC} describe --always --dirty --abbrev=7
  OUTPUT_VARIABLE commit
  OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_QUIET)
if(NOT commit)
  set(commit unknown)
endif()
set(text "#define VOLBENCH_SOURCE_COMMIT \"${commit}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
