# Build step (cmake -P): embeds scenarios/*.toml into a .cpp so the installed tool carries its
# built-in scenarios. Inputs: -DSCENARIO_DIR=... -DOUTPUT=...
file(GLOB files "${SCENARIO_DIR}/*.toml")
list(SORT files)
set(delim "ptrscn")
set(body "")
foreach(f ${files})
  get_filename_component(stem "${f}" NAME_WE)
  file(READ "${f}" text)
  string(FIND "${text}" ")${delim}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the raw-string delimiter )${delim}\"")
  endif()
  set(summary "")
  if(text MATCHES "\ndescription = \"([^\"\n]*)\"")
    set(summary "${CMAKE_MATCH_1}")
  endif()
  string(REPLACE "\\" "\\\\" summary "${summary}")
  string(APPEND body "      {\"${stem}\", \"${summary}\", R\"${delim}(${text})${delim}\"},\n")
endforeach()
set(out "// Generated from scenarios/*.toml by src/sim/embed_scenarios.cmake. Do not edit.
#include <vector>

#include \"ptreclaim/sim/scenario.hpp\"

namespace ptreclaim::sim::detail {

const std::vector<builtin_scenario>& generated_builtins() {
  static const std::vector<builtin_scenario> all{
${body}  };
  return all;
}

}  // namespace ptreclaim::sim::detail
")
# Rewrite only on change so the library is not rebuilt needlessly.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
  if(old STREQUAL out)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${out}")
