# Multi-step checks of the ptreclaim binary that one command and a regex cannot express.
#   cmake -DPROGRAM=path -DWORKDIR=dir -DMODE=name [-DPOLICIES=a,b,...] -P check.cmake
# Modes:
#   default  `ptreclaim` with no arguments: exit 0, the table with every policy, wall time shown
#   replay   a canary run's printed replay command, run again, gives the same trace hash and
#            the same first violation
#   report   compare --report DIR and scale --report DIR: index.html with inline SVG plots
#            naming every policy, and a results.json that parses and holds every run
#   csv      --csv FILE: a header and one row per policy, each with the header's column count
#   costs    the same seeded run with the calibrated cost file and with a 10x dearer one:
#            the virtual time differs, and each run names the cost file it used
#   write_failure  an injected ENOSPC (PTRECLAIM_FAULT_WRITE) at the end of a run: exit 3 with
#            the path and the reason, the previous file intact, no temporary file left
#   interrupt  SIGINT to a scale sweep once its first point is saved, SIGTERM to a campaign:
#            exit 130 / 143, the JSON holds what finished and says "complete": false
#   campaign_shards  (-DPARALLEL=path) a campaign run whole, and in 2 shards by GNU parallel
#            -j2 then merged: the same verdict, failures and runs; a missing shard and a shard
#            given twice are reported
cmake_minimum_required(VERSION 3.19)  # string(JSON)

function(run_tool out_var code_var)
  execute_process(COMMAND ${PROGRAM} ${ARGN}
    WORKING_DIRECTORY "${WORKDIR}"
    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 280)  # below the test timeout (300 s)
  set(${out_var} "${out}${err}" PARENT_SCOPE)
  set(${code_var} "${code}" PARENT_SCOPE)
endfunction()

function(expect_code code want all what)
  if(NOT code STREQUAL "${want}")
    message(FATAL_ERROR "${what}: exit code ${code}, expected ${want}\n--- output ---\n${all}")
  endif()
endfunction()

function(json_get out_var file)
  if(NOT IS_ABSOLUTE "${file}")
    set(file "${WORKDIR}/${file}")
  endif()
  file(READ "${file}" text)
  string(JSON value ERROR_VARIABLE err GET "${text}" ${ARGN})
  if(err)
    message(FATAL_ERROR "${file}: ${err}")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

string(REPLACE "," ";" policies "${POLICIES}")

if(MODE STREQUAL "default")
  string(TIMESTAMP t0 "%s")
  run_tool(all code)
  string(TIMESTAMP t1 "%s")
  math(EXPR secs "${t1} - ${t0}")
  message(STATUS "ptreclaim with no arguments took about ${secs} s")
  expect_code("${code}" 0 "${all}" "ptreclaim")
  foreach(p ${policies})
    if(NOT all MATCHES "\n${p} +(yes|NO) ")
      message(FATAL_ERROR "the default table has no row for ${p}\n--- output ---\n${all}")
    endif()
  endforeach()
  foreach(col "safe" "ops/s" "vs immediate" "ok: every safe policy held")
    string(FIND "${all}" "${col}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the default output lacks '${col}'\n--- output ---\n${all}")
    endif()
  endforeach()

elseif(MODE STREQUAL "replay")
  # An unexpected violation: exit 1 and a one-line reason with the replay command.
  run_tool(all code run --scenario canary-immediate --policy immediate --ops 200 --seed 11
    --json first.json)
  expect_code("${code}" 1 "${all}" "canary run")
  if(NOT all MATCHES "replay: ptreclaim (run [^)\n]*)\\)")
    message(FATAL_ERROR "no replay command in the output\n--- output ---\n${all}")
  endif()
  separate_arguments(again UNIX_COMMAND "${CMAKE_MATCH_1}")
  run_tool(all2 code2 ${again} --json second.json)
  expect_code("${code2}" 1 "${all2}" "replayed command (${CMAKE_MATCH_1})")
  json_get(h1 first.json trace_hash)
  json_get(h2 second.json trace_hash)
  json_get(v1 first.json violations first)
  json_get(v2 second.json violations first)
  json_get(n1 first.json violations count)
  json_get(n2 second.json violations count)
  if(NOT h1 STREQUAL h2 OR h1 STREQUAL "0")
    message(FATAL_ERROR "trace hashes differ or are 0: ${h1} vs ${h2}")
  endif()
  if(NOT v1 STREQUAL v2 OR v1 STREQUAL "" OR NOT n1 STREQUAL n2)
    message(FATAL_ERROR "first violations differ:\n${v1}\n(${n1})\nvs\n${v2}\n(${n2})")
  endif()
  # `replay SEED` agrees with the original run too.
  run_tool(all3 code3 replay 11 --scenario canary-immediate --policy immediate --ops 200
    --json third.json)
  expect_code("${code3}" 1 "${all3}" "replay 11")
  json_get(h3 third.json trace_hash)
  if(NOT h3 STREQUAL h1)
    message(FATAL_ERROR "replay 11 gave trace hash ${h3}, the run gave ${h1}")
  endif()

elseif(MODE STREQUAL "report")
  foreach(cmd compare scale)
    set(dir "${WORKDIR}/report-${cmd}")
    file(REMOVE_RECURSE "${dir}")
    if(cmd STREQUAL "scale")
      set(extra --cpus 1,2)
    else()
      set(extra)
    endif()
    run_tool(all code ${cmd} --scenario dma-storm --policy ${POLICIES} --ops 40 --seed 5
      ${extra} --report "${dir}")
    expect_code("${code}" 0 "${all}" "${cmd} --report")
    foreach(f index.html results.json)
      if(NOT EXISTS "${dir}/${f}")
        message(FATAL_ERROR "${cmd} --report wrote no ${f}\n--- output ---\n${all}")
      endif()
    endforeach()
    file(READ "${dir}/index.html" html)
    string(REGEX MATCHALL "<svg[ >]" svgs "${html}")
    list(LENGTH svgs nsvg)
    if(nsvg LESS 2 OR NOT html MATCHES "</svg>")
      message(FATAL_ERROR "${cmd}: index.html has ${nsvg} inline SVG plots, expected >= 2")
    endif()
    foreach(p ${policies})
      string(FIND "${html}" "${p}" at)
      if(at EQUAL -1)
        message(FATAL_ERROR "${cmd}: index.html never names ${p}")
      endif()
    endforeach()
    json_get(kind "${dir}/results.json" ${cmd} kind)
    json_get(runs "${dir}/results.json" ${cmd} runs)
    string(JSON nruns LENGTH "${runs}")
    list(LENGTH policies np)
    if(cmd STREQUAL "scale")
      math(EXPR np "${np} * 2")
    endif()
    if(NOT kind STREQUAL cmd OR NOT nruns EQUAL np)
      message(FATAL_ERROR "${cmd}: results.json kind '${kind}' with ${nruns} runs, expected ${np}")
    endif()
  endforeach()

elseif(MODE STREQUAL "csv")
  file(REMOVE "${WORKDIR}/out.csv")
  run_tool(all code compare --scenario sva-kernel --policy ${POLICIES} --ops 30 --seed 2
    --csv out.csv --quiet)
  expect_code("${code}" 0 "${all}" "compare --csv")
  file(STRINGS "${WORKDIR}/out.csv" lines)
  list(LENGTH lines nlines)
  list(LENGTH policies np)
  math(EXPR want "${np} + 1")
  if(NOT nlines EQUAL want)
    message(FATAL_ERROR "out.csv has ${nlines} lines, expected a header and ${np} rows")
  endif()
  list(GET lines 0 header)
  if(NOT header MATCHES "^[A-Za-z_0-9]+(,[A-Za-z_0-9]+)+$" OR NOT header MATCHES "(^|,)policy(,|$)")
    message(FATAL_ERROR "out.csv header is not a list of column names: ${header}")
  endif()
  # Column count of a line, commas inside quoted fields ignored.
  function(columns out line)
    string(REGEX REPLACE "\"[^\"]*\"" "q" bare "${line}")
    string(REGEX MATCHALL "," commas "${bare}")
    list(LENGTH commas n)
    math(EXPR n "${n} + 1")
    set(${out} ${n} PARENT_SCOPE)
  endfunction()
  columns(ncols "${header}")
  set(i 1)
  foreach(p ${policies})
    list(GET lines ${i} row)
    columns(n "${row}")
    if(NOT n EQUAL ncols OR NOT row MATCHES "(^|,)\"?${p}\"?,")
      message(FATAL_ERROR "row ${i} (${row}) has ${n} columns (header ${ncols}) or is not ${p}")
    endif()
    math(EXPR i "${i} + 1")
  endforeach()

elseif(MODE STREQUAL "costs")
  # costs.toml comes from the calibrate fixture; the dear file multiplies every [cost_ns] cost
  # by 10 (the [kernel_ns] table that follows it keeps the defaults).
  file(STRINGS "${WORKDIR}/costs.toml" cal REGEX "^([a-z_]+ = |\\[)")
  set(dear "[cost_ns]\n")
  set(in_cost_ns FALSE)
  foreach(line ${cal})
    if(line MATCHES "^\\[")
      set(in_cost_ns FALSE)
      if(line STREQUAL "[cost_ns]")
        set(in_cost_ns TRUE)
      endif()
    elseif(in_cost_ns AND line MATCHES "^([a-z_]+) = ([0-9]+)")
      math(EXPR v "(${CMAKE_MATCH_2} + 1) * 10")
      string(APPEND dear "${CMAKE_MATCH_1} = ${v}\n")
    endif()
  endforeach()
  file(WRITE "${WORKDIR}/dear.toml" "${dear}")
  foreach(c costs dear)
    run_tool(all code run --scenario dma-storm --policy sync --ops 50 --seed 9
      --costs ${c}.toml --json run-${c}.json --quiet)
    expect_code("${code}" 0 "${all}" "run --costs ${c}.toml")
    json_get(ns_${c} run-${c}.json elapsed_ns)
    json_get(src_${c} run-${c}.json cost_source)
  endforeach()
  if(NOT src_costs STREQUAL "costs.toml" OR NOT src_dear STREQUAL "dear.toml")
    message(FATAL_ERROR "cost_source is '${src_costs}' / '${src_dear}'")
  endif()
  if(NOT ns_dear GREATER ns_costs)
    message(FATAL_ERROR "virtual time with 10x costs (${ns_dear} ns) is not above the "
      "calibrated run's (${ns_costs} ns): the cost file is not used")
  endif()
  # A scenario's [cost] file is used the same way.
  file(WRITE "${WORKDIR}/with_dear.toml" "base = \"dma-storm\"\n[cost]\nfile = \"dear.toml\"\n")
  run_tool(all code run --scenario with_dear.toml --policy sync --ops 50 --seed 9
    --json run-scn.json --quiet)
  expect_code("${code}" 0 "${all}" "run --scenario with_dear.toml")
  json_get(ns_scn run-scn.json elapsed_ns)
  if(NOT ns_scn EQUAL ns_dear)
    message(FATAL_ERROR "[cost] file = dear.toml gave ${ns_scn} ns, --costs dear.toml ${ns_dear}")
  endif()

elseif(MODE STREQUAL "write_failure")
  file(WRITE "${WORKDIR}/kept.json" "previous\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PTRECLAIM_FAULT_WRITE=kept.json
    ${PROGRAM} run --scenario dma-storm --policy sync --ops 20 --seed 4 --json kept.json
    --csv kept.csv --quiet
    WORKING_DIRECTORY "${WORKDIR}" RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err
    TIMEOUT 120)
  expect_code("${code}" 3 "${out}${err}" "run with an injected write failure")
  if(NOT err MATCHES "--json: cannot write 'kept.json': No space left on device")
    message(FATAL_ERROR "no error naming kept.json and ENOSPC\n--- stderr ---\n${err}")
  endif()
  file(READ "${WORKDIR}/kept.json" kept)
  if(NOT kept STREQUAL "previous\n")
    message(FATAL_ERROR "kept.json was changed by a failed write: ${kept}")
  endif()
  file(GLOB temps "${WORKDIR}/.kept.json.tmp-*")
  if(temps)
    message(FATAL_ERROR "temporary files left behind: ${temps}")
  endif()
  # The other output was still written, whole.
  file(STRINGS "${WORKDIR}/kept.csv" rows)
  list(LENGTH rows nrows)
  if(NOT nrows EQUAL 2)
    message(FATAL_ERROR "kept.csv has ${nrows} lines, expected a header and one row")
  endif()

elseif(MODE STREQUAL "interrupt")
  # Starts the command, waits until its JSON file appears (the first run is done and saved),
  # then sends the signal; prints the exit status.
  function(interrupt_after_first signal json)
    file(REMOVE "${WORKDIR}/${json}")
    string(JOIN " " words ${ARGN})
    execute_process(COMMAND bash -c "
      '${PROGRAM}' ${words} --json ${json} --quiet & pid=$!
      for i in $(seq 1 2400); do
        [ -e ${json} ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.05
      done
      kill -${signal} $pid
      wait $pid
      echo \"exit=$?\""
      WORKING_DIRECTORY "${WORKDIR}" RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err
      TIMEOUT 280)
    set(out "${out}${err}" PARENT_SCOPE)
  endfunction()

  # The exit status, the line on stderr, and a JSON file that says it is incomplete and holds
  # at least the run saved before the signal and fewer than all `planned`.
  function(expect_stopped json signal status planned)
    if(NOT out MATCHES "exit=${status}")
      message(FATAL_ERROR "after SIG${signal}: not exit ${status}\n--- output ---\n${out}")
    endif()
    if(NOT out MATCHES "interrupted by SIG${signal}: stopped early; what finished is in ${json}")
      message(FATAL_ERROR "after SIG${signal}: not said on stderr\n--- output ---\n${out}")
    endif()
    json_get(complete ${json} complete)
    json_get(by ${json} interrupted_by)
    json_get(runs ${json} runs)
    json_get(first_complete ${json} runs 0 complete)
    string(JSON nruns LENGTH "${runs}")
    if(NOT complete STREQUAL "OFF" OR NOT by STREQUAL "SIG${signal}" OR nruns LESS 1
       OR NOT nruns LESS planned OR NOT first_complete STREQUAL "ON")
      message(FATAL_ERROR "${json}: complete ${complete}, interrupted_by '${by}', ${nruns} of "
        "${planned} runs, the first complete: ${first_complete}")
    endif()
  endfunction()

  interrupt_after_first(INT int-scale.json scale --scenario dma-storm --policy sync,flush-epoch
    --cpus 1,64,128 --ops 3000 --seed 1)
  expect_stopped(int-scale.json INT 130 6)
  json_get(first_cpus int-scale.json runs 0 cpus)
  if(NOT first_cpus EQUAL 1)
    message(FATAL_ERROR "int-scale.json: the first run is at ${first_cpus} cpus, not 1")
  endif()

  interrupt_after_first(TERM int-campaign.json campaign --scenarios dma-storm --policies sync
    --seeds 1..200 --ops 20)
  expect_stopped(int-campaign.json TERM 143 200)
  # An interrupted shard does not merge into a verdict for the whole campaign.
  run_tool(all code campaign merge int-campaign.json)
  expect_code("${code}" 3 "${all}" "merge of an interrupted campaign")
  if(NOT all MATCHES "was stopped early by SIGTERM: [0-9]+ of 200 runs")
    message(FATAL_ERROR "merge does not say the shard was stopped early\n--- output ---\n${all}")
  endif()

elseif(MODE STREQUAL "campaign_shards")
  if(NOT PARALLEL)
    message(FATAL_ERROR "GNU parallel is not installed (Debian package 'parallel'; "
      "scripts/setup.sh installs it)")
  endif()
  # dma-storm has no softirq point, so xen-softirq-tasklet catches nothing there: with
  # --expect-violation those runs fail, and the verdict lists them.
  set(campaign campaign --scenarios canary-softirq,dma-storm --policies xen-softirq-tasklet,sync
    --seeds 1..2 --ops 30 --expect-violation --quiet)
  file(REMOVE "${WORKDIR}/camp-all.json" "${WORKDIR}/camp-1.json" "${WORKDIR}/camp-2.json")
  run_tool(whole whole_code ${campaign} --json camp-all.json)
  expect_code("${whole_code}" 1 "${whole}" "the unsharded campaign")
  execute_process(COMMAND ${PARALLEL} --will-cite -j2 ${PROGRAM} ${campaign} --shard {}/2
    --json camp-{}.json ::: 1 2
    WORKING_DIRECTORY "${WORKDIR}" RESULT_VARIABLE pcode OUTPUT_VARIABLE pout ERROR_VARIABLE perr
    TIMEOUT 280)
  foreach(k 1 2)
    json_get(shard_runs camp-${k}.json runs)
    string(JSON n LENGTH "${shard_runs}")
    if(NOT n EQUAL 4)
      message(FATAL_ERROR "shard ${k}/2 holds ${n} runs, expected 4 of 8\n${pout}${perr}")
    endif()
  endforeach()
  run_tool(merged merged_code campaign merge camp-1.json camp-2.json --json camp-merged.json)
  expect_code("${merged_code}" "${whole_code}" "${merged}" "campaign merge")
  foreach(key "verdict;code" "verdict;reason" "failures" "complete")
    json_get(a camp-all.json ${key})
    json_get(b camp-merged.json ${key})
    if(NOT a STREQUAL b)
      message(FATAL_ERROR "merged ${key} differs from the unsharded run's:\n${b}\nvs\n${a}")
    endif()
  endforeach()
  json_get(reason camp-all.json verdict reason)
  string(FIND "${merged}" "${reason}" at)
  if(at EQUAL -1 OR NOT reason MATCHES "^unsafe: 2 of 8 judged runs failed")
    message(FATAL_ERROR "merge did not print the verdict '${reason}'\n--- output ---\n${merged}")
  endif()
  json_get(failures camp-merged.json failures)
  foreach(seed 1 2)
    if(NOT failures MATCHES "replay: ptreclaim run --scenario dma-storm --policy xen-softirq-tasklet --executor deterministic --cpus 4 --seed ${seed} --ops 30")
      message(FATAL_ERROR "no replay command for seed ${seed} in the failures:\n${failures}")
    endif()
  endforeach()
  foreach(i RANGE 7)  # the same runs, to the trace hash
    json_get(ha camp-all.json runs ${i} trace_hash)
    json_get(hb camp-merged.json runs ${i} trace_hash)
    if(NOT ha STREQUAL hb)
      message(FATAL_ERROR "run ${i}: trace hash ${hb} merged, ${ha} unsharded")
    endif()
  endforeach()
  # A missing shard and a shard given twice are said, and fail.
  run_tool(all code campaign merge camp-1.json)
  expect_code("${code}" 1 "${all}" "merge of shard 1 alone (it holds a failure)")
  if(NOT all MATCHES "incomplete campaign: 1 of 2 shards missing: 2/2")
    message(FATAL_ERROR "merge of one shard does not name the missing one\n${all}")
  endif()
  run_tool(all code campaign merge camp-1.json camp-2.json camp-1.json)
  expect_code("${code}" 3 "${all}" "merge with a shard given twice")
  if(NOT all MATCHES "shard 1/2 is given twice: camp-1.json and camp-1.json overlap")
    message(FATAL_ERROR "merge does not report the overlap\n${all}")
  endif()
  run_tool(all code campaign merge camp-all.json camp-1.json)
  expect_code("${code}" 3 "${all}" "merge of an unsharded result with a shard")
  if(NOT all MATCHES "the shard counts differ")
    message(FATAL_ERROR "merge does not report inconsistent shard counts\n${all}")
  endif()

else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
