// Seed campaigns (campaign.hpp): the partition into shards and running one shard. The verdict,
// the table, JSON and merging are the report library's (ptreclaim/report/campaign.hpp).
#include "ptreclaim/sim/campaign.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

#include "ptreclaim/base/file.hpp"
#include "ptreclaim/config.hpp"

namespace ptreclaim::sim {
namespace {

Result<std::uint64_t> parse_number(std::string_view text, const char* what) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Status(
        errc::invalid_argument,
        std::string(what) + " must be a non-negative integer, not '" + std::string(text) + "'");
  }
  return v;
}

// FNV-1a over a scenario's or cost file's text: enough to tell that two machines ran different
// files under the same name.
std::string text_hash(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Result<std::string> scenario_text(const scenario& s) {
  if (s.source.rfind("builtin:", 0) == 0) {
    const builtin_scenario* b = find_builtin(s.source.substr(8));
    if (b != nullptr) return std::string(b->toml);
  }
  return read_text_file(s.source);
}

Status check_definition(const campaign_definition& d) {
  const auto no_repeats = [](const std::vector<std::string>& v, const char* what) -> Status {
    if (v.empty()) return Status(errc::invalid_argument, std::string(what) + " lists nothing");
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (std::find(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v[i]) !=
          v.begin() + static_cast<std::ptrdiff_t>(i)) {
        return Status(errc::invalid_argument, std::string(what) + " lists '" + v[i] + "' twice");
      }
    }
    return {};
  };
  PTR_TRY(no_repeats(d.scenarios, "--scenarios"));
  PTR_TRY(no_repeats(d.policies, "--policies"));
  for (const auto& p : d.policies)
    if (!is_policy(p)) return Status(errc::invalid_argument, "unknown policy '" + p + "'");
  if (d.first_seed > d.last_seed) return Status(errc::invalid_argument, "--seeds: an empty range");
  // Item numbers must fit in 64 bits (and no campaign comes near this).
  if (d.last_seed - d.first_seed >= max_campaign_seeds)
    return Status(errc::invalid_argument, "--seeds: at most 2^40 seeds in one campaign");
  return {};
}

}  // namespace

Result<shard_spec> parse_shard(std::string_view text) {
  const auto slash = text.find('/');
  const auto bad = [&] {
    return Status(errc::invalid_argument,
                  "--shard must be K/N with 1 <= K <= N <= " + std::to_string(max_shards) +
                      ", not '" + std::string(text) + "'");
  };
  if (slash == std::string_view::npos) return bad();
  auto k = parse_number(text.substr(0, slash), "--shard");
  auto n = parse_number(text.substr(slash + 1), "--shard");
  if (!k.ok() || !n.ok() || *k < 1 || *k > *n || *n > max_shards) return bad();
  return shard_spec{static_cast<unsigned>(*k), static_cast<unsigned>(*n)};
}

Result<std::pair<std::uint64_t, std::uint64_t>> parse_seed_range(std::string_view text) {
  const auto dots = text.find("..");
  auto a = parse_number(text.substr(0, dots), "--seeds");
  if (!a.ok()) return a.status();
  if (dots == std::string_view::npos) return std::pair{*a, *a};
  auto b = parse_number(text.substr(dots + 2), "--seeds");
  if (!b.ok()) return b.status();
  if (*b < *a) {
    return Status(errc::invalid_argument,
                  "--seeds " + std::string(text) + " is an empty range (A..B needs A <= B)");
  }
  return std::pair{*a, *b};
}

campaign_item campaign_item_at(const campaign_definition& d, std::uint64_t k) {
  const std::uint64_t seeds = d.seed_count();
  const std::uint64_t rest = k / seeds;
  return {static_cast<std::size_t>(rest / d.policies.size()),
          static_cast<std::size_t>(rest % d.policies.size()), d.first_seed + k % seeds};
}

std::uint64_t shard_size(const campaign_definition& d, shard_spec s) noexcept {
  const std::uint64_t total = d.size();
  return total / s.count + (s.index - 1 < total % s.count ? 1 : 0);
}

Result<std::vector<scenario>> load_campaign_scenarios(campaign_definition& d) {
  PTR_TRY(check_definition(d));
  std::vector<scenario> out;
  d.scenario_hashes.clear();
  for (const auto& name : d.scenarios) {
    auto s = load_scenario(name, d.costs);
    if (!s.ok()) return s.status();
    auto text = scenario_text(*s);
    if (!text.ok()) return text.status();
    d.scenario_hashes.push_back(text_hash(*text));
    out.push_back(std::move(*s));
  }
  d.costs_hash.clear();
  if (!d.costs.empty()) {
    auto text = read_text_file(d.costs);
    if (!text.ok()) return Status(errc::invalid_argument, "--costs: " + text.status().message());
    d.costs_hash = text_hash(*text);
  }
  d.version = std::string(config::version);
  return out;
}

Result<campaign_result> run_campaign(const campaign_definition& d,
                                     const std::vector<scenario>& scenarios, shard_spec shard,
                                     const run_options& base, const sweep_progress& progress,
                                     const sweep_checkpoint<campaign_result>& checkpoint) {
  PTR_TRY(check_definition(d));
  if (scenarios.size() != d.scenarios.size())
    return Status(errc::invalid_argument, "run_campaign: one loaded scenario per name");
  if (shard.count < 1 || shard.index < 1 || shard.index > shard.count)
    return Status(errc::invalid_argument, "run_campaign: a shard is K/N with 1 <= K <= N");
  // Every scenario must take the overrides before anything runs, not at its first seed.
  for (const auto& s : scenarios) {
    auto checked = with_overrides(s, d.cpus, d.ops_per_cpu);
    if (!checked.ok())
      return Status(checked.status().code(), s.name + ": " + checked.status().message());
  }
  campaign_result out;
  out.definition = d;
  out.shard = shard;
  out.expected_runs = shard_size(d, shard);
  out.complete = false;  // until the last run is in
  const double n = static_cast<double>(std::max<std::uint64_t>(out.expected_runs, 1));
  const bool stopping = base.stop != nullptr;
  for (std::uint64_t k = shard.index - 1; k < d.size(); k += shard.count) {
    if (stopping && base.stop->requested()) break;
    const campaign_item item = campaign_item_at(d, k);
    const scenario& s = scenarios[item.scenario];
    run_options o = base;
    // The definition's names were checked against the registry when it was made or read.
    o.policy = reclaim::parse_policy(d.policies[item.policy]).value();
    o.seed = item.seed;
    o.cpus = d.cpus;
    o.ops_per_cpu = d.ops_per_cpu;
    o.executor = executor_kind::deterministic;
    const std::string label = d.scenarios[item.scenario] + " " + d.policies[item.policy] +
                              " seed " + std::to_string(item.seed);
    const double done = static_cast<double>(out.runs.size());
    if (progress) {
      progress(label, done / n);
      o.progress = [&progress, &label, done, n](double f) { progress(label, (done + f) / n); };
    } else {
      o.progress = nullptr;
    }
    auto r = run(s, o);
    if (!r.ok()) return Status(r.status().code(), label + ": " + r.status().message());
    campaign_run c;
    c.scenario = d.scenarios[item.scenario];
    c.policy = d.policies[item.policy];
    c.policy_safe = r->policy_safe;
    c.contract_broken = r->contract_broken;
    c.seed = item.seed;
    c.complete = r->complete;
    c.operations = r->operations;
    c.ops_per_s = r->ops_per_s();
    c.violations = r->violations.count;
    c.trace_hash = r->trace_hash;
    c.invariants = r->invariants;
    c.replay_command = replay_command(s, o, item.seed);
    out.runs.push_back(std::move(c));
    if (checkpoint && out.runs.size() < out.expected_runs) checkpoint(out);
  }
  out.complete =
      out.runs.size() == out.expected_runs && (out.runs.empty() || out.runs.back().complete);
  if (!out.complete) out.interrupted_by = signal_label(stopping ? base.stop->signal_number() : 0);
  if (progress && out.complete) progress("done", 1.0);
  return out;
}

}  // namespace ptreclaim::sim
