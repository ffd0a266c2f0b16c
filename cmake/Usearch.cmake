# USearch's C++ headers from the pinned npm package `usearch` (scripts/setup.sh unpacks it), with
# the SIMD distance kernels of NumKong, which the same package ships.
set(RUVLLM_USEARCH_DIR "${PROJECT_SOURCE_DIR}/build/deps/npm/usearch-2.26.2" CACHE PATH
    "USearch package (scripts/setup.sh unpacks it from the npm registry)")
if(NOT EXISTS "${RUVLLM_USEARCH_DIR}/include/usearch/index_dense.hpp")
  message(FATAL_ERROR "USearch headers not found at ${RUVLLM_USEARCH_DIR}. Run scripts/setup.sh first.")
endif()
set(_nk "${RUVLLM_USEARCH_DIR}/numkong")

# NumKong picks a kernel per CPU at run time (dynamic dispatch); it compiles each ISA's kernels
# that this compiler can emit, found by compiling NumKong's own probe sources. USearch's plain
# loops are reductions the compiler may not vectorise: efSearch=64 took 610 us on GloVe-100 without
# NumKong (docs/memory.md).
# Native bf16/f16 scalar types off: GCC 12 has no __bf16 or _Float16 in C++ (NumKong then emulates
# them in software for scalar code; its SIMD kernels do not depend on it).
set(_nk_defs NK_DYNAMIC_DISPATCH=1 NK_NATIVE_BF16=0 NK_NATIVE_F16=0)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  include(CheckSourceCompiles)
  set(_saved_flags "${CMAKE_REQUIRED_FLAGS}")
  foreach(_probe
      "HASWELL|-mavx2 -mfma -mf16c|x86_haswell" "SKYLAKE|-mavx512f -mavx512bw -mavx512dq -mavx512vl|x86_skylake"
      "ICELAKE|-mavx512vnni -mavx512vl|x86_icelake" "GENOA|-mavx512bf16 -mavx512vl|x86_genoa"
      "SAPPHIRE|-mavx512fp16 -mavx512vl|x86_sapphire" "SAPPHIREAMX|-mamx-tile -mamx-int8|x86_sapphireamx"
      "GRANITEAMX|-mamx-tile -mamx-fp16|x86_graniteamx" "DIAMOND|-mavx10.2-512|x86_diamond"
      "TURIN|-mavx512vp2intersect|x86_turin" "ALDER|-mavxvnni|x86_alder" "SIERRA|-mavxvnniint8|x86_sierra")
    string(REPLACE "|" ";" _fields "${_probe}")
    list(GET _fields 0 _isa)
    list(GET _fields 1 _flags)
    list(GET _fields 2 _file)
    file(READ "${_nk}/probes/${_file}.c" _source)
    set(CMAKE_REQUIRED_FLAGS "${_flags}")
    check_source_compiles(C "${_source}" RUVLLM_NK_${_isa})
    if(RUVLLM_NK_${_isa})
      list(APPEND _nk_defs NK_TARGET_${_isa}=1)
    else()
      list(APPEND _nk_defs NK_TARGET_${_isa}=0)
    endif()
  endforeach()
  set(CMAKE_REQUIRED_FLAGS "${_saved_flags}")
endif()
file(GLOB _nk_sources "${_nk}/c/numkong.c" "${_nk}/c/dispatch_*.c")
add_library(numkong STATIC ${_nk_sources})
target_include_directories(numkong SYSTEM PUBLIC "${_nk}/include")
target_compile_definitions(numkong PUBLIC ${_nk_defs})
target_compile_options(numkong PRIVATE -w)  # third-party code: its warnings are not ours to fix
target_link_libraries(numkong PUBLIC m)

add_library(usearch INTERFACE)
target_include_directories(usearch SYSTEM INTERFACE "${RUVLLM_USEARCH_DIR}/include")
target_compile_definitions(usearch INTERFACE USEARCH_USE_NUMKONG=1 USEARCH_USE_OPENMP=0)
target_link_libraries(usearch INTERFACE numkong)
