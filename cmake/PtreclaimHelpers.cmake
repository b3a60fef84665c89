# Helpers that declare every library, test and benchmark the same way (as abseil's
# absl_cc_library does), so warnings, sanitizers and install rules cannot drift apart.

set(PTRECLAIM_WARNINGS -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Woverloaded-virtual -Wpedantic -Wimplicit-fallthrough)

function(ptreclaim_apply_common target)
  target_compile_options(${target} PRIVATE ${PTRECLAIM_WARNINGS})
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12 at -O3 reports impossible memcpy overlaps inside std::string operator+
    # (GCC bug 105329, a false positive in libstdc++'s own code).
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(PTRECLAIM_SANITIZE STREQUAL "address")
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
      -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  elseif(PTRECLAIM_SANITIZE STREQUAL "thread")
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=thread)
    # GCC 12 warns about atomic_thread_fence under TSan; the code uses acquire/release
    # operations instead, so the warning would only flag third-party headers.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-tsan)
    endif()
  elseif(NOT PTRECLAIM_SANITIZE STREQUAL "")
    message(FATAL_ERROR "PTRECLAIM_SANITIZE must be '', 'address' or 'thread', not '${PTRECLAIM_SANITIZE}'")
  endif()
endfunction()

# ptreclaim_add_library(NAME name SOURCES ... DEPS ...)
# Declares ptreclaim_<name>, alias ptreclaim::<name>, exported and installed.
function(ptreclaim_add_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS;PUBLIC_DEPS" ${ARGN})
  set(target ptreclaim_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(ptreclaim::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME} POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/generated>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_features(${target} PUBLIC cxx_std_20)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_DEPS})
  ptreclaim_apply_common(${target})
  if(PTRECLAIM_SANITIZE STREQUAL "address")
    target_link_options(${target} INTERFACE -fsanitize=address,undefined)
  elseif(PTRECLAIM_SANITIZE STREQUAL "thread")
    target_link_options(${target} INTERFACE -fsanitize=thread)
  endif()
  install(TARGETS ${target} EXPORT ptreclaimTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()

# ptreclaim_add_test(NAME name SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s] [RUN_SERIAL])
# One GoogleTest executable, registered with CTest test by test. RUN_SERIAL: never beside other
# tests (timing measurements).
function(ptreclaim_add_test)
  cmake_parse_arguments(ARG "RUN_SERIAL" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  ptreclaim_apply_common(${ARG_NAME})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  # Only the properties asked for: an empty LABELS value would swallow the name after it.
  set(props TIMEOUT ${ARG_TIMEOUT})
  if(ARG_LABELS)
    list(APPEND props LABELS "${ARG_LABELS}")
  endif()
  if(ARG_RUN_SERIAL)
    list(APPEND props RUN_SERIAL TRUE)
  endif()
  include(GoogleTest)
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
endfunction()

# ptreclaim_add_bench(NAME name SOURCES ... DEPS ...)
# A Google Benchmark executable; CTest smoke-runs it for a minimal time so it never rots.
function(ptreclaim_add_bench)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS;SMOKE_ARGS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} benchmark::benchmark)
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/bench)
  ptreclaim_apply_common(${ARG_NAME})
  if(PTRECLAIM_BUILD_TESTS)
    add_test(NAME bench_smoke.${ARG_NAME}
      COMMAND ${ARG_NAME} --benchmark_min_time=0.001 ${ARG_SMOKE_ARGS})
    set_tests_properties(bench_smoke.${ARG_NAME} PROPERTIES LABELS bench_smoke TIMEOUT 300)
  endif()
endfunction()
