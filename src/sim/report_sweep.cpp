// Sweeps built on run(): every policy on one scenario (compare) and policy x CPU count (scale).
#include <random>
#include <string>
#include <utility>

#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

std::uint64_t choose_seed(const scenario& s, const run_options& base) {
  if (base.seed) return *base.seed;
  if (s.seed) return *s.seed;
  return fresh_seed();
}

// The policies of a sweep: `given`, or every policy of the registry.
std::vector<reclaim::policy_kind> sweep_policies(const std::vector<reclaim::policy_kind>& given) {
  if (!given.empty()) return given;
  return {reclaim::all_policies.begin(), reclaim::all_policies.end()};
}

}  // namespace

std::uint64_t fresh_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

namespace {

// Runs point `k` of `n` of a sweep, reporting its progress as part of the whole.
Result<run_result> run_point(const scenario& s, run_options o, const std::string& label,
                             std::size_t k, double n, const sweep_progress& progress) {
  if (progress) {
    progress(label, static_cast<double>(k) / n);
    o.progress = [&progress, &label, k, n](double f) {
      progress(label, (static_cast<double>(k) + f) / n);
    };
  } else {
    o.progress = nullptr;
  }
  auto r = run(s, o);
  if (!r.ok()) return Status(r.status().code(), label + ": " + r.status().message());
  return r;
}

bool stop_requested(const run_options& base) {
  return base.stop != nullptr && base.stop->requested();
}

// Marks a sweep's result stopped, or complete, once its loop ended.
template <class R>
void conclude(R& out, const run_options& base, std::size_t planned) {
  out.complete = out.runs.size() == planned;
  for (const auto& r : out.runs)
    out.complete = out.complete && r.complete;
  if (!out.complete)
    out.interrupted_by = signal_label(base.stop != nullptr ? base.stop->signal_number() : 0);
}

}  // namespace

Result<compare_result> run_compare(const scenario& s, const run_options& base,
                                   const std::vector<reclaim::policy_kind>& policies_in,
                                   const sweep_progress& progress,
                                   const sweep_checkpoint<compare_result>& checkpoint) {
  const std::vector<reclaim::policy_kind> policies = sweep_policies(policies_in);
  compare_result out;
  out.scenario = s.name;
  out.executor = std::string(executor_name(base.executor));
  out.cpus = base.cpus != 0 ? base.cpus : s.cpus;
  out.seed = choose_seed(s, base);
  out.complete = false;  // until the last run is in
  const double n = static_cast<double>(policies.size());
  for (std::size_t i = 0; i < policies.size() && !stop_requested(base); ++i) {
    run_options o = base;
    o.policy = policies[i];
    o.seed = out.seed;
    auto r = run_point(s, o, std::string(reclaim::policy_name(policies[i])), i, n, progress);
    if (!r.ok()) return Status(r.status().code(), "policy " + r.status().message());
    out.runs.push_back(std::move(*r));
    if (checkpoint && i + 1 < policies.size()) checkpoint(out);
  }
  conclude(out, base, policies.size());
  if (progress && out.complete) progress("done", 1.0);
  return out;
}

Result<scale_result> run_scale(const scenario& s, const run_options& base,
                               const std::vector<reclaim::policy_kind>& policies_in,
                               const std::vector<unsigned>& cpu_counts,
                               const sweep_progress& progress,
                               const sweep_checkpoint<scale_result>& checkpoint) {
  const std::vector<reclaim::policy_kind> policies = sweep_policies(policies_in);
  if (cpu_counts.empty()) return Status(errc::invalid_argument, "scale: no CPU counts given");
  for (unsigned c : cpu_counts) {
    if (c < 1 || c > limits::max_cpus) {
      return Status(errc::invalid_argument, "scale: CPU count " + std::to_string(c) +
                                                " is not in 1 .. " +
                                                std::to_string(limits::max_cpus));
    }
  }
  scale_result out;
  out.scenario = s.name;
  out.executor = std::string(executor_name(base.executor));
  out.seed = choose_seed(s, base);
  for (reclaim::policy_kind p : policies)
    out.policies.emplace_back(reclaim::policy_name(p));
  out.cpu_counts = cpu_counts;
  out.complete = false;  // until the last run is in
  const std::size_t planned = policies.size() * cpu_counts.size();
  const double n = static_cast<double>(planned);
  for (std::size_t k = 0; k < planned && !stop_requested(base); ++k) {
    run_options o = base;
    o.policy = policies[k / cpu_counts.size()];
    o.cpus = cpu_counts[k % cpu_counts.size()];
    o.seed = out.seed;
    auto r = run_point(
        s, o,
        std::string(reclaim::policy_name(o.policy)) + " @ " + std::to_string(o.cpus) + " cpus", k,
        n, progress);
    if (!r.ok()) return r.status();
    out.runs.push_back(std::move(*r));
    if (checkpoint && k + 1 < planned) checkpoint(out);
  }
  conclude(out, base, planned);
  if (progress && out.complete) progress("done", 1.0);
  return out;
}

}  // namespace ptreclaim::sim
