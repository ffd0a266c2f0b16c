# llama.cpp, built from the source tree that scripts/setup.sh cloned out of node-llama-cpp's pinned
# git bundle. Static, only the targets we link (llama, ggml, ggml-base, ggml-cpu [+ ggml-cuda]).

set(RUVLLM_LLAMA_DIR "${PROJECT_SOURCE_DIR}/build/deps/llama.cpp" CACHE PATH
    "llama.cpp source tree (scripts/setup.sh clones it from node-llama-cpp's git bundle)")

if(NOT EXISTS "${RUVLLM_LLAMA_DIR}/include/llama.h")
  message(FATAL_ERROR
    "llama.cpp sources not found at ${RUVLLM_LLAMA_DIR}.\n"
    "Run scripts/setup.sh first: it fetches the pinned node-llama-cpp package and clones llama.cpp from it.")
endif()

# Options for the llama.cpp subproject. Cache entries so that a user can still override them.
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TOOLS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_SERVER OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_APP OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "" FORCE)
set(LLAMA_USE_PREBUILT_UI OFF CACHE BOOL "" FORCE)
set(LLAMA_OPENSSL OFF CACHE BOOL "" FORCE)
set(LLAMA_ALL_WARNINGS OFF CACHE BOOL "" FORCE)
set(GGML_NATIVE ${RUVLLM_NATIVE} CACHE BOOL "" FORCE)
set(GGML_CUDA ${RUVLLM_CUDA} CACHE BOOL "" FORCE)
# ggml's own thread pool instead of OpenMP: see ThreadPool in src/llm/backend.h for the numbers.
set(GGML_OPENMP OFF CACHE BOOL "" FORCE)
set(GGML_CCACHE ON CACHE BOOL "")

add_subdirectory("${RUVLLM_LLAMA_DIR}" "${CMAKE_BINARY_DIR}/llama.cpp" EXCLUDE_FROM_ALL SYSTEM)

# The bundle's vocabulary files (the synth tool cuts LFM2's tokenizer from llama-bpe's).
set(RUVLLM_LLAMA_MODELS_DIR "${RUVLLM_LLAMA_DIR}/models")

execute_process(COMMAND git -C "${RUVLLM_LLAMA_DIR}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE RUVLLM_LLAMA_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT RUVLLM_LLAMA_COMMIT)
  set(RUVLLM_LLAMA_COMMIT "unknown")
endif()
