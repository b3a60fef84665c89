// ptreclaim: the command line. It parses arguments and dispatches to the sim library; all logic
// (scenarios, runs, sweeps, reports, verdicts) lives in the library. Exit codes: 0 ok, 1 an
// invariant failed (or an expected violation was not caught), 2 usage or input error, 3 the run
// could not be carried out. See docs/tool.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ptreclaim/config.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/sim/report.hpp"
#include "ptreclaim/sim/scenario.hpp"

namespace {

namespace sim = ptreclaim::sim;

constexpr const char* usage_line =
    "usage: ptreclaim [run|compare|replay SEED|scale|calibrate|scenarios [show NAME]] [options]\n"
    "       ptreclaim --help   (ptreclaim COMMAND --help for a command's options)";

// Everything the command line can say; strings are interpreted per command.
struct cli_args {
  std::string scenario = std::string(sim::default_scenario_name);
  std::string policy;  // run/replay: one; compare/scale: a comma-separated list
  std::string executor = "deterministic";
  std::string cpus;  // run/compare/replay: one number; scale: a list
  std::string seed;
  std::string ops;
  std::string json;
  std::string csv;
  std::string report;
  std::string costs;  // --costs FILE: replaces the scenario's cost model
  bool expect_violation = false;
  bool quiet = false;
  // calibrate
  std::string output = "ptreclaim-costs.toml";
  unsigned budget_ms = 2000;
  // replay / scenarios show
  std::string replay_seed;
  std::string show_name;
  std::string command_line;
};

// A usage error: message + usage line, exit 2.
struct usage_error {
  std::string message;
};

int fail_usage(const std::string& message) {
  std::fprintf(stderr, "ptreclaim: %s\n%s\n", message.c_str(), usage_line);
  return sim::exit_usage;
}

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

std::vector<std::string> parse_policies(const std::string& text, bool allow_many) {
  std::vector<std::string> out = split_commas(text);
  if (!allow_many && out.size() > 1)
    throw usage_error{"--policy takes one policy here, not '" + text + "'"};
  for (const auto& p : out) {
    if (!sim::is_policy(p)) {
      std::string known;
      for (const auto& n : sim::policy_names()) {
        if (!known.empty()) known += ", ";
        known += n;
      }
      throw usage_error{"unknown policy '" + p + "' (known: " + known + ")"};
    }
  }
  return out;
}

sim::scenario load_scenario_or_throw(const cli_args& a, int& code, std::string& message) {
  auto s = sim::load_scenario(a.scenario);
  if (!s.ok()) {
    code = sim::exit_usage;
    message = s.status().message();
    return {};
  }
  // --costs wins over the scenario's [cost] file, which wins over the embedded defaults.
  if (!a.costs.empty()) {
    auto m = sim::load_cost_model(a.costs);
    if (!m.ok()) {
      code = sim::exit_usage;
      message = "--costs: " + m.status().message();
      return {};
    }
    s->costs = std::move(*m);
    s->cost_file = a.costs;
  }
  return std::move(*s);
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
  return o;
}

// Writes --json / --csv ("-" = stdout). Returns an error message or "".
template <class R>
std::string write_outputs(const cli_args& a, const R& result, sim::report_input report) {
  if (!a.json.empty()) {
    const std::string text = sim::to_json(result);
    if (a.json == "-") {
      std::fputs(text.c_str(), stdout);
    } else if (auto st = sim::write_text_file(a.json, text); !st.ok()) {
      return st.message();
    }
  }
  if (!a.csv.empty()) {
    const std::string text = sim::to_csv(result);
    if (a.csv == "-") {
      std::fputs(text.c_str(), stdout);
    } else if (auto st = sim::write_text_file(a.csv, text); !st.ok()) {
      return st.message();
    }
  }
  if (!a.report.empty()) {
    report.command = a.command_line;
    auto out = sim::write_html_report(a.report, report);
    if (!out.ok()) return out.status().message();
    if (!a.quiet) {
      std::fprintf(stderr, "report: %s\n", out->html_path.c_str());
      if (!out->plotted) std::fprintf(stderr, "report: %s\n", out->plot_message.c_str());
    }
  }
  return {};
}

// Whether the human-readable table may go to stdout (not when JSON or CSV is written there).
bool print_tables(const cli_args& a) {
  return !a.quiet && a.json != "-" && a.csv != "-";
}

int finish(const cli_args& a, const sim::verdict& v) {
  if (v.code != sim::exit_ok) return fail(v.code, v.reason);
  if (print_tables(a)) std::printf("%s\n", v.reason.c_str());
  return sim::exit_ok;
}

// A progress line on a terminal for sweeps and single runs.
struct progress_sink {
  sim::progress_line line;
  std::string prefix;
  progress_sink(const cli_args& a, std::string what)
      : line(stderr, sim::progress_line::stderr_wants_progress(a.quiet)), prefix(std::move(what)) {}
  sim::sweep_progress sweep() {
    return [this](std::string_view label, double f) {
      line.set_label(prefix + "  [" + std::string(label) + "]");
      line.update(f);
    };
  }
  std::function<void(double)> single() {
    line.set_label(prefix);
    return [this](double f) { line.update(f); };
  }
};

int cmd_compare(const cli_args& a) {
  int code = 0;
  std::string msg;
  sim::scenario s = load_scenario_or_throw(a, code, msg);
  if (code != 0) return fail(code, msg);
  sim::run_options o = base_options(a, true);
  const auto policies = parse_policies(a.policy, true);
  progress_sink progress(a, "compare " + s.name);
  auto r = sim::run_compare(s, o, policies, progress.sweep());
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, "compare failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_table(*r).c_str(), stdout);
  sim::report_input in;
  in.title = "ptreclaim compare: " + s.name;
  in.compare = *r;
  if (auto err = write_outputs(a, *r, std::move(in)); !err.empty())
    return fail(sim::exit_error, err);
  return finish(a, sim::judge(*r, a.expect_violation));
}

int cmd_run(const cli_args& a) {
  int code = 0;
  std::string msg;
  sim::scenario s = load_scenario_or_throw(a, code, msg);
  if (code != 0) return fail(code, msg);
  sim::run_options o = base_options(a, true);
  const auto policies = parse_policies(a.policy, false);
  o.policy = policies.empty() ? std::string(ptreclaim::config::default_policy) : policies.front();
  progress_sink progress(a, "run " + s.name + " " + o.policy);
  o.progress = progress.single();
  auto r = sim::run(s, o);
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, "run failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_run(*r).c_str(), stdout);
  sim::report_input in;
  in.title = "ptreclaim run: " + s.name + " / " + o.policy;
  in.run = *r;
  if (auto err = write_outputs(a, *r, std::move(in)); !err.empty())
    return fail(sim::exit_error, err);
  return finish(a, sim::judge(*r, a.expect_violation));
}

int cmd_replay(const cli_args& a) {
  int code = 0;
  std::string msg;
  sim::scenario s = load_scenario_or_throw(a, code, msg);
  if (code != 0) return fail(code, msg);
  if (a.executor != "deterministic") {
    throw usage_error{"replay needs the deterministic executor (threaded runs cannot be replayed)"};
  }
  if (!a.seed.empty()) throw usage_error{"replay takes the seed as its argument, not --seed"};
  sim::run_options o = base_options(a, true);
  o.seed = parse_u64(a.replay_seed, "SEED");
  const auto policies = parse_policies(a.policy, false);
  o.policy = policies.empty() ? std::string(ptreclaim::config::default_policy) : policies.front();
  progress_sink progress(a, "replay " + s.name + " " + o.policy);
  o.progress = progress.single();
  auto first = sim::run(s, o);
  if (!first.ok()) return fail(sim::exit_error, "replay failed: " + first.status().to_string());
  auto second = sim::run(s, o);
  progress.line.finish();
  if (!second.ok()) return fail(sim::exit_error, "replay failed: " + second.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_run(*first).c_str(), stdout);
  sim::report_input in;
  in.title = "ptreclaim replay: " + s.name + " / " + o.policy + " / seed " + a.replay_seed;
  in.run = *first;
  if (auto err = write_outputs(a, *first, std::move(in)); !err.empty())
    return fail(sim::exit_error, err);
  auto hex = [](std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  if (first->trace_hash != second->trace_hash) {
    return fail(sim::exit_unsafe, "replay diverged: seed " + a.replay_seed + " gave trace hashes " +
                                      hex(first->trace_hash) + " and " + hex(second->trace_hash) +
                                      " (nondeterminism)");
  }
  if (print_tables(a))
    std::printf("replayed twice: same trace hash %s\n", hex(first->trace_hash).c_str());
  return finish(a, sim::judge(*first, a.expect_violation));
}

int cmd_scale(const cli_args& a) {
  int code = 0;
  std::string msg;
  sim::scenario s = load_scenario_or_throw(a, code, msg);
  if (code != 0) return fail(code, msg);
  sim::run_options o = base_options(a, false);
  std::vector<unsigned> cpus;
  for (const auto& item : split_commas(a.cpus.empty() ? "1,2,4,8,16" : a.cpus))
    cpus.push_back(parse_cpus(item));
  if (cpus.empty()) throw usage_error{"--cpus needs at least one CPU count, e.g. --cpus 1,2,4,8"};
  const auto policies = parse_policies(a.policy, true);
  progress_sink progress(a, "scale " + s.name);
  auto r = sim::run_scale(s, o, policies, cpus, progress.sweep());
  progress.line.finish();
  if (!r.ok()) return fail(sim::exit_error, "scale failed: " + r.status().to_string());
  if (print_tables(a)) std::fputs(sim::format_scale_table(*r).c_str(), stdout);
  sim::report_input in;
  in.title = "ptreclaim scale: " + s.name;
  in.scale = *r;
  if (auto err = write_outputs(a, *r, std::move(in)); !err.empty())
    return fail(sim::exit_error, err);
  return finish(a, sim::judge(*r, a.expect_violation));
}

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

int cmd_calibrate(const cli_args& a) {
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
      *model, "ptreclaim cost model, measured by `ptreclaim calibrate --budget-ms " +
                  std::to_string(a.budget_ms) + "` on " + machine_description() + ".");
  if (a.output == "-") {
    std::fputs(text.c_str(), stdout);
    return sim::exit_ok;
  }
  if (auto st = sim::write_text_file(a.output, text); !st.ok())
    return fail(sim::exit_error, st.message());
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

void add_common(CLI::App& app, cli_args& a) {
  app.add_option("--scenario", a.scenario, "built-in scenario name or a .toml file")
      ->capture_default_str();
  app.add_option("--policy", a.policy,
                 "policy (run, replay) or comma-separated policies (compare, scale; default: all)");
  app.add_option("--executor", a.executor, "deterministic | threaded")->capture_default_str();
  app.add_option("--cpus", a.cpus, "simulated CPUs (scale: a list such as 1,2,4,...,256)");
  app.add_option("--seed", a.seed, "seed (default: the scenario's, else a fresh one)");
  app.add_option("--ops", a.ops, "operations per CPU (overrides the scenario)");
  app.add_option("--json", a.json, "write JSON results to FILE ('-' = stdout)");
  app.add_option("--csv", a.csv, "write CSV results to FILE ('-' = stdout)");
  app.add_option("--report", a.report, "write an HTML report (tables, plots, JSON) into DIR");
  app.add_option("--costs", a.costs,
                 "cost file for the deterministic executor (default: the scenario's [cost] "
                 "file, else the built-in calibrated costs/default.toml)");
  app.add_flag("--expect-violation", a.expect_violation,
               "succeed only if the run catches a violation (canaries)");
  app.add_flag("--quiet,-q", a.quiet, "print nothing but errors and requested outputs");
}

int real_main(int argc, char** argv) {
  cli_args a;
  for (int i = 0; i < argc; ++i)
    a.command_line += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{
      "ptreclaim: safe and fast reclamation of IOMMU page-table pages, compared side by side.\n"
      "With no command: a short comparison of every policy on the default scenario."};
  app.set_version_flag("--version", std::string(ptreclaim::config::version));
  app.fallthrough();  // subcommands accept the common options too
  add_common(app, a);
  CLI::App* run = app.add_subcommand("run", "run one scenario under one policy");
  CLI::App* compare =
      app.add_subcommand("compare", "run every policy on one scenario, print one table");
  CLI::App* replay = app.add_subcommand(
      "replay", "re-run a seed (deterministic executor) twice; check the trace hash");
  replay->add_option("SEED", a.replay_seed, "the seed to replay")->required();
  CLI::App* scale = app.add_subcommand("scale", "sweep simulated CPU counts for every policy");
  CLI::App* calibrate =
      app.add_subcommand("calibrate", "measure per-step costs here, write a cost file");
  calibrate->add_option("--output,-o", a.output, "cost file to write ('-' = stdout)")
      ->capture_default_str();
  calibrate->add_option("--budget-ms", a.budget_ms, "time to spend measuring (100 .. 60000)")
      ->check(CLI::Range(100u, 60000u))
      ->capture_default_str();
  CLI::App* scenarios = app.add_subcommand("scenarios", "list the built-in scenarios");
  CLI::App* show = scenarios->add_subcommand("show", "print a scenario's TOML");
  show->add_option("NAME", a.show_name, "built-in name or file")->required();
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return sim::exit_ok;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return sim::exit_ok;
  } catch (const CLI::CallForVersion&) {
    std::cout << "ptreclaim " << ptreclaim::config::version << "\n";
    return sim::exit_ok;
  } catch (const CLI::ParseError& e) {
    return fail_usage(e.what());
  }

  try {
    if (*run) return cmd_run(a);
    if (*replay) return cmd_replay(a);
    if (*scale) return cmd_scale(a);
    if (*calibrate) return cmd_calibrate(a);
    if (*show) return cmd_scenarios_show(a);
    if (*scenarios) return cmd_scenarios_list(a);
    (void)compare;
    return cmd_compare(a);  // `compare`, and no command at all
  } catch (const usage_error& e) {
    return fail_usage(e.message);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return real_main(argc, argv);
  } catch (const std::exception& e) {
    return fail(sim::exit_error, std::string("internal error: ") + e.what());
  }
}
