// The run commands (run, replay, compare, scale), calibrate and scenarios: each turns its strings
// into a request (usage errors: exit 2) and hands it to the report library, which prepares, runs,
// writes and judges (ptreclaim/report/command.hpp). Campaigns are in campaign_commands.cpp.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "command_support.hpp"
#include "ptreclaim/base/limits.hpp"
#include "ptreclaim/sim/interrupt.hpp"

namespace ptreclaim::tool {

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "ptreclaim: %s\n", message.c_str());
  return code;
}

std::uint64_t parse_u64(const std::string& text, const std::string& what) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 20) {
    throw usage_error{what + " must be a non-negative integer, not '" + text + "'"};
  }
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) throw usage_error{what + " '" + text + "' is too large"};
  return v;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

unsigned parse_cpus(const std::string& text) {
  const std::uint64_t v = parse_u64(text, "--cpus");
  if (v < 1 || v > ptreclaim::limits::max_cpus) {
    throw usage_error{"--cpus " + text + " is not in 1 .. " +
                      std::to_string(ptreclaim::limits::max_cpus)};
  }
  return static_cast<unsigned>(v);
}

std::uint64_t parse_size(const std::string& text, const std::string& what) {
  std::string digits = text;
  std::uint64_t unit = 1;
  if (!digits.empty()) {
    const char last = digits.back();
    if (last == 'K' || last == 'k') unit = std::uint64_t{1} << 10;
    if (last == 'M' || last == 'm') unit = std::uint64_t{1} << 20;
    if (last == 'G' || last == 'g') unit = std::uint64_t{1} << 30;
    if (unit != 1) digits.pop_back();
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
      digits.size() > 12) {
    throw usage_error{what +
                      " must be a size in bytes, optionally with K, M or G (e.g. 16M), not '" +
                      text + "'"};
  }
  return std::strtoull(digits.c_str(), nullptr, 10) * unit;
}

void refuse_recording(const cli_args& a, const std::string& command) {
  if (!a.trace.empty() || !a.trace_limit.empty() || !a.frame.empty()) {
    throw usage_error{command +
                      " runs many runs: --trace, --trace-limit and --frame record one run; use "
                      "them with run or replay"};
  }
}

// --trace, --trace-limit, --frame of run and replay into the request.
void recording_options(const cli_args& a, sim::command_request& r) {
  if (!a.trace_limit.empty() && a.trace.empty())
    throw usage_error{"--trace-limit bounds a trace: give --trace FILE too"};
  if ((!a.trace.empty() || !a.frame.empty()) && a.executor != "deterministic") {
    throw usage_error{
        "--trace and --frame need the deterministic executor (virtual time, an exact replay)"};
  }
  if (!a.trace.empty()) {
    if (a.trace == "-") throw usage_error{"--trace needs a file name, not '-'"};
    r.outputs.trace = a.trace;
  }
  if (!a.trace_limit.empty()) {
    r.trace_limit = parse_size(a.trace_limit, "--trace-limit");
    if (r.trace_limit < sim::min_trace_limit_bytes || r.trace_limit > (std::uint64_t{4} << 30)) {
      throw usage_error{"--trace-limit " + a.trace_limit + " is not in 64K .. 4G"};
    }
  }
  if (!a.frame.empty()) {
    const std::uint64_t f = parse_u64(a.frame, "--frame");
    if (f >= 0xffffffffULL) throw usage_error{"--frame " + a.frame + " is not a frame number"};
    r.frame = static_cast<std::uint32_t>(f);
  }
}

std::vector<ptreclaim::reclaim::policy_kind> parse_policies(const std::string& text,
                                                            bool allow_many) {
  const std::vector<std::string> names = split_commas(text);
  if (!allow_many && names.size() > 1)
    throw usage_error{"--policy takes one policy here, not '" + text + "'"};
  std::vector<ptreclaim::reclaim::policy_kind> out;
  for (const auto& p : names) {
    const auto k = ptreclaim::reclaim::find_policy(p);
    if (!k) {
      std::string known;
      for (const auto& info : ptreclaim::reclaim::policy_registry) {
        if (!known.empty()) known += ", ";
        known += info.name;
      }
      throw usage_error{"unknown policy '" + p + "' (known: " + known + ")"};
    }
    out.push_back(*k);
  }
  return out;
}

sim::run_options base_options(const cli_args& a, bool allow_cpus) {
  sim::run_options o;
  auto e = sim::parse_executor(a.executor);
  if (!e.ok()) throw usage_error{e.status().message()};
  o.executor = *e;
  if (!a.cpus.empty() && allow_cpus) o.cpus = parse_cpus(a.cpus);
  if (!a.seed.empty()) o.seed = parse_u64(a.seed, "--seed");
  if (!a.ops.empty()) {
    o.ops_per_cpu = parse_u64(a.ops, "--ops");
    if (o.ops_per_cpu == 0) throw usage_error{"--ops must be at least 1"};
  }
  o.quiet = a.quiet;
  // Ctrl-C and SIGTERM stop the work at the next safe point (interrupt.hpp).
  sim::install_stop_signals();
  o.stop = &sim::process_stop_flag();
  return o;
}

sim::command_request make_request(const cli_args& a, sim::command_kind kind, bool allow_cpus) {
  sim::command_request r;
  r.kind = kind;
  r.scenario = a.scenario;
  r.costs = a.costs;
  r.options = base_options(a, allow_cpus);
  r.expect_violation = a.expect_violation;
  r.outputs.json = a.json;
  r.outputs.csv = a.csv;
  r.outputs.report = a.report;
  r.outputs.command = a.command_line;
  r.quiet = a.quiet;
  r.progress = sim::progress_line::stderr_wants_progress(a.quiet);
  return r;
}

int cmd_tour(const cli_args& a) {
  refuse_recording(a, "the tour");
  if (a.scenario_given || a.policy_given || !a.cpus.empty() || !a.csv.empty() ||
      !a.report.empty() || !a.costs.empty() || a.expect_violation) {
    throw usage_error{
        "the tour (ptreclaim with no command) takes --seed, --ops, --json and --quiet only; "
        "for one scenario with your own options use compare"};
  }
  if (a.executor != "deterministic")
    throw usage_error{"the tour runs the deterministic executor only (its figures replay exactly)"};
  sim::command_request r = make_request(a, sim::command_kind::tour, false);
  return sim::run_command(r);
}

int cmd_compare(const cli_args& a) {
  refuse_recording(a, "compare");
  const auto policies = parse_policies(a.policy, true);
  sim::command_request r = make_request(a, sim::command_kind::compare, true);
  r.policies = policies;
  return sim::run_command(r);
}

int cmd_run(const cli_args& a) {
  const auto policy = parse_policies(a.policy, false);
  sim::command_request r = make_request(a, sim::command_kind::run, true);
  r.policies = policy;
  recording_options(a, r);
  return sim::run_command(r);
}

int cmd_replay(const cli_args& a) {
  if (a.executor != "deterministic") {
    throw usage_error{"replay needs the deterministic executor (threaded runs cannot be replayed)"};
  }
  if (!a.seed.empty()) throw usage_error{"replay takes the seed as its argument, not --seed"};
  const std::uint64_t seed = parse_u64(a.replay_seed, "SEED");
  const auto policy = parse_policies(a.policy, false);
  sim::command_request r = make_request(a, sim::command_kind::replay, true);
  r.policies = policy;
  r.options.seed = seed;
  r.seed_text = a.replay_seed;
  recording_options(a, r);
  return sim::run_command(r);
}

int cmd_scale(const cli_args& a) {
  refuse_recording(a, "scale");
  std::vector<unsigned> cpus;
  for (const auto& item : split_commas(a.cpus.empty() ? "1,2,4,8,16" : a.cpus))
    cpus.push_back(parse_cpus(item));
  if (cpus.empty()) throw usage_error{"--cpus needs at least one CPU count, e.g. --cpus 1,2,4,8"};
  const auto policies = parse_policies(a.policy, true);
  sim::command_request r = make_request(a, sim::command_kind::scale, false);
  r.policies = policies;
  r.cpu_counts = cpus;
  return sim::run_command(r);
}

int cmd_calibrate(const cli_args& a) {
  sim::calibrate_request r;
  r.output = a.output;
  r.budget_ms = a.budget_ms;
  r.quiet = a.quiet;
  r.progress = sim::progress_line::stderr_wants_progress(a.quiet);
  return sim::calibrate_command(r);
}

int cmd_scenarios_list(const cli_args& a) {
  return sim::list_scenarios_command(a.quiet);
}

int cmd_scenarios_show(const cli_args& a) {
  return sim::show_scenario_command(a.show_name);
}

}  // namespace ptreclaim::tool
