# Build step (cmake -P): embeds scenarios/*.toml and the default cost file
# scenarios/costs/default.toml into a .cpp so the installed tool carries its built-in scenarios
# and default costs. Inputs: -DSCENARIO_DIR=... -DOUTPUT=...
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
set(cost_file "${SCENARIO_DIR}/costs/default.toml")
if(NOT EXISTS "${cost_file}")
  message(FATAL_ERROR "${cost_file} is missing (write it with: ptreclaim calibrate -o ${cost_file})")
endif()
file(READ "${cost_file}" cost_text)
string(FIND "${cost_text}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${cost_file} contains the raw-string delimiter )${delim}\"")
endif()
set(out "// Generated from scenarios/*.toml by src/scenario/embed_scenarios.cmake. Do not edit.
#include <vector>

#include \"ptreclaim/scenario/scenario.hpp\"

namespace ptreclaim::sim::detail {

const std::vector<builtin_scenario>& generated_builtins() {
  static const std::vector<builtin_scenario> all{
${body}  };
  return all;
}

}  // namespace ptreclaim::sim::detail

namespace ptreclaim::sim {

std::string_view default_cost_file_text() noexcept {
  return R\"${delim}(${cost_text})${delim}\";
}

}  // namespace ptreclaim::sim
")
# Rewrite only on change so the library is not rebuilt needlessly.
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
  if(old STREQUAL out)
    return()
  endif()
endif()
file(WRITE "${OUTPUT}" "${out}")
