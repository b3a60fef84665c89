# Runs one ptreclaim command and checks its exit code and output (stdout + stderr together).
#   -DPROGRAM=path -DARGS="a|b|c" -DEXPECT_CODE=n [-DEXPECT_REGEX=re] [-DREJECT_REGEX=re]
#   [-DWORKDIR=dir] [-DWRITE_FILE=path -DWRITE_TEXT=text]
if(DEFINED WRITE_FILE)
  file(WRITE "${WRITE_FILE}" "${WRITE_TEXT}")
endif()
string(REPLACE "|" ";" ARGS "${ARGS}")
if(NOT DEFINED WORKDIR)
  set(WORKDIR ".")
endif()
execute_process(COMMAND ${PROGRAM} ${ARGS}
  WORKING_DIRECTORY "${WORKDIR}"
  RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
set(all "${out}${err}")
if(NOT code STREQUAL "${EXPECT_CODE}")
  message(FATAL_ERROR "exit code ${code}, expected ${EXPECT_CODE}\n--- output ---\n${all}")
endif()
if(DEFINED EXPECT_REGEX AND NOT all MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "output does not match '${EXPECT_REGEX}'\n--- output ---\n${all}")
endif()
if(DEFINED REJECT_REGEX AND all MATCHES "${REJECT_REGEX}")
  message(FATAL_ERROR "output matches '${REJECT_REGEX}', which it must not\n--- output ---\n${all}")
endif()
