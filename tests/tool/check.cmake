# Multi-step checks of the ptreclaim binary that one command and a regex cannot express.
#   cmake -DPROGRAM=path -DWORKDIR=dir -DMODE=name [-DPOLICIES=a,b,...] -P check.cmake
# Modes:
#   default  `ptreclaim` with no arguments (the tour): exit 0, both cases with every policy, 3-5
#            findings each with its command, the verdict; its --json; wall time shown
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
#   browser  (-DCHROMIUM=path -DHARNESS_DIR=dir) a compare and a scale report opened in headless
#            Chromium: no console error, broken image or broken link, every plot titled; the
#            checker's self-test on a page broken on purpose; screenshots saved in
#            WORKDIR/browser/ (report.png, scale.png)
#   trace    run --trace and --frame: the Chrome trace parses, has every kind of track and
#            event, stays under --trace-limit; the story tells the violation's frame in order
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
  message(STATUS "ptreclaim with no arguments (the tour) took about ${secs} s")
  expect_code("${code}" 0 "${all}" "ptreclaim")
  # Both cases, each with a row for every policy.
  foreach(case "the Xen case: superpage-churn" "the Linux case: sva-kernel")
    string(FIND "${all}" "${case}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the tour lacks '${case}'\n--- output ---\n${all}")
    endif()
  endforeach()
  foreach(p ${policies})
    string(REGEX MATCHALL "\n${p} +(yes|NO|contract) " rows "${all}")
    list(LENGTH rows n)
    if(NOT n EQUAL 2)
      message(FATAL_ERROR "the tour has ${n} rows for ${p}, expected one per case\n--- output ---\n${all}")
    endif()
  endforeach()
  foreach(col "safe" "ops/s @2" "ops/s @32" "speed-up" "vs immediate" "p99 retire->free"
      "what the figures show" "ok: every safe policy held")
    string(FIND "${all}" "${col}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the tour's output lacks '${col}'\n--- output ---\n${all}")
    endif()
  endforeach()
  # Three to five findings, each with the command that shows it in full.
  string(REPLACE ";" "," text "${all}")  # a ';' would split the lists below
  string(REGEX MATCHALL "\n[1-9]\\. [^\n]+" findings "${text}")
  string(REGEX MATCHALL "\n   \\$ ptreclaim [a-z]+ [^\n]+" commands "${text}")
  list(LENGTH findings nf)
  list(LENGTH commands nc)
  if(nf LESS 3 OR nf GREATER 5 OR NOT nc EQUAL nf)
    message(FATAL_ERROR "the tour has ${nf} findings and ${nc} commands (3 to 5, one each)\n${all}")
  endif()
  # The tour's JSON: both cases, the findings, the verdict.
  run_tool(all code --json tour.json --quiet --ops 20)
  expect_code("${code}" 0 "${all}" "ptreclaim --json tour.json --ops 20")
  json_get(kind tour.json kind)
  json_get(cases tour.json cases)
  json_get(reason tour.json verdict reason)
  string(JSON ncases LENGTH "${cases}")
  if(NOT kind STREQUAL "tour" OR NOT ncases EQUAL 2 OR NOT reason MATCHES "^ok: ")
    message(FATAL_ERROR "tour.json: kind '${kind}', ${ncases} cases, verdict '${reason}'")
  endif()

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

elseif(MODE STREQUAL "trace")
  # A failing replay tells the first violation's story without being asked, in order.
  file(REMOVE "${WORKDIR}/trace.json" "${WORKDIR}/small-trace.json")
  run_tool(all code replay 11 --scenario canary-immediate --policy immediate --ops 60
    --trace trace.json --json replay.json)
  expect_code("${code}" 1 "${all}" "replay of a canary with --trace")
  if(NOT all MATCHES "story of frame ([0-9]+) \\(the first violation\\)")
    message(FATAL_ERROR "the failing replay told no story\n--- output ---\n${all}")
  endif()
  set(frame "${CMAKE_MATCH_1}")
  string(FIND "${all}" "story of frame" from)
  string(SUBSTRING "${all}" ${from} -1 story)
  set(at 0)
  foreach(step "allocated as a level-" "linked into domain" "unlinked from domain"
      "retired into" "freed by immediate" "'s walk on IOMMU" "why: frame ${frame}")
    string(FIND "${story}" "${step}" pos)
    if(pos LESS at)
      message(FATAL_ERROR "the story lacks '${step}' or tells it out of order\n${all}")
    endif()
    set(at ${pos})
  endforeach()
  if(NOT all MATCHES "replayed twice: same trace hash")
    message(FATAL_ERROR "recording changed the replay\n${all}")
  endif()
  json_get(story_frame replay.json frame_story frame)
  json_get(first_frame replay.json violations first_frame)
  json_get(kind0 replay.json frame_story events 0 kind)
  if(NOT story_frame EQUAL frame OR NOT first_frame EQUAL frame OR NOT kind0 STREQUAL "allocated")
    message(FATAL_ERROR "replay.json: story of ${story_frame} (first frame ${first_frame}), "
      "first event '${kind0}'")
  endif()
  # The trace: Chrome trace-event JSON with every kind of track.
  json_get(generator trace.json otherData generator)
  json_get(dropped trace.json otherData dropped_events)
  file(READ "${WORKDIR}/trace.json" trace)
  foreach(want "\"ph\":\"X\",\"pid\":1," "\"cat\":\"op\"" "\"name\":\"retire\"" "\"name\":\"free\""
      "\"ph\":\"b\",\"pid\":10," "\"name\":\"IOMMU 1 invalidation queue\"" "\"name\":\"device 0\""
      "\"name\":\"violation (S1)\"" "\"name\":\"frames pending\"")
    string(FIND "${trace}" "${want}" pos)
    if(pos EQUAL -1)
      message(FATAL_ERROR "trace.json has no ${want}")
    endif()
  endforeach()
  if(NOT generator STREQUAL "ptreclaim" OR NOT dropped EQUAL 0)
    message(FATAL_ERROR "trace.json: generator '${generator}', ${dropped} events dropped")
  endif()
  # --trace-limit bounds the file and says what it dropped; --frame tells a chosen frame.
  run_tool(all code run --scenario canary-immediate --policy immediate --ops 60 --seed 11
    --trace small-trace.json --trace-limit 64K --frame ${frame} --quiet)
  expect_code("${code}" 1 "${all}" "run with --trace-limit 64K")
  file(SIZE "${WORKDIR}/small-trace.json" bytes)
  json_get(dropped small-trace.json otherData dropped_events)
  if(bytes GREATER 65536 OR dropped EQUAL 0)
    message(FATAL_ERROR "small-trace.json: ${bytes} bytes (bound 65536), ${dropped} dropped")
  endif()
  run_tool(all code run --scenario canary-immediate --policy flush-epoch --ops 60 --seed 11
    --frame ${frame})
  expect_code("${code}" 0 "${all}" "run --frame on a safe policy")
  if(NOT all MATCHES "story of frame ${frame} \\(--frame\\)" OR NOT all MATCHES "why: frame ${frame}")
    message(FATAL_ERROR "run --frame told no story\n${all}")
  endif()

elseif(MODE STREQUAL "browser")
  if(NOT CHROMIUM)
    message(FATAL_ERROR "Chromium was not found (Debian package 'chromium'; scripts/setup.sh "
      "installs it)")
  endif()
  set(dir "${WORKDIR}/browser")
  file(REMOVE_RECURSE "${dir}")
  file(MAKE_DIRECTORY "${dir}/broken")
  run_tool(all code compare --scenario superpage-churn --cpus 2 --ops 40 --seed 5
    --report "${dir}/compare" --quiet)
  expect_code("${code}" 0 "${all}" "compare --report")
  run_tool(all code scale --scenario dma-storm --cpus 1,2 --ops 30 --seed 5
    --report "${dir}/scale" --quiet)
  expect_code("${code}" 0 "${all}" "scale --report")
  file(COPY_FILE "${HARNESS_DIR}/broken.html" "${dir}/broken/index.html")
  file(READ "${HARNESS_DIR}/harness.html" harness)
  set(urls "[\"file://${dir}/compare/index.html\", \"file://${dir}/scale/index.html\", \"file://${dir}/broken/index.html\"]")
  string(REPLACE "@REPORTS@" "${urls}" harness "${harness}")
  file(WRITE "${dir}/harness.html" "${harness}")
  # Root needs --no-sandbox; a profile of its own per run; no display needed (headless).
  set(chrome ${CHROMIUM} --headless --no-sandbox --disable-gpu --no-first-run
    --no-default-browser-check --disable-extensions --disable-dev-shm-usage --hide-scrollbars
    "--user-data-dir=${dir}/profile")
  execute_process(COMMAND ${chrome} --allow-file-access-from-files --virtual-time-budget=20000
    --dump-dom "file://${dir}/harness.html"
    RESULT_VARIABLE code OUTPUT_VARIABLE dom ERROR_VARIABLE err TIMEOUT 90)
  if(NOT dom MATCHES "<pre id=\"result\">([^<]*)</pre>")
    message(FATAL_ERROR "the harness gave no result (exit ${code})\n${dom}\n${err}")
  endif()
  set(result "${CMAKE_MATCH_1}")
  string(REPLACE "&quot;" "\"" result "${result}")
  string(REPLACE "&gt;" ">" result "${result}")
  string(REPLACE "&lt;" "<" result "${result}")
  string(REPLACE "&amp;" "&" result "${result}")
  string(JSON n ERROR_VARIABLE jerr LENGTH "${result}" reports)
  if(jerr OR NOT n EQUAL 3)
    message(FATAL_ERROR "the harness result is not what it should be (${jerr}):\n${result}")
  endif()
  foreach(i 0 1)
    string(JSON url GET "${result}" reports ${i} url)
    string(JSON problems GET "${result}" reports ${i} problems)
    string(JSON figures GET "${result}" reports ${i} figures)
    string(JSON links GET "${result}" reports ${i} links)
    string(JSON np LENGTH "${problems}")
    message(STATUS "${url}: ${figures} plots, ${links} links, ${np} problems")
    if(NOT np EQUAL 0)
      message(FATAL_ERROR "${url} is broken in a browser:\n${problems}")
    endif()
    if(figures LESS 3 OR links LESS 1)
      message(FATAL_ERROR "${url}: ${figures} plots and ${links} links: the report lost its plots")
    endif()
  endforeach()
  # The self-test: the page broken on purpose shows every kind of problem.
  string(JSON broken GET "${result}" reports 2 problems)
  foreach(want "console error: an error on purpose" "uncaught error: " "failed to load no-such-plot.png"
      "broken image no-such-plot.png" "broken link no-such-results.json" "broken link #no-such-section"
      "plot untitled has no title" "figure untitled holds no plot")
    string(FIND "${broken}" "${want}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "the check missed '${want}' on the page broken on purpose:\n${broken}")
    endif()
  endforeach()
  # Screenshots of the reports as a browser draws them; any console message fails (the report
  # has no script, so there should be none).
  foreach(shot "compare;report.png;2400" "scale;scale.png;2200")
    list(GET shot 0 what)
    list(GET shot 1 png)
    list(GET shot 2 height)
    execute_process(COMMAND ${chrome} --enable-logging=stderr --v=0 "--screenshot=${dir}/${png}"
      "--window-size=1200,${height}" "file://${dir}/${what}/index.html"
      RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 90)
    if(NOT EXISTS "${dir}/${png}")
      message(FATAL_ERROR "no screenshot of the ${what} report (exit ${code})\n${out}\n${err}")
    endif()
    file(SIZE "${dir}/${png}" bytes)
    if(bytes LESS 20000)
      message(FATAL_ERROR "the screenshot of the ${what} report is ${bytes} bytes: blank?")
    endif()
    string(REGEX MATCHALL "[^\n]*:CONSOLE[^\n]*" console "${err}")
    if(console)
      message(FATAL_ERROR "the ${what} report wrote to the console:\n${console}")
    endif()
    message(STATUS "screenshot: ${dir}/${png} (${bytes} bytes)")
  endforeach()

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
