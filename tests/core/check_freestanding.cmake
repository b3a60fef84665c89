# cmake -DNM=<nm> -DOBJECTS=<objects> -P check_freestanding.cmake
#   fails if an object has an undefined symbol (it needs something from outside its own file),
#   other than memcpy, memmove, memset and memcmp: GCC and clang may emit calls to these four
#   for plain copies even with -ffreestanding, and require every freestanding environment to
#   provide them (clang 14 at -O0 calls memcpy for a struct copy).
# cmake -DCORE_DIR=<include/ptreclaim/core> -P check_freestanding.cmake
#   fails if a core header includes a standard header outside the freestanding set it may use.
cmake_minimum_required(VERSION 3.25)  # IN_LIST
if(DEFINED OBJECTS)
  foreach(obj IN LISTS OBJECTS)
    execute_process(COMMAND ${NM} -u ${obj} OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "nm failed on ${obj}")
    endif()
    string(REGEX REPLACE "[ \t]*U (memcpy|memmove|memset|memcmp)\n?" "" undefined "${undefined}")
    string(STRIP "${undefined}" undefined)
    if(NOT undefined STREQUAL "")
      message(FATAL_ERROR "${obj} needs symbols from outside: \n${undefined}")
    endif()
  endforeach()
  message(STATUS "no undefined symbols in ${OBJECTS}")
endif()
if(DEFINED CORE_DIR)
  set(allowed cstdint cstddef atomic type_traits limits new)
  file(GLOB headers ${CORE_DIR}/*.hpp)
  if(NOT headers)
    message(FATAL_ERROR "no headers in ${CORE_DIR}")
  endif()
  foreach(h IN LISTS headers)
    file(STRINGS ${h} lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line IN LISTS lines)
      if(line MATCHES "<([^>]+)>")
        if(NOT CMAKE_MATCH_1 IN_LIST allowed)
          message(FATAL_ERROR "${h} includes <${CMAKE_MATCH_1}>, not one of: ${allowed}")
        endif()
      elseif(line MATCHES "\"([^\"]+)\"")
        if(NOT CMAKE_MATCH_1 MATCHES "^ptreclaim/core/")
          message(FATAL_ERROR "${h} includes \"${CMAKE_MATCH_1}\" from outside the core")
        endif()
      endif()
    endforeach()
  endforeach()
  message(STATUS "core headers include only: ${allowed} and each other")
endif()
