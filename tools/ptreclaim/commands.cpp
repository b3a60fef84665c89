// The run commands (run, replay, compare, scale), calibrate and scenarios: each parses its
// strings, checks its outputs before working, calls the sim library and finishes with the
// verdict. Campaigns are in campaign_commands.cpp.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "command_support.hpp"
#include "ptreclaim/calibrate/calibrate.hpp"
#include "ptreclaim/config.hpp"

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

sim::result_writer make_writer(const cli_args& a) {
  return sim::result_writer({a.json, a.csv, a.report, a.command_line});
}

bool print_tables(const cli_args& a) {
  return !a.quiet && a.json != "-" && a.csv != "-";
}

void print_notes(const cli_args& a, sim::result_writer& w) {
  for (const auto& n : w.take_notes())
    if (!a.quiet) std::fprintf(stderr, "%s\n", n.c_str());
}

int finish(const cli_args& a, const sim::verdict& v, bool complete) {
  const sim::stop_flag& stop = sim::process_stop_flag();
  if (stop.requested()) {
    const std::string by = sim::signal_label(stop.signal_number());
    std::string what = complete ? "every run had finished" : "stopped early; what finished";
    if (!a.json.empty() && a.json != "-")
      what += complete ? " (" + a.json + ")" : " is in " + a.json + " (\"complete\": false)";
    std::fprintf(stderr, "ptreclaim: interrupted by %s: %s\n", by.c_str(), what.c_str());
    if (v.code != sim::exit_ok) std::fprintf(stderr, "ptreclaim: %s\n", v.reason.c_str());
    return sim::exit_status_for_signal(stop.signal_number());
  }
  if (v.code != sim::exit_ok) return fail(v.code, v.reason);
  if (print_tables(a)) std::printf("%s\n", v.reason.c_str());
  return sim::exit_ok;
}

namespace {

// What every run command does first: load the scenario with --costs (exit 2), read the shared
// options (usage errors), check the outputs before any work (exit 3). Returns 0, or the exit
// status once the reason is printed.
int prepare(const cli_args& a, bool allow_cpus, sim::scenario& s, sim::run_options& o,
            const sim::result_writer& out) {
  auto loaded = sim::load_scenario(a.scenario, a.costs);
  if (!loaded.ok()) return fail(sim::exit_usage, loaded.status().message());
  s = std::move(*loaded);
  o = base_options(a, allow_cpus);
  if (const Status st = out.check(); !st.ok()) return fail(sim::exit_error, st.message());
  return 0;
}

// run and replay: --policy names one, else the build-time default.
ptreclaim::reclaim::policy_kind one_policy(const cli_args& a) {
  const auto policies = parse_policies(a.policy, false);
  return policies.empty() ? ptreclaim::reclaim::default_policy() : policies.front();
}

}  // namespace

namespace {

// compare and scale after their preamble: the sweep with a progress line and its JSON saved as
// runs finish, then the table, the outputs and the verdict.
template <class R, class Sweep>
int sweep_command(const cli_args& a, const std::string& what, const std::string& scenario,
                  sim::result_writer& out, const Sweep& sweep, std::string (*format)(const R&)) {
  progress_sink progress(a, what + " " + scenario);
  Result<R> r = sweep(progress.sweep(), [&out](const R& so_far) { out.checkpoint(so_far); });
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, what + " failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(format(*r).c_str(), stdout);
  return write_and_finish(a, out, *r, "ptreclaim " + what + ": " + scenario,
                          sim::judge(*r, a.expect_violation));
}

}  // namespace

int cmd_compare(const cli_args& a) {
  const auto policies = parse_policies(a.policy, true);
  sim::scenario s;
  sim::run_options o;
  sim::result_writer out = make_writer(a);
  if (const int c = prepare(a, true, s, o, out); c != 0) return c;
  return sweep_command<sim::compare_result>(
      a, "compare", s.name, out,
      [&](const sim::sweep_progress& progress,
          const sim::sweep_checkpoint<sim::compare_result>& checkpoint) {
        return sim::run_compare(s, o, policies, progress, checkpoint);
      },
      sim::format_table);
}

int cmd_run(const cli_args& a) {
  const ptreclaim::reclaim::policy_kind policy = one_policy(a);
  const std::string policy_name(ptreclaim::reclaim::policy_name(policy));
  sim::scenario s;
  sim::run_options o;
  sim::result_writer out = make_writer(a);
  if (const int c = prepare(a, true, s, o, out); c != 0) return c;
  o.policy = policy;
  progress_sink progress(a, "run " + s.name + " " + policy_name);
  o.progress = progress.single();
  auto r = sim::run(s, o);
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, "run failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_run(*r).c_str(), stdout);
  return write_and_finish(a, out, *r, "ptreclaim run: " + s.name + " / " + policy_name,
                          sim::judge(*r, a.expect_violation));
}

int cmd_replay(const cli_args& a) {
  if (a.executor != "deterministic") {
    throw usage_error{"replay needs the deterministic executor (threaded runs cannot be replayed)"};
  }
  if (!a.seed.empty()) throw usage_error{"replay takes the seed as its argument, not --seed"};
  const std::uint64_t seed = parse_u64(a.replay_seed, "SEED");
  const ptreclaim::reclaim::policy_kind policy = one_policy(a);
  const std::string policy_name(ptreclaim::reclaim::policy_name(policy));
  sim::scenario s;
  sim::run_options o;
  sim::result_writer out = make_writer(a);
  if (const int c = prepare(a, true, s, o, out); c != 0) return c;
  o.seed = seed;
  o.policy = policy;
  progress_sink progress(a, "replay " + s.name + " " + policy_name);
  o.progress = progress.single();
  auto first = sim::run(s, o);
  if (!first.ok()) return fail(sim::exit_error, "replay failed: " + first.status().to_string());
  // An interrupted first run is not worth repeating; an interrupted second cannot be compared.
  auto second = first;
  if (!o.stop->requested()) second = sim::run(s, o);
  progress.line.finish();
  if (!second.ok()) return fail(sim::exit_error, "replay failed: " + second.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_run(*first).c_str(), stdout);
  const std::string title =
      "ptreclaim replay: " + s.name + " / " + policy_name + " / seed " + a.replay_seed;
  const sim::verdict v = sim::judge(*first, a.expect_violation);
  if (o.stop->requested()) return write_and_finish(a, out, *first, title, v);
  const Status st = out.write(*first, title);
  print_notes(a, out);
  if (!st.ok()) return fail(sim::exit_error, st.message());
  auto hex = [](std::uint64_t x) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
    return std::string(buf);
  };
  if (first->trace_hash != second->trace_hash) {
    return fail(sim::exit_unsafe, "replay diverged: seed " + a.replay_seed + " gave trace hashes " +
                                      hex(first->trace_hash) + " and " + hex(second->trace_hash) +
                                      " (nondeterminism)");
  }
  if (print_tables(a))
    std::printf("replayed twice: same trace hash %s\n", hex(first->trace_hash).c_str());
  return finish(a, v, true);
}

int cmd_scale(const cli_args& a) {
  std::vector<unsigned> cpus;
  for (const auto& item : split_commas(a.cpus.empty() ? "1,2,4,8,16" : a.cpus))
    cpus.push_back(parse_cpus(item));
  if (cpus.empty()) throw usage_error{"--cpus needs at least one CPU count, e.g. --cpus 1,2,4,8"};
  const auto policies = parse_policies(a.policy, true);
  sim::scenario s;
  sim::run_options o;
  sim::result_writer out = make_writer(a);
  if (const int c = prepare(a, false, s, o, out); c != 0) return c;
  return sweep_command<sim::scale_result>(
      a, "scale", s.name, out,
      [&](const sim::sweep_progress& progress,
          const sim::sweep_checkpoint<sim::scale_result>& checkpoint) {
        return sim::run_scale(s, o, policies, cpus, progress, checkpoint);
      },
      sim::format_scale_table);
}

namespace {

// "2026-12-02 00:55 UTC, host NAME, 2 CPUs (AMD EPYC)": when and where a calibration ran, for
// the cost file's header. Best effort: what cannot be read is left out.
std::string machine_description() {
  std::string out;
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  char when[32];
  if (gmtime_r(&now, &utc) != nullptr &&
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &utc))
    out = when;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0')
    out += std::string(out.empty() ? "" : ", ") + "host " + host;
  out += (out.empty() ? "" : ", ") + std::to_string(std::thread::hardware_concurrency()) + " CPUs";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(": ");
    if (colon != std::string::npos) out += " (" + line.substr(colon + 2) + ")";
    break;
  }
  return out;
}

}  // namespace

int cmd_calibrate(const cli_args& a) {
  // Checked before spending the budget measuring.
  if (a.output != "-") {
    if (const Status st = sim::check_output_file(a.output); !st.ok())
      return fail(sim::exit_error, "-o: " + st.message());
  }
  progress_sink progress(a, "calibrate");
  sim::calibrate_options o;
  o.budget_ms = a.budget_ms;
  o.progress = progress.single();
  auto model = sim::calibrate(o);
  progress.line.finish();
  if (!model.ok()) {
    const int code = model.status().code() == ptreclaim::errc::invalid_argument ? sim::exit_usage
                                                                                : sim::exit_error;
    return fail(code, "calibrate failed: " + model.status().message());
  }
  const std::string text = sim::cost_model_to_toml(
      model->costs,
      "ptreclaim cost model, measured by `ptreclaim calibrate --budget-ms " +
          std::to_string(a.budget_ms) + "` on " + machine_description() + ".",
      model->measured_ns, model->notes);
  if (a.output == "-") {
    std::fputs(text.c_str(), stdout);
    return sim::exit_ok;
  }
  if (auto st = sim::write_file_atomic(a.output, text); !st.ok())
    return fail(sim::exit_error, "-o: " + st.message());
  if (!a.quiet) {
    std::fputs(text.c_str(), stdout);
    std::printf("\nwrote %s; use it from a scenario with  [cost] file = \"%s\"\n", a.output.c_str(),
                a.output.c_str());
  }
  return sim::exit_ok;
}

int cmd_scenarios_list(const cli_args& a) {
  if (a.quiet) return sim::exit_ok;
  std::printf(
      "built-in scenarios (ptreclaim scenarios show NAME prints one; copy it to edit):\n\n");
  for (const auto& b : sim::builtin_scenarios()) {
    auto s = sim::load_scenario(std::string(b.name));
    if (!s.ok())
      return fail(sim::exit_error, "built-in scenario is invalid: " + s.status().message());
    std::printf("  %-18s %s\n", std::string(b.name).c_str(), std::string(b.summary).c_str());
    std::printf("  %-18s kind %s, %u cpus, %u domains, %u devices, %u IOMMUs%s\n", "",
                std::string(sim::workload_kind_name(s->kind)).c_str(), s->cpus, s->domain_count(),
                s->device_count(), s->iommu.count, s->hotplug.enabled ? ", hotplug" : "");
  }
  std::printf("\ndefault: %s\n", std::string(sim::default_scenario_name).c_str());
  return sim::exit_ok;
}

int cmd_scenarios_show(const cli_args& a) {
  if (const auto* b = sim::find_builtin(a.show_name)) {
    std::fputs(std::string(b->toml).c_str(), stdout);
    return sim::exit_ok;
  }
  // A file: validate it, then print it as written.
  auto s = sim::load_scenario(a.show_name);
  if (!s.ok()) return fail(sim::exit_usage, s.status().message());
  std::FILE* f = std::fopen(a.show_name.c_str(), "rb");
  if (f == nullptr) return fail(sim::exit_usage, "cannot read '" + a.show_name + "'");
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    std::fwrite(buf, 1, n, stdout);
  std::fclose(f);
  return sim::exit_ok;
}

}  // namespace ptreclaim::tool
