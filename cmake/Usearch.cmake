# USearch's C++ headers from the pinned npm package `usearch` (scripts/setup.sh unpacks it).
set(RUVLLM_USEARCH_DIR "${PROJECT_SOURCE_DIR}/build/deps/npm/usearch-2.26.2" CACHE PATH
    "USearch package (scripts/setup.sh unpacks it from the npm registry)")
if(NOT EXISTS "${RUVLLM_USEARCH_DIR}/include/usearch/index_dense.hpp")
  message(FATAL_ERROR "USearch headers not found at ${RUVLLM_USEARCH_DIR}. Run scripts/setup.sh first.")
endif()
add_library(usearch INTERFACE)
target_include_directories(usearch SYSTEM INTERFACE "${RUVLLM_USEARCH_DIR}/include")
# Header-only, without NumKong's SIMD kernels: the scalar metrics are auto-vectorised under
# -O3 -march=native (see docs/memory.md for the measured effect), and no OpenMP (our own threads).
target_compile_definitions(usearch INTERFACE USEARCH_USE_NUMKONG=0 USEARCH_USE_OPENMP=0)
