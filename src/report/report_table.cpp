// Text tables for a terminal: the comparison table, a single run in detail, the scale table.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "ptreclaim/report/report.hpp"
#include "report/report_faults.hpp"
#include "report/report_format.hpp"

namespace ptreclaim::sim {
namespace detail {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string human_count(double v) {
  static constexpr const char* suffix[] = {"", "k", "M", "G", "T"};
  int i = 0;
  double x = v;
  while (std::fabs(x) >= 1000.0 && i < 4) {
    x /= 1000.0;
    ++i;
  }
  if (i == 0) return fixed(x, x == std::floor(x) ? 0 : 1);
  const int decimals = std::fabs(x) >= 100 ? 0 : (std::fabs(x) >= 10 ? 1 : 2);
  return fixed(x, decimals) + suffix[i];
}

std::string human_ns(double ns) {
  const char* unit = "ns";
  double x = ns;
  if (x >= 1e9) {
    x /= 1e9;
    unit = "s";
  } else if (x >= 1e6) {
    x /= 1e6;
    unit = "ms";
  } else if (x >= 1e3) {
    x /= 1e3;
    unit = "us";
  } else {
    return fixed(x, 0) + " ns";
  }
  const int decimals = x >= 100 ? 0 : (x >= 10 ? 1 : 2);
  return fixed(x, decimals) + " " + unit;
}

std::string failed_invariants(std::initializer_list<const run_result*> runs) {
  std::string failed;
  for (std::size_t i = 0; i < invariant_count; ++i) {
    bool broke = false;
    for (const run_result* r : runs)
      broke = broke || (r != nullptr && r->invariants[i].checked && !r->invariants[i].held);
    if (broke) failed += " " + std::string(invariant_name(static_cast<invariant>(i)));
  }
  return failed;
}

std::string invariants_cell(const run_result& r) {
  std::size_t checked = 0;
  for (const auto& v : r.invariants)
    checked += v.checked ? 1 : 0;
  const std::string failed = failed_invariants({&r});
  if (!failed.empty()) return "FAIL" + failed;
  if (checked == invariant_count) return "ok";
  return "ok (" + std::to_string(checked) + "/" + std::to_string(invariant_count) + " checked)";
}

const std::vector<std::string>& column_names() {
  static const std::vector<std::string> names{"policy",
                                              "safe",
                                              "ops/s",
                                              "vs immediate",
                                              "inv/freed table",
                                              "peak pending",
                                              "p99 retire->free",
                                              "violations",
                                              "invariants"};
  return names;
}

std::vector<std::string> row_cells(const run_result& r, const run_result* baseline) {
  std::string ratio = "-";
  if (baseline != nullptr && baseline->ops_per_s() > 0) {
    ratio = fixed(r.ops_per_s() / baseline->ops_per_s(), 2) + "x";
  }
  std::string violations = std::to_string(r.violations.count);
  if (!r.policy_safe && r.violations.count > 0) violations += " (canary)";
  if (r.policy_safe && !r.contract_broken.empty() && r.violations.count > 0)
    violations += " (contract)";
  return {r.policy,
          !r.policy_safe              ? "NO"
          : r.contract_broken.empty() ? "yes"
                                      : "contract",
          human_count(r.ops_per_s()),
          ratio,
          fixed(r.invalidations_per_freed_table(), 2),
          std::to_string(r.reclaim.peak_pending) + " / " + std::to_string(r.reclaim.pending_bound),
          human_ns(static_cast<double>(r.reclaim.retire_to_free_ns.percentile(0.99))),
          violations,
          invariants_cell(r)};
}

// Lazy DMA's figures, one row per run; "" unless some run was lazy DMA or saw an exposure.
std::string dma_table(const std::vector<run_result>& runs) {
  bool any = false;
  for (const auto& r : runs)
    any = any || (r.dma.measured && (r.dma.lazy || r.dma.exposures != 0));
  if (!any) return {};
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs) {
    if (!r.dma.measured) continue;
    rows.push_back({r.policy, fixed(r.dma.invalidations_per_kpacket(r.invalidations.flushes), 2),
                    std::to_string(r.dma.peak_deferred), std::to_string(r.dma.exposures),
                    human_ns(static_cast<double>(r.dma.longest_exposure_ns)),
                    std::to_string(r.dma.iova_exhausted)});
  }
  return "\nDMA " + std::string(runs.front().dma.lazy ? "(lazy)" : "(strict)") + "\n\n" +
         text_table({"policy", "inv/1000 packets", "peak deferred IOVAs", "exposures",
                     "longest exposure", "dropped (no IOVA)"},
                    rows);
}

std::string text_table(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c)
    width[c] = header[c].size();
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], row[c].size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - cell.size(), ' ');
      if (c > 0) out += "  ";
      out += c == 0 ? cell + pad : pad + cell;
    }
    while (!out.empty() && out.back() == ' ')
      out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  std::size_t total = 0;
  for (std::size_t w : width)
    total += w;
  out += std::string(total + 2 * (width.size() - 1), '-') + "\n";
  for (const auto& row : rows)
    out += line(row);
  return out;
}

}  // namespace detail

namespace {

std::string run_heading(const std::string& what, const std::string& scenario,
                        const std::string& executor, unsigned cpus, std::uint64_t seed,
                        const std::string& time_base) {
  std::string h = what + " " + scenario + "  executor " + executor;
  if (cpus != 0) h += "  cpus " + std::to_string(cpus);
  h += "  seed " + std::to_string(seed);
  if (!time_base.empty()) h += "  (" + time_base + " time)";
  return h + "\n\n";
}

// "stopped early by SIGINT: 2 runs done, the last of them incomplete\n" or "".
template <class R>
std::string stopped_line(const R& r) {
  if (r.complete) return {};
  std::string out = "stopped early by " + r.interrupted_by + ": " + std::to_string(r.runs.size()) +
                    (r.runs.size() == 1 ? " run" : " runs") + " done";
  if (!r.runs.empty() && !r.runs.back().complete) out += ", the last of them incomplete";
  return out + "\n";
}

}  // namespace

std::string format_table(const compare_result& r) {
  const run_result* baseline = r.find("immediate");
  std::vector<std::vector<std::string>> rows;
  bool canary = false;
  std::string contract;
  for (const auto& run : r.runs) {
    rows.push_back(detail::row_cells(run, baseline));
    if (!run.policy_safe) canary = true;
    if (run.policy_safe && !run.contract_broken.empty())
      contract += "\nsafe = contract: " + run.policy + " is unsafe here by contract: it " +
                  run.contract_broken + ";\nits violations are expected, not a bug.\n";
  }
  std::string out = run_heading("compare", r.scenario, r.executor, r.cpus, r.seed,
                                r.runs.empty() ? "" : r.runs.front().time_base);
  out += detail::text_table(detail::column_names(), rows);
  if (canary) {
    out +=
        "\nsafe = NO marks the unsafe baselines (canaries): violations there are expected and\n"
        "show that the checker works; a safe policy with a violation is a bug.\n";
  }
  out += contract;
  out += detail::dma_table(r.runs);
  for (const auto& run : r.runs) {
    if (run.violations.count > 0 && !run.violations.replay_command.empty()) {
      // "replay immediate: CMD" (or "rerun ..." for a threaded run).
      const std::string t = detail::replay_text(run.violations);
      const auto colon = t.find(':');
      out += t.substr(0, colon) + " " + run.policy + t.substr(colon) + "\n";
    }
  }
  return out + stopped_line(r);
}

std::string format_run(const run_result& r) {
  using detail::fixed;
  using detail::human_count;
  using detail::human_ns;
  std::string out = run_heading("run", r.scenario, r.executor, r.cpus, r.seed, r.time_base);
  out += detail::text_table(detail::column_names(), {detail::row_cells(r, nullptr)});
  const auto& h = r.reclaim.retire_to_free_ns;
  auto kv = [&out](const std::string& k, const std::string& v) {
    out += "  " + k + std::string(k.size() < 26 ? 26 - k.size() : 1, ' ') + v + "\n";
  };
  out += "\n";
  kv("operations", std::to_string(r.operations) + " in " +
                       human_ns(static_cast<double>(r.elapsed_ns)) + " (" +
                       human_count(r.ops_per_s()) + " ops/s)");
  kv("wall time", fixed(r.wall_time_s, 2) + " s");
  if (r.time_base == "virtual" && !r.cost_source.empty()) kv("cost model", r.cost_source);
  kv("device translations",
     std::to_string(r.devices.translations) + " (" + std::to_string(r.devices.faults) + " faults)");
  kv("IOTLB hit rate", fixed(100.0 * r.devices.iotlb_hit_rate(), 1) + " %");
  kv("PSC hit rate", fixed(100.0 * r.devices.psc_hit_rate(), 1) + " %");
  kv("invalidations", std::to_string(r.invalidations.flushes) + " flushes (" +
                          std::to_string(r.invalidations.caller_flushes) + " by callers, " +
                          std::to_string(r.invalidations.backpressure_flushes) +
                          " back-pressure), " + std::to_string(r.invalidations.descriptors) +
                          " descriptors");
  kv("busiest IOMMU queue", fixed(100.0 * r.invalidations.busiest_queue, 0) +
                                " % busy (its descriptors' modelled latency over the run)");
  kv("IOMMU queue locks",
     "busiest held " + fixed(100.0 * r.invalidations.busiest_queue_lock, 0) + " % of the run; " +
         std::to_string(r.invalidations.queue_lock_acquisitions) + " acquisitions, mean wait " +
         human_ns(r.invalidations.queue_lock_mean_wait_ns()) + ", max " +
         human_ns(static_cast<double>(r.invalidations.queue_lock_max_wait_ns)));
  kv("tables released / freed",
     std::to_string(r.reclaim.tables_released) + " / " + std::to_string(r.reclaim.tables_freed));
  kv("pending frames", "peak " + std::to_string(r.reclaim.peak_pending) + " of bound " +
                           std::to_string(r.reclaim.pending_bound) + ", " +
                           std::to_string(r.reclaim.pending_at_end) + " at stop, drained in " +
                           human_ns(static_cast<double>(r.reclaim.drain_ns)));
  kv("retire->free latency", "p50 " + human_ns(static_cast<double>(h.percentile(0.5))) + ", p99 " +
                                 human_ns(static_cast<double>(h.percentile(0.99))) + ", max " +
                                 human_ns(static_cast<double>(h.max())) + " (" +
                                 std::to_string(h.count()) + " frees)");
  if (r.superpages.tables_coalesced + r.superpages.splits > 0) {
    kv("superpages", std::to_string(r.superpages.coalesced_2m) + " 2M and " +
                         std::to_string(r.superpages.coalesced_1g) + " 1G coalesced by fills, " +
                         std::to_string(r.superpages.tables_coalesced) + " tables coalesced, " +
                         std::to_string(r.superpages.splits) + " splits");
  }
  if (r.hotplug.offlines + r.hotplug.onlines + r.hotplug.failed_offlines > 0) {
    kv("hotplug", std::to_string(r.hotplug.offlines) + " offline, " +
                      std::to_string(r.hotplug.onlines) + " online, " +
                      std::to_string(r.hotplug.failed_offlines) + " failed offline, " +
                      std::to_string(r.hotplug.deferred_offlines) + " deferred, " +
                      std::to_string(r.hotplug.frames_migrated) + " frames migrated");
  }
  for (const auto& [k, v] : detail::fault_lines(r.faults))
    kv(k, v);
  kv("leak check", !r.leaks.checked ? "not run"
                                    : (r.leaks.leaked_frames == 0 && r.leaks.ledger_violations == 0
                                           ? "pool whole"
                                           : std::to_string(r.leaks.leaked_frames) + " leaked, " +
                                                 std::to_string(r.leaks.ledger_violations) +
                                                 " ledger violations"));
  char hash[32];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(r.trace_hash));
  if (r.dma.measured) {
    kv("DMA", std::string(r.dma.lazy ? "lazy" : "strict") + ", " + std::to_string(r.dma.packets) +
                  " packets, " +
                  fixed(r.dma.invalidations_per_kpacket(r.invalidations.flushes), 2) +
                  " invalidations / 1000 packets");
    if (r.dma.lazy)
      kv("deferred IOVAs", std::to_string(r.dma.iovas_deferred) + " (" +
                               std::to_string(r.dma.iovas_returned) + " given back, " +
                               std::to_string(r.dma.returned_early) + " early), peak " +
                               std::to_string(r.dma.peak_deferred) + ", " +
                               std::to_string(r.dma.iova_exhausted) + " packets dropped");
    kv("exposure",
       std::to_string(r.dma.exposures) + " translations reached an unmapped buffer, longest " +
           human_ns(static_cast<double>(r.dma.longest_exposure_ns)) + " after its unmap");
  }
  kv("trace hash", r.trace_hash != 0 ? hash : "not computed");
  out += "\ninvariants\n";
  for (std::size_t i = 0; i < invariant_count; ++i) {
    const auto& v = r.invariants[i];
    const std::string status = !v.checked ? "n/a " : (v.held ? "ok  " : "FAIL");
    out +=
        "  " + std::string(invariant_name(static_cast<invariant>(i))) + "  " + status + "  " +
        (v.reason.empty() ? std::string(invariant_summary(static_cast<invariant>(i))) : v.reason) +
        "\n";
  }
  if (r.violations.count > 0) {
    out += "\nfirst violation (of " + std::to_string(r.violations.count) + ")\n";
    std::string text = r.violations.first;
    std::size_t start = 0;
    while (start < text.size()) {
      auto end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      out += "  " + text.substr(start, end - start) + "\n";
      start = end + 1;
    }
    if (!r.violations.replay_command.empty()) out += detail::replay_text(r.violations) + "\n";
    const std::string story = detail::story_command(r);
    if (!r.story && !story.empty() && r.violations.first_frame) {
      out += "story of frame " + std::to_string(*r.violations.first_frame) + ": " + story +
             "   (or add --frame " + std::to_string(*r.violations.first_frame) + ")\n";
    }
  }
  if (!r.leaks.report.empty()) out += "\nleak report\n" + r.leaks.report + "\n";
  for (const auto& n : r.notes)
    out += "note: " + n + "\n";
  if (r.story) out += "\n" + format_story(*r.story);
  return out;
}

namespace {
// `text` broken into lines of at most `width` characters at spaces, every line after the first
// indented by `indent` spaces.
std::string wrap(const std::string& text, std::size_t width, std::size_t indent) {
  std::string out, line;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    start = end + 1;
  }
  return out + line;
}
}  // namespace

std::string format_story(const frame_story& s) {
  std::string out = "story of frame " + std::to_string(s.frame) + " (" + s.focus +
                    "): " + std::to_string(s.lifetimes) +
                    (s.lifetimes == 1 ? " lifetime" : " lifetimes") + " in the run";
  if (s.lifetimes > 0) out += ", " + std::to_string(s.lifetimes_shown) + " shown";
  out +=
      ".\nIn the order things happened; times are virtual, and each CPU, device and IOMMU "
      "keeps its own\nclock (they may differ by up to one step of the executor).\n\n";
  out += "   time (us)  where     what\n";
  for (const frame_event& e : s.events) {
    char t[32];
    std::snprintf(t, sizeof t, "%12.3f", static_cast<double>(e.time_ns) / 1000.0);
    std::string where = e.device >= 0  ? "device " + std::to_string(e.device)
                        : e.iommu >= 0 ? "IOMMU " + std::to_string(e.iommu)
                        : e.cpu >= 0   ? "CPU " + std::to_string(e.cpu)
                                       : "-";
    where.resize(std::max<std::size_t>(where.size(), 9), ' ');
    std::string what = e.text.rfind(e.kind, 0) == 0 ? e.text : e.kind + ": " + e.text;
    out += std::string(t) + "  " + where + " " + wrap(what, 88, 25) + "\n";
  }
  out += "\nwhy: " + wrap(s.conclusion, 95, 5) + "\n";
  return out;
}

std::string format_scale_table(const scale_result& r) {
  std::vector<std::string> header{"policy"};
  for (unsigned c : r.cpu_counts)
    header.push_back(std::to_string(c) + (c == 1 ? " cpu" : " cpus"));
  header.push_back("speed-up");
  std::vector<std::vector<std::string>> rows, lock_rows;
  std::vector<std::string> failures;
  for (std::size_t p = 0; p < r.policies.size(); ++p) {
    std::vector<std::string> row{r.policies[p]};
    std::vector<std::string>& lock_row = lock_rows.emplace_back(1, r.policies[p]);
    for (std::size_t c = 0; c < r.cpu_counts.size(); ++c) {
      const run_result* run = r.at(p, c);
      lock_row.push_back(
          run == nullptr ? "-"
                         : detail::fixed(100.0 * run->invalidations.busiest_queue_lock, 0) + "% " +
                               detail::human_ns(run->invalidations.queue_lock_mean_wait_ns()));
    }
    double first = 0;
    double last = 0;
    for (std::size_t c = 0; c < r.cpu_counts.size(); ++c) {
      const run_result* run = r.at(p, c);
      if (run == nullptr) {
        row.emplace_back("-");
        continue;
      }
      // A run cut short says "stopped": its throughput would not compare with the others.
      std::string cell = run->complete ? detail::human_count(run->ops_per_s()) : "stopped";
      if (!run->all_held()) {
        cell += "!";
        failures.push_back(run->policy + " @ " + std::to_string(run->cpus) +
                           " cpus: " + detail::invariants_cell(*run));
      }
      if (!run->complete) {
        row.push_back(cell);
        continue;
      }
      row.push_back(cell);
      if (c == 0) first = run->ops_per_s();
      last = run->ops_per_s();
    }
    row.push_back(first > 0 ? detail::fixed(last / first, 2) + "x" : "-");
    rows.push_back(std::move(row));
  }
  std::string out = run_heading("scale", r.scenario, r.executor, 0, r.seed,
                                r.runs.empty() ? "" : r.runs.front().time_base);
  out += "operations per second by policy and simulated CPU count\n\n";
  out += detail::text_table(header, rows);
  out += "\nthe busiest IOMMU queue lock: % of the run held, mean wait per acquisition\n\n";
  header.pop_back();
  out += detail::text_table(header, lock_rows);
  if (!failures.empty()) {
    out += "\n! = an invariant failed:\n";
    for (const auto& f : failures)
      out += "  " + f + "\n";
  }
  out += detail::scale_findings(r);
  return out + stopped_line(r);
}

}  // namespace ptreclaim::sim
