// The tool's commands (command.hpp): one skeleton, prepare -> run -> print -> write -> finish,
// with what differs per command in a plan.
#include "ptreclaim/report/command.hpp"

#include <functional>
#include <memory>
#include <utility>

#include "ptreclaim/calibrate/calibrate.hpp"
#include "ptreclaim/config.hpp"
#include "ptreclaim/report/campaign.hpp"
#include "ptreclaim/report/machine.hpp"
#include "ptreclaim/report/tour.hpp"
#include "ptreclaim/sim/interrupt.hpp"

namespace ptreclaim::sim {
namespace {

int fail(std::FILE* err, int code, const std::string& message) {
  std::fprintf(err, "ptreclaim: %s\n", message.c_str());
  return code;
}

// Whether the human-readable table may go to `out` (not when JSON or CSV is written there).
bool print_tables(const command_request& r) {
  return !r.quiet && r.outputs.json != "-" && r.outputs.csv != "-";
}

// The notes the writer collected (report path, plot message, failed checkpoints).
void print_notes(const command_request& r, result_writer& w) {
  for (const auto& n : w.take_notes())
    if (!r.quiet) std::fprintf(r.err, "%s\n", n.c_str());
}

std::string hex(std::uint64_t x) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

// What differs between the commands.
template <class R>
struct plan {
  std::string what;   // "compare": "compare failed: ..."
  std::string title;  // heads the HTML report (campaigns write JSON only)
  // The work, given the progress line and the writer (for checkpoints).
  std::function<Result<R>(progress_line&, result_writer&)> run;
  std::function<std::string(const R&)> format;
  std::function<verdict(const R&)> judge;
  // After the outputs are written, unless a stop was requested: an exit status that ends the
  // command instead of the verdict (replay's check), or nullopt.
  std::function<std::optional<int>(const R&)> after_write;
  // Outputs beside the result's (run, replay: --trace); an error is exit 3.
  std::function<Status()> write_extra;
};

Status write_result(result_writer& w, const campaign_result& r, const std::string&) {
  return w.write(r);
}
Status write_result(result_writer& w, const tour_result& r, const std::string&) {
  return w.write(r);
}
template <class R>
Status write_result(result_writer& w, const R& r, const std::string& title) {
  return w.write(r, title);
}

bool stop_requested(const command_request& r) {
  return r.options.stop != nullptr && r.options.stop->requested();
}

// The skeleton after prepare: run, print, write, finish.
template <class R>
int execute(const command_request& r, result_writer& out, const plan<R>& p) {
  progress_line line(r.err, r.progress);
  Result<R> res = p.run(line, out);
  line.finish();
  if (!res.ok()) return fail(r.err, exit_error, p.what + " failed: " + res.status().to_string());
  if (print_tables(r)) std::fputs(p.format(*res).c_str(), r.out);
  const verdict v = p.judge(*res);
  Status st = write_result(out, *res, p.title);
  if (p.write_extra) {
    Status extra = p.write_extra();
    if (st.ok()) st = std::move(extra);
  }
  print_notes(r, out);
  if (!st.ok()) return fail(r.err, exit_error, st.message());
  if (p.after_write && !stop_requested(r)) {
    if (const auto code = p.after_write(*res)) return *code;
  }
  return finish_command(r, v, res->complete);
}

// A sweep's progress callback on `line`: "PREFIX  [LABEL]".
sweep_progress sweep_line(progress_line& line, std::string prefix) {
  return [&line, prefix = std::move(prefix)](std::string_view label, double f) {
    line.set_label(prefix + "  [" + std::string(label) + "]");
    line.update(f);
  };
}
// A single run's progress callback on `line`.
std::function<void(double)> single_line(progress_line& line, const std::string& prefix) {
  line.set_label(prefix);
  return [&line](double f) { line.update(f); };
}

reclaim::policy_kind one_policy(const command_request& r) {
  return r.policies.empty() ? reclaim::default_policy() : r.policies.front();
}

// What a run or replay records (--trace, --frame), or nullptr.
std::shared_ptr<recording> make_recording(const command_request& r) {
  if (r.outputs.trace.empty() && !r.frame) return nullptr;
  auto rec = std::make_shared<recording>();
  rec->chrome_trace = !r.outputs.trace.empty();
  rec->trace_limit_bytes = r.trace_limit;
  rec->frame = r.frame;
  rec->command = r.outputs.command;
  return rec;
}

// Writes --trace once the run is done; says where it went (and what the bound dropped).
std::function<Status()> trace_writer(const command_request& r, std::shared_ptr<recording> rec) {
  if (rec == nullptr || !rec->chrome_trace) return {};
  return [&r, rec]() -> Status {
    if (rec->trace_json.empty()) return {};  // the run failed before it recorded anything
    Status st = write_file_atomic(r.outputs.trace, rec->trace_json);
    if (!st.ok()) return Status(errc::invalid_argument, "--trace: " + st.message());
    if (!r.quiet) {
      std::string note = "trace: " + r.outputs.trace + " (" + std::to_string(rec->trace_events) +
                         " events, virtual time; open it in the Perfetto UI or chrome://tracing)";
      if (rec->trace_dropped > 0)
        note += "; " + std::to_string(rec->trace_dropped) +
                " later events were dropped at --trace-limit " +
                std::to_string(rec->trace_limit_bytes) + " bytes";
      std::fprintf(r.err, "%s\n", note.c_str());
    }
    return {};
  };
}

plan<run_result> run_plan(const command_request& r, const scenario& s) {
  run_options o = r.options;
  o.policy = one_policy(r);
  const std::string name(reclaim::policy_name(o.policy));
  plan<run_result> p;
  p.what = "run";
  p.title = "ptreclaim run: " + s.name + " / " + name;
  const std::shared_ptr<recording> rec = make_recording(r);
  p.run = [&s, o, name, rec](progress_line& line, result_writer&) mutable {
    o.progress = single_line(line, "run " + s.name + " " + name);
    o.record = rec.get();
    return run(s, o);
  };
  p.write_extra = trace_writer(r, rec);
  p.format = format_run;
  p.judge = [&r](const run_result& x) { return judge(x, r.expect_violation); };
  return p;
}

plan<run_result> replay_plan(const command_request& r, const scenario& s,
                             std::shared_ptr<std::uint64_t> second_hash) {
  run_options o = r.options;
  o.policy = one_policy(r);
  const std::string name(reclaim::policy_name(o.policy));
  plan<run_result> p;
  p.what = "replay";
  p.title = "ptreclaim replay: " + s.name + " / " + name + " / seed " + r.seed_text;
  const std::shared_ptr<recording> rec = make_recording(r);
  const bool frame_given = r.frame.has_value();
  p.run = [&s, o, name, second_hash, rec, frame_given](
              progress_line& line, result_writer&) mutable -> Result<run_result> {
    o.progress = single_line(line, "replay " + s.name + " " + name);
    o.record = rec.get();
    auto first = run(s, o);
    if (!first.ok()) return first;
    // An interrupted first run is not worth repeating; an interrupted second cannot be compared.
    *second_hash = first->trace_hash;
    if (o.stop == nullptr || !o.stop->requested()) {
      // The second run tells the story of the first violation's frame unless --frame named
      // one: recording changes nothing, so the hashes must still agree.
      recording story;
      o.record = nullptr;
      if (!frame_given && first->violations.count > 0 && first->violations.first_frame) {
        story.frame = first->violations.first_frame;
        o.record = &story;
      }
      auto second = run(s, o);
      if (!second.ok()) return second.status();
      *second_hash = second->trace_hash;
      if (second->story && !first->story) first->story = std::move(second->story);
    }
    return first;
  };
  p.write_extra = trace_writer(r, rec);
  p.format = format_run;
  p.judge = [&r](const run_result& x) { return judge(x, r.expect_violation); };
  p.after_write = [&r, second_hash](const run_result& first) -> std::optional<int> {
    run_result second;
    second.trace_hash = *second_hash;
    if (auto diverged = replay_divergence(first, second, r.seed_text))
      return fail(r.err, exit_unsafe, *diverged);
    if (print_tables(r))
      std::fprintf(r.out, "replayed twice: same trace hash %s\n", hex(first.trace_hash).c_str());
    return std::nullopt;
  };
  return p;
}

plan<compare_result> compare_plan(const command_request& r, const scenario& s) {
  plan<compare_result> p;
  p.what = "compare";
  p.title = "ptreclaim compare: " + s.name;
  p.run = [&r, &s](progress_line& line, result_writer& out) {
    return run_compare(s, r.options, r.policies, sweep_line(line, "compare " + s.name),
                       [&out](const compare_result& so_far) { out.checkpoint(so_far); });
  };
  p.format = format_table;
  p.judge = [&r](const compare_result& x) { return judge(x, r.expect_violation); };
  return p;
}

plan<scale_result> scale_plan(const command_request& r, const scenario& s) {
  plan<scale_result> p;
  p.what = "scale";
  p.title = "ptreclaim scale: " + s.name;
  p.run = [&r, &s](progress_line& line, result_writer& out) {
    return run_scale(s, r.options, r.policies, r.cpu_counts, sweep_line(line, "scale " + s.name),
                     [&out](const scale_result& so_far) { out.checkpoint(so_far); });
  };
  p.format = format_scale_table;
  p.judge = [&r](const scale_result& x) { return judge(x, r.expect_violation); };
  return p;
}

plan<campaign_result> campaign_plan(const command_request& r, const campaign_definition& d,
                                    const std::vector<scenario>& scenarios) {
  plan<campaign_result> p;
  p.what = "campaign";
  p.run = [&r, &d, &scenarios](progress_line& line, result_writer& out) {
    return run_campaign(d, scenarios, r.shard, r.options,
                        sweep_line(line, "campaign " + std::to_string(r.shard.index) + "/" +
                                             std::to_string(r.shard.count)),
                        [&out](const campaign_result& so_far) { out.checkpoint(so_far); });
  };
  p.format = format_campaign;
  p.judge = [](const campaign_result& x) { return judge(x); };
  return p;
}

plan<tour_result> tour_plan(const command_request& r) {
  plan<tour_result> p;
  p.what = "tour";
  p.run = [&r](progress_line& line, result_writer&) {
    tour_definition d;
    if (r.options.seed) d.seed = *r.options.seed;
    if (r.options.ops_per_cpu != 0) d.ops_per_cpu = r.options.ops_per_cpu;
    d.policies = r.policies;
    return run_tour(d, r.options, sweep_line(line, "tour"));
  };
  p.format = format_tour;
  p.judge = [&r](const tour_result& x) { return judge(x, r.expect_violation); };
  return p;
}

}  // namespace

std::optional<std::string> replay_divergence(const run_result& first, const run_result& second,
                                             std::string_view seed) {
  if (first.trace_hash == second.trace_hash) return std::nullopt;
  return "replay diverged: seed " + std::string(seed) + " gave trace hashes " +
         hex(first.trace_hash) + " and " + hex(second.trace_hash) + " (nondeterminism)";
}

int finish_command(const command_request& r, const verdict& v, bool complete) {
  if (stop_requested(r)) {
    const int sig = r.options.stop->signal_number();
    const std::string by = signal_label(sig);
    std::string what = complete ? "every run had finished" : "stopped early; what finished";
    const std::string& json = r.outputs.json;
    if (!json.empty() && json != "-")
      what += complete ? " (" + json + ")" : " is in " + json + " (\"complete\": false)";
    std::fprintf(r.err, "ptreclaim: interrupted by %s: %s\n", by.c_str(), what.c_str());
    if (v.code != exit_ok) std::fprintf(r.err, "ptreclaim: %s\n", v.reason.c_str());
    return exit_status_for_signal(sig);
  }
  if (v.code != exit_ok) return fail(r.err, v.code, v.reason);
  if (print_tables(r)) std::fprintf(r.out, "%s\n", v.reason.c_str());
  return exit_ok;
}

int run_command(const command_request& r) {
  result_writer out(r.outputs);
  if (r.kind == command_kind::tour) {
    if (const Status st = out.check(); !st.ok()) return fail(r.err, exit_error, st.message());
    return execute(r, out, tour_plan(r));
  }
  if (r.kind == command_kind::campaign) {
    campaign_definition d = r.campaign;
    auto scenarios = load_campaign_scenarios(d);
    if (!scenarios.ok()) return fail(r.err, exit_usage, scenarios.status().message());
    if (const Status st = out.check(); !st.ok()) return fail(r.err, exit_error, st.message());
    return execute(r, out, campaign_plan(r, d, *scenarios));
  }
  // The scenario with its cost file: --costs, else the scenario's [cost] file, else the built-in
  // default (load_scenario applies that order).
  auto loaded = load_scenario(r.scenario, r.costs);
  if (!loaded.ok()) return fail(r.err, exit_usage, loaded.status().message());
  const scenario& s = *loaded;
  if (const Status st = out.check(); !st.ok()) return fail(r.err, exit_error, st.message());
  switch (r.kind) {
    case command_kind::run:
      return execute(r, out, run_plan(r, s));
    case command_kind::replay:
      return execute(r, out, replay_plan(r, s, std::make_shared<std::uint64_t>(0)));
    case command_kind::scale:
      return execute(r, out, scale_plan(r, s));
    case command_kind::compare:
    case command_kind::campaign:
    case command_kind::tour:
      break;
  }
  return execute(r, out, compare_plan(r, s));
}

int merge_command(const command_request& r, const std::vector<std::string>& shard_files) {
  result_writer out(r.outputs);
  if (const Status st = out.check(); !st.ok()) return fail(r.err, exit_error, st.message());
  std::vector<std::pair<std::string, campaign_result>> shards;
  for (const auto& file : shard_files) {
    auto loaded = load_campaign_json(file);
    if (!loaded.ok()) return fail(r.err, exit_usage, loaded.status().message());
    shards.emplace_back(file, std::move(*loaded));
  }
  auto m = merge_campaigns(shards);
  if (!m.ok()) return fail(r.err, exit_error, "cannot merge: " + m.status().message());
  if (print_tables(r)) std::fputs(format_campaign(m->merged).c_str(), r.out);
  const Status st = out.write(m->merged);
  print_notes(r, out);
  if (!st.ok()) return fail(r.err, exit_error, st.message());
  for (const auto& gap : m->gaps)
    std::fprintf(r.err, "ptreclaim: incomplete campaign: %s\n", gap.c_str());
  const verdict v = judge(m->merged);
  if (v.code != exit_ok) return fail(r.err, v.code, v.reason);
  if (!m->gaps.empty()) {
    return fail(r.err, exit_error,
                "no failure in the runs present, but the campaign is incomplete "
                "(see above): no verdict for the whole");
  }
  if (print_tables(r)) std::fprintf(r.out, "%s\n", v.reason.c_str());
  return exit_ok;
}

int calibrate_command(const calibrate_request& r) {
  // Checked before spending the budget measuring.
  if (r.output != "-") {
    if (const Status st = check_output_file(r.output); !st.ok())
      return fail(r.err, exit_error, "-o: " + st.message());
  }
  progress_line line(r.err, r.progress);
  calibrate_options o;
  o.budget_ms = r.budget_ms;
  o.progress = single_line(line, "calibrate");
  auto model = calibrate(o);
  line.finish();
  if (!model.ok()) {
    const int code =
        model.status().code() == ptreclaim::errc::invalid_argument ? exit_usage : exit_error;
    return fail(r.err, code, "calibrate failed: " + model.status().message());
  }
  const std::string text =
      cost_model_to_toml(model->costs,
                         "ptreclaim cost model, measured by `ptreclaim calibrate --budget-ms " +
                             std::to_string(r.budget_ms) + "` on " + machine_description() + ".",
                         model->measured_ns, model->notes);
  if (r.output == "-") {
    std::fputs(text.c_str(), r.out);
    return exit_ok;
  }
  if (auto st = write_file_atomic(r.output, text); !st.ok())
    return fail(r.err, exit_error, "-o: " + st.message());
  if (!r.quiet) {
    std::fputs(text.c_str(), r.out);
    std::fprintf(r.out, "\nwrote %s; use it from a scenario with  [cost] file = \"%s\"\n",
                 r.output.c_str(), r.output.c_str());
  }
  return exit_ok;
}

int list_scenarios_command(bool quiet, std::FILE* out, std::FILE* err) {
  if (quiet) return exit_ok;
  std::fprintf(
      out, "built-in scenarios (ptreclaim scenarios show NAME prints one; copy it to edit):\n\n");
  for (const auto& b : builtin_scenarios()) {
    auto s = load_scenario(std::string(b.name));
    if (!s.ok())
      return fail(err, exit_error, "built-in scenario is invalid: " + s.status().message());
    std::fprintf(out, "  %-18s %s\n", std::string(b.name).c_str(), std::string(b.summary).c_str());
    std::fprintf(out, "  %-18s kind %s, %u cpus, %u domains, %u devices, %u IOMMUs%s\n", "",
                 std::string(workload_kind_name(s->kind)).c_str(), s->cpus, s->domain_count(),
                 s->device_count(), s->iommu.count, s->hotplug.enabled ? ", hotplug" : "");
  }
  std::fprintf(out, "\ndefault: %s\n", std::string(default_scenario_name).c_str());
  return exit_ok;
}

int show_scenario_command(const std::string& name, std::FILE* out, std::FILE* err) {
  if (const auto* b = find_builtin(name)) {
    std::fputs(std::string(b->toml).c_str(), out);
    return exit_ok;
  }
  // A file: validate it, then print it as written.
  auto s = load_scenario(name);
  if (!s.ok()) return fail(err, exit_usage, s.status().message());
  std::FILE* f = std::fopen(name.c_str(), "rb");
  if (f == nullptr) return fail(err, exit_usage, "cannot read '" + name + "'");
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    std::fwrite(buf, 1, n, out);
  std::fclose(f);
  return exit_ok;
}

}  // namespace ptreclaim::sim
