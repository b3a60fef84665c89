// The tour (tour.hpp): two cases, two CPU counts, every policy; tables and findings.
#include "ptreclaim/report/tour.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

#include "ptreclaim/scenario/scenario.hpp"
#include "report/report_format.hpp"
#include "report/report_json.hpp"

namespace ptreclaim::sim {
namespace {

using detail::fixed;
using detail::human_count;
using detail::human_ns;

std::string cpus_text(unsigned n) {
  return std::to_string(n) + (n == 1 ? " CPU" : " CPUs");
}

double p99(const run_result& r) {
  return static_cast<double>(r.reclaim.retire_to_free_ns.percentile(0.99));
}

std::string ratio(double x) {
  return fixed(x, 2) + "x";
}

// The registry's one line about a policy ("Linux 6.19: global list + spinlock + ...").
std::string design_of(const std::string& policy) {
  if (const auto k = reclaim::find_policy(policy))
    return std::string(reclaim::policy_of(*k).summary);
  return {};
}

// A case's runs at the small (0) or large (1) count, by policy index.
const run_result* at(const tour_case& c, std::size_t p, std::size_t count) {
  const run_result* r = c.scale.at(p, count);
  return r != nullptr && r->complete ? r : nullptr;
}

// Whether every run of the case is there (both counts, every policy).
bool whole(const tour_case& c) {
  return c.scale.complete &&
         c.scale.runs.size() == c.scale.policies.size() * c.scale.cpu_counts.size();
}

std::string common_args(const tour_result& r, const std::string& scenario) {
  return "--scenario " + scenario + " --ops " + std::to_string(r.definition.ops_per_cpu) +
         " --seed " + std::to_string(r.definition.seed);
}

std::string compare_command(const tour_result& r, const std::string& scenario) {
  return "ptreclaim compare " + common_args(r, scenario) + " --cpus " +
         std::to_string(r.definition.large_cpus);
}

bool caught(const run_result& r) {
  const auto& s1 = r.at(invariant::s1);
  const auto& s3 = r.at(invariant::s3);
  return (s1.checked && !s1.held) || (s3.checked && !s3.held);
}

// "device 3 (domain 1, did 1) iova 0x2000 read frame 42 as level-1 table via PSC: free_frame
// [free gen 5]": the first violation without its prefix and its timestamps.
std::string short_violation(std::string v) {
  const auto nl = v.find('\n');
  if (nl != std::string::npos) v.resize(nl);
  const std::string prefix = "S1 violation: ";
  if (v.rfind(prefix, 0) == 0) v.erase(0, prefix.size());
  if (const auto end = v.find("] at "); end != std::string::npos) v.resize(end + 1);
  if (v.size() > 160) v = v.substr(0, 157) + "...";
  return v;
}

// 1. The cheapest and the dearest safe policy at the large count.
std::optional<tour_finding> cheapest(const tour_result& r) {
  struct pick {
    const tour_case* c = nullptr;
    std::string best, worst;
    double best_x = 0, worst_x = 0;  // vs immediate (or ops/s without immediate)
    std::vector<std::string> tied;
  };
  std::vector<pick> picks;
  bool have_immediate = true;
  for (const tour_case& c : r.cases) {
    if (!whole(c)) continue;
    const auto& pol = c.scale.policies;
    double base = 0;
    for (std::size_t p = 0; p < pol.size(); ++p)
      if (pol[p] == "immediate" && at(c, p, 1) != nullptr) base = at(c, p, 1)->ops_per_s();
    if (base <= 0) have_immediate = false;
    pick k;
    k.c = &c;
    double best = -1, worst = -1;
    for (std::size_t p = 0; p < pol.size(); ++p) {
      const run_result* x = at(c, p, 1);
      if (x == nullptr || !x->judged_safe()) continue;
      const double v = x->ops_per_s();
      if (best < 0 || v > best) {
        best = v;
        k.best = pol[p];
      }
      if (worst < 0 || v < worst) {
        worst = v;
        k.worst = pol[p];
      }
    }
    if (best <= 0) continue;
    for (std::size_t p = 0; p < pol.size(); ++p) {
      const run_result* x = at(c, p, 1);
      if (x != nullptr && x->judged_safe() && pol[p] != k.best && x->ops_per_s() >= 0.99 * best)
        k.tied.push_back(pol[p]);
    }
    k.best_x = base > 0 ? best / base : best;
    k.worst_x = base > 0 ? worst / base : worst;
    picks.push_back(std::move(k));
  }
  if (picks.empty()) return std::nullopt;
  const auto value = [have_immediate](double x) {
    return have_immediate ? ratio(x) : human_count(x) + " ops/s";
  };
  const auto tie_text = [](const pick& k) {
    if (k.tied.empty()) return std::string();
    std::string t;
    for (const auto& n : k.tied)
      t += (t.empty() ? "" : ", ") + n;
    return " (" + t + " within 1%)";
  };
  const std::string of =
      have_immediate ? " of immediate's throughput (immediate frees at once, unsafely: the cost "
                       "floor)"
                     : "";
  std::string text = "At " + cpus_text(r.definition.large_cpus) + " the cheapest safe policy is ";
  const bool same = std::all_of(picks.begin(), picks.end(),
                                [&](const pick& k) { return k.best == picks.front().best; });
  if (same && picks.size() > 1) {
    text += picks.front().best + " in both cases: ";
    for (std::size_t i = 0; i < picks.size(); ++i) {
      text += (i == 0 ? "" : (i + 1 == picks.size() ? " and " : ", ")) + value(picks[i].best_x) +
              (i == 0 ? of : "") + " on " + picks[i].c->scale.scenario + tie_text(picks[i]);
    }
  } else {
    for (std::size_t i = 0; i < picks.size(); ++i) {
      text += (i == 0 ? "" : (i + 1 == picks.size() ? " and " : ", ")) + picks[i].best + " on " +
              picks[i].c->scale.scenario + " at " + value(picks[i].best_x) + (i == 0 ? of : "") +
              tie_text(picks[i]);
    }
  }
  // The dearest, where it is dearest.
  const pick* d = &picks.front();
  for (const pick& k : picks)
    if (k.worst_x < d->worst_x) d = &k;
  if (d->worst != d->best) {
    text += ". The dearest is " + d->worst + ", at " + value(d->worst_x) + " on " +
            d->c->scale.scenario;
    const std::string why = design_of(d->worst);
    if (!why.empty()) text += " (" + why + ")";
  }
  return tour_finding{text + ".", compare_command(r, d->c->scale.scenario)};
}

// 2. Where scaling stops, and what the figures say limits it.
std::optional<tour_finding> scaling(const tour_result& r) {
  const double cpu_ratio =
      static_cast<double>(r.definition.large_cpus) / static_cast<double>(r.definition.small_cpus);
  const tour_case* pc = nullptr;
  std::size_t worst_p = 0, best_p = 0;
  double worst_su = 0, best_su = 0, spread = -1;
  for (const tour_case& c : r.cases) {
    if (!whole(c)) continue;
    double lo = -1, hi = -1;
    std::size_t lo_p = 0, hi_p = 0;
    for (std::size_t p = 0; p < c.scale.policies.size(); ++p) {
      const run_result* a = at(c, p, 0);
      const run_result* b = at(c, p, 1);
      if (a == nullptr || b == nullptr || !a->judged_safe() || a->ops_per_s() <= 0) continue;
      const double su = b->ops_per_s() / a->ops_per_s();
      if (lo < 0 || su < lo) {
        lo = su;
        lo_p = p;
      }
      if (hi < 0 || su > hi) {
        hi = su;
        hi_p = p;
      }
    }
    if (lo <= 0) continue;
    const double s = (hi - lo) / hi;
    if (s > spread) {
      spread = s;
      pc = &c;
      worst_p = lo_p;
      best_p = hi_p;
      worst_su = lo;
      best_su = hi;
    }
  }
  if (pc == nullptr) return std::nullopt;
  const std::string& worst = pc->scale.policies[worst_p];
  const run_result& ws = *at(*pc, worst_p, 0);
  const run_result& wl = *at(*pc, worst_p, 1);
  std::string text = "From " + cpus_text(r.definition.small_cpus) + " to " +
                     cpus_text(r.definition.large_cpus) + " (" + fixed(cpu_ratio, 0) + "x) on " +
                     pc->scale.scenario + ", " + worst + " scales least: " + ratio(worst_su);
  if (best_p != worst_p) text += ", against " + pc->scale.policies[best_p] + "'s " + ratio(best_su);
  text += ".";
  const double q = wl.invalidations.busiest_queue;
  const double lat_growth = p99(ws) > 0 ? p99(wl) / p99(ws) : 0;
  if (q >= 0.8) {
    text += " At " + cpus_text(r.definition.large_cpus) +
            " its busiest IOMMU invalidation queue is busy " + fixed(100.0 * q, 0) +
            "% of the time, so invalidations, not CPUs, set its pace";
    const run_result* bl = at(*pc, best_p, 1);
    if (bl != nullptr && best_p != worst_p && wl.invalidations_per_freed_table() > 0) {
      text += ": it asks for " + fixed(wl.invalidations_per_freed_table(), 2) +
              " invalidations per freed table, " + pc->scale.policies[best_p] + " for " +
              fixed(bl->invalidations_per_freed_table(), 2);
    }
    const std::string why = design_of(worst);
    if (!why.empty()) text += " (" + worst + ": " + why + ")";
    text += ".";
  } else if (lat_growth >= 2.0) {
    text += " Its p99 retire->free grows from " + human_ns(p99(ws)) + " to " + human_ns(p99(wl)) +
            " and its peak pending frames from " + std::to_string(ws.reclaim.peak_pending) +
            " to " + std::to_string(wl.reclaim.peak_pending) + " as more CPUs feed it";
    const std::string why = design_of(worst);
    if (!why.empty()) text += " (" + worst + ": " + why + ")";
    text += ".";
  } else {
    text += " Neither its invalidation queue (" + fixed(100.0 * q, 0) +
            "% busy) nor its p99 retire->free (" + human_ns(p99(ws)) + " -> " + human_ns(p99(wl)) +
            ") explains that by itself: the workload's own locks and caches weigh in.";
  }
  if (best_su < 0.5 * cpu_ratio)
    text += " No safe policy gets near " + fixed(cpu_ratio, 0) + "x here.";
  return tour_finding{text, "ptreclaim scale " + common_args(r, pc->scale.scenario) + " --cpus " +
                                std::to_string(r.definition.small_cpus) + "," +
                                std::to_string(r.definition.large_cpus)};
}

// 3. Frames held and how long: the widest gap between safe policies at the large count.
std::optional<tour_finding> held(const tour_result& r) {
  const tour_case* pc = nullptr;
  const run_result* slow = nullptr;
  const run_result* fast = nullptr;
  double gap = 0;
  for (const tour_case& c : r.cases) {
    if (!whole(c)) continue;
    const run_result* s = nullptr;
    const run_result* f = nullptr;
    for (std::size_t p = 0; p < c.scale.policies.size(); ++p) {
      const run_result* x = at(c, p, 1);
      if (x == nullptr || !x->judged_safe() || x->reclaim.retire_to_free_ns.count() == 0) continue;
      if (s == nullptr || p99(*x) > p99(*s)) s = x;
      if (f == nullptr || p99(*x) < p99(*f)) f = x;
    }
    if (s == nullptr || f == nullptr || s == f || p99(*f) <= 0) continue;
    const double g = p99(*s) / p99(*f);
    if (g > gap) {
      gap = g;
      pc = &c;
      slow = s;
      fast = f;
    }
  }
  if (pc == nullptr) return std::nullopt;
  std::string text = "At " + cpus_text(r.definition.large_cpus) + " on " + pc->scale.scenario +
                     ", " + slow->policy + " frees a retired table " + human_ns(p99(*slow)) +
                     " after its retire (p99) and holds up to " +
                     std::to_string(slow->reclaim.peak_pending) + " retired frames; " +
                     fast->policy + " frees within " + human_ns(p99(*fast)) + " and holds " +
                     std::to_string(fast->reclaim.peak_pending) + " (" + fixed(gap, 0) +
                     "x apart). The report plots frames pending over time, one panel per policy.";
  return tour_finding{text, compare_command(r, pc->scale.scenario) + " --report tour-report"};
}

// 4. The canaries: caught everywhere? Their first violation and how to see its story.
std::optional<tour_finding> canaries(const tour_result& r) {
  struct tally {
    std::string policy;
    unsigned runs = 0, caught = 0;
    std::uint64_t violations = 0;
    std::string missed;  // "sva-kernel at 32 CPUs"
    const run_result* first = nullptr;
  };
  std::vector<tally> t;
  for (const tour_case& c : r.cases) {
    for (std::size_t p = 0; p < c.scale.policies.size(); ++p) {
      for (std::size_t k = 0; k < c.scale.cpu_counts.size(); ++k) {
        const run_result* x = at(c, p, k);
        if (x == nullptr || x->policy_safe) continue;
        auto it =
            std::find_if(t.begin(), t.end(), [&](const tally& e) { return e.policy == x->policy; });
        if (it == t.end()) {
          tally fresh;
          fresh.policy = x->policy;
          it = t.insert(t.end(), std::move(fresh));
        }
        ++it->runs;
        it->violations += x->violations.count;
        if (caught(*x)) {
          ++it->caught;
          if (it->first == nullptr) it->first = x;
        } else if (it->missed.empty()) {
          it->missed = x->scenario + " at " + cpus_text(x->cpus);
        }
      }
    }
  }
  if (t.empty()) return std::nullopt;
  std::string text;
  bool all = true;
  for (const tally& e : t)
    all = all && e.caught == e.runs;
  if (all) {
    text = "The canaries were caught in every run (";
    for (std::size_t i = 0; i < t.size(); ++i)
      text += (i == 0 ? "" : "; ") + t[i].policy + ": " + std::to_string(t[i].caught) + " of " +
              std::to_string(t[i].runs) + " runs, " + std::to_string(t[i].violations) +
              " violations";
    text += "): the checker sees an early free.";
  } else {
    text = "Canaries: ";
    for (std::size_t i = 0; i < t.size(); ++i) {
      text += (i == 0 ? "" : "; ") + t[i].policy + " caught in " + std::to_string(t[i].caught) +
              " of " + std::to_string(t[i].runs) + " runs";
      if (!t[i].missed.empty()) text += " (nothing caught on " + t[i].missed + ")";
    }
    text += ": a canary is caught only where the scenario gives its early free a reader.";
  }
  const tally* shown = nullptr;
  for (const tally& e : t)
    if (shown == nullptr && e.first != nullptr) shown = &e;
  std::string command;
  if (shown != nullptr) {
    const run_result& x = *shown->first;
    text += " The first of " + x.policy + " on " + x.scenario + " at " + cpus_text(x.cpus) + ": " +
            short_violation(x.violations.first) +
            ". Its replay tells that frame's story, from allocation to the walk that read it.";
    command = detail::story_command(x);
    if (command.empty()) command = x.violations.replay_command;
  }
  return tour_finding{text, command};
}

}  // namespace

Result<tour_result> run_tour(const tour_definition& d, const run_options& base,
                             const sweep_progress& progress) {
  tour_result out;
  out.definition = d;
  run_options o = base;
  o.seed = d.seed;
  o.ops_per_cpu = d.ops_per_cpu;
  const std::vector<unsigned> counts{d.small_cpus, d.large_cpus};
  for (std::size_t i = 0; i < d.cases.size(); ++i) {
    auto s = load_scenario(d.cases[i].scenario);
    if (!s.ok()) return s.status();
    const double n = static_cast<double>(d.cases.size());
    const sweep_progress each = [&progress, i, n](std::string_view label, double f) {
      if (progress) progress(label, (static_cast<double>(i) + f) / n);
    };
    auto sr = run_scale(*s, o, d.policies, counts, each);
    if (!sr.ok()) return sr.status();
    tour_case c;
    c.role = d.cases[i].role;
    c.scale = std::move(*sr);
    const bool stopped = !c.scale.complete;
    out.cases.push_back(std::move(c));
    if (stopped) {
      out.complete = false;
      out.interrupted_by = out.cases.back().scale.interrupted_by;
      break;
    }
  }
  out.findings = tour_findings(out);
  return out;
}

std::vector<tour_finding> tour_findings(const tour_result& r) {
  std::vector<tour_finding> out;
  for (auto f : {cheapest(r), scaling(r), held(r), canaries(r)})
    if (f) out.push_back(std::move(*f));
  return out;
}

std::string format_tour(const tour_result& r) {
  const tour_definition& d = r.definition;
  std::string out = "ptreclaim tour: the Xen case and the Linux case, every policy, at " +
                    std::to_string(d.small_cpus) + " and " + cpus_text(d.large_cpus) +
                    " (simulated)\n"
                    "deterministic executor, virtual time, seed " +
                    std::to_string(d.seed) + ", " + std::to_string(d.ops_per_cpu) +
                    " operations per CPU; `ptreclaim compare` runs one scenario in full\n";
  const std::string small = std::to_string(d.small_cpus);
  const std::string large = std::to_string(d.large_cpus);
  for (const tour_case& c : r.cases) {
    std::string summary;
    if (auto s = load_scenario(c.scale.scenario); s.ok()) summary = s->description;
    out += "\n" + c.role + ": " + c.scale.scenario + (summary.empty() ? "" : " (" + summary + ")") +
           "\n\n";
    std::size_t immediate = c.scale.policies.size();
    for (std::size_t p = 0; p < c.scale.policies.size(); ++p)
      if (c.scale.policies[p] == "immediate") immediate = p;
    std::vector<std::vector<std::string>> rows;
    for (std::size_t p = 0; p < c.scale.policies.size(); ++p) {
      const run_result* a = c.scale.at(p, 0);
      const run_result* b = c.scale.at(p, 1);
      const run_result* any = b != nullptr ? b : a;
      if (any == nullptr) continue;
      const run_result* base =
          immediate < c.scale.policies.size() ? c.scale.at(immediate, 1) : nullptr;
      const auto ops = [](const run_result* x) {
        return x == nullptr ? std::string("-")
                            : (x->complete ? human_count(x->ops_per_s()) : std::string("stopped"));
      };
      std::string inv = "ok";
      const std::string failed = detail::failed_invariants({a, b});  // in order, once each
      if (!failed.empty()) inv = "FAIL" + failed;
      rows.push_back({c.scale.policies[p],
                      !any->policy_safe              ? "NO"
                      : any->contract_broken.empty() ? "yes"
                                                     : "contract",
                      ops(a), ops(b),
                      a != nullptr && b != nullptr && a->ops_per_s() > 0
                          ? ratio(b->ops_per_s() / a->ops_per_s())
                          : "-",
                      b != nullptr && base != nullptr && base->ops_per_s() > 0
                          ? ratio(b->ops_per_s() / base->ops_per_s())
                          : "-",
                      b != nullptr ? human_ns(p99(*b)) : "-",
                      b != nullptr ? std::to_string(b->reclaim.peak_pending) : "-", inv});
    }
    out += detail::text_table({"policy", "safe", "ops/s @" + small, "ops/s @" + large, "speed-up",
                               "vs immediate", "p99 retire->free", "peak pending", "invariants"},
                              rows);
  }
  out += "\nops/s at " + small + " and at " + large +
         " CPUs (virtual time), the speed-up between "
         "them, the rest at " +
         large +
         " CPUs.\nsafe = NO: a canary, unsafe on purpose (its "
         "violations show the checker works).\n";
  if (!r.findings.empty()) {
    out += "\nwhat the figures show\n";
    for (std::size_t i = 0; i < r.findings.size(); ++i) {
      std::string text = r.findings[i].text;
      // Wrapped at 96 columns, indented under the number.
      std::string line, wrapped;
      std::size_t start = 0;
      while (start < text.size()) {
        std::size_t end = text.find(' ', start);
        if (end == std::string::npos) end = text.size();
        const std::string word = text.substr(start, end - start);
        if (!line.empty() && line.size() + 1 + word.size() > 92) {
          wrapped += line + "\n   ";
          line.clear();
        }
        line += (line.empty() ? "" : " ") + word;
        start = end + 1;
      }
      wrapped += line;
      out += std::to_string(i + 1) + ". " + wrapped + "\n";
      if (!r.findings[i].command.empty()) out += "   $ " + r.findings[i].command + "\n";
    }
  }
  if (!r.complete) {
    out += "stopped early by " + r.interrupted_by + ": the tables hold what finished\n";
  }
  return out;
}

std::string to_json(const tour_result& r, int indent) {
  nlohmann::json cases = nlohmann::json::array();
  for (const tour_case& c : r.cases) {
    cases.push_back({{"role", c.role}, {"scale", detail::scale_json(c.scale)}});
  }
  nlohmann::json findings = nlohmann::json::array();
  for (const tour_finding& f : r.findings)
    findings.push_back({{"text", f.text}, {"command", f.command}});
  const verdict v = judge(r, false);
  nlohmann::json j = {{"kind", "tour"},
                      {"complete", r.complete},
                      {"interrupted_by", r.interrupted_by},
                      {"seed", r.definition.seed},
                      {"ops_per_cpu", r.definition.ops_per_cpu},
                      {"cpu_counts", {r.definition.small_cpus, r.definition.large_cpus}},
                      {"cases", cases},
                      {"findings", findings},
                      {"verdict", {{"code", v.code}, {"reason", v.reason}}}};
  return detail::dump_json(j, indent);
}

verdict judge(const tour_result& r, bool expect_violation) {
  scale_result all;
  for (const tour_case& c : r.cases)
    all.runs.insert(all.runs.end(), c.scale.runs.begin(), c.scale.runs.end());
  return judge(all, expect_violation);
}

}  // namespace ptreclaim::sim
