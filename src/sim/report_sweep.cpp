// Sweeps built on run(): every policy on one scenario (compare) and policy x CPU count (scale).
#include <random>
#include <string>

#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

std::uint64_t choose_seed(const scenario& s, const run_options& base) {
  if (base.seed) return *base.seed;
  if (s.seed) return *s.seed;
  return fresh_seed();
}

Status check_policies(const std::vector<std::string>& policies) {
  for (const auto& p : policies) {
    if (!is_policy(p)) return Status(errc::invalid_argument, "unknown policy '" + p + "'");
  }
  return {};
}

}  // namespace

std::uint64_t fresh_seed() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

Result<compare_result> run_compare(const scenario& s, const run_options& base,
                                   const std::vector<std::string>& policies_in,
                                   const sweep_progress& progress) {
  const std::vector<std::string>& policies = policies_in.empty() ? policy_names() : policies_in;
  PTR_TRY(check_policies(policies));
  compare_result out;
  out.scenario = s.name;
  out.executor = std::string(executor_name(base.executor));
  out.cpus = base.cpus != 0 ? base.cpus : s.cpus;
  out.seed = choose_seed(s, base);
  const double n = static_cast<double>(policies.size());
  for (std::size_t i = 0; i < policies.size(); ++i) {
    run_options o = base;
    o.policy = policies[i];
    o.seed = out.seed;
    const std::string label = policies[i];
    if (progress) {
      progress(label, static_cast<double>(i) / n);
      o.progress = [&progress, &label, i, n](double f) {
        progress(label, (static_cast<double>(i) + f) / n);
      };
    } else {
      o.progress = nullptr;
    }
    auto r = run(s, o);
    if (!r.ok()) {
      return Status(r.status().code(), "policy " + policies[i] + ": " + r.status().message());
    }
    out.runs.push_back(std::move(*r));
  }
  if (progress) progress("done", 1.0);
  return out;
}

Result<scale_result> run_scale(const scenario& s, const run_options& base,
                               const std::vector<std::string>& policies_in,
                               const std::vector<unsigned>& cpu_counts,
                               const sweep_progress& progress) {
  const std::vector<std::string>& policies = policies_in.empty() ? policy_names() : policies_in;
  PTR_TRY(check_policies(policies));
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
  out.policies = policies;
  out.cpu_counts = cpu_counts;
  const double n = static_cast<double>(policies.size() * cpu_counts.size());
  std::size_t k = 0;
  for (const auto& policy : policies) {
    for (unsigned cpus : cpu_counts) {
      run_options o = base;
      o.policy = policy;
      o.cpus = cpus;
      o.seed = out.seed;
      const std::string label = policy + " @ " + std::to_string(cpus) + " cpus";
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
      out.runs.push_back(std::move(*r));
      ++k;
    }
  }
  if (progress) progress("done", 1.0);
  return out;
}

}  // namespace ptreclaim::sim
