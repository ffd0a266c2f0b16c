# Run at every build (cmake -P): writes OUT, a header with ruvllm's commit as `git describe` gives
# it ("-dirty" with uncommitted changes), rewritten only when it changes, so that benchmark reports
# name the code that measured them without a rebuild of everything.
# GIT_OPTIONAL_LOCKS=0: a build must not take index.lock from under a concurrent git command.
set(ENV{GIT_OPTIONAL_LOCKS} 0)
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT commit)
  set(commit "unknown")
endif()
file(WRITE "${OUT}.tmp" "#pragma once\n#define RUVLLM_COMMIT \"${commit}\"\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
