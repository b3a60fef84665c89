// The scale command's findings under its throughput table: invalidations per 1,000 packets (DMA
// scenarios), the parallel efficiency of each policy with the CPU count where its curve bends,
// and what the lost time went to (the deterministic executor's contention figures).
#include <algorithm>
#include <string>
#include <vector>

#include "ptreclaim/report/report.hpp"
#include "report_format.hpp"

namespace ptreclaim::sim::detail {
namespace {

// The efficiency below which a curve is said to bend: 10 % of linear scaling lost.
constexpr double bend_efficiency = 0.9;
// Shared objects named per policy in the "what the time went to" lines.
constexpr std::size_t top_objects = 3;

std::string cpus_label(unsigned c) {
  return std::to_string(c) + (c == 1 ? " cpu" : " cpus");
}

std::string percent(double share) {
  return fixed(100.0 * share, 1) + "%";
}

// A complete run's share of CPU time lost to the object named `name` ("" = spinning in waits).
double share_of(const run_result& r, const std::string& name, bool lock) {
  if (name.empty()) return r.cpu_share(r.cpu_wait_ns);
  for (const contention_figure& c : r.contention)
    if (c.name == name && c.lock == lock) return r.cpu_share(c.delay_ns);
  return 0.0;
}

}  // namespace

std::string scale_findings(const scale_result& r) {
  if (r.cpu_counts.size() < 2) return "";
  std::string out;
  const std::size_t last = r.cpu_counts.size() - 1;

  bool dma = false;
  for (const run_result& run : r.runs)
    dma = dma || run.dma.measured;
  if (dma) {
    std::vector<std::string> header{"policy"};
    for (unsigned c : r.cpu_counts)
      header.push_back(cpus_label(c));
    std::vector<std::vector<std::string>> rows;
    for (std::size_t p = 0; p < r.policies.size(); ++p) {
      std::vector<std::string> row{r.policies[p]};
      for (std::size_t c = 0; c < r.cpu_counts.size(); ++c) {
        const run_result* run = r.at(p, c);
        row.push_back(run != nullptr && run->dma.measured
                          ? fixed(run->dma.invalidations_per_kpacket(run->invalidations.flushes), 2)
                          : "-");
      }
      rows.push_back(std::move(row));
    }
    out += "\ninvalidate-and-wait rounds per 1,000 packets\n\n" + text_table(header, rows);
  }

  // Efficiency: the speed-up from the first CPU count over the ideal one.
  std::vector<std::string> header{"policy"};
  for (unsigned c : r.cpu_counts)
    header.push_back(cpus_label(c));
  header.push_back("bends at");
  std::vector<std::vector<std::string>> rows;
  std::string lost;
  const unsigned c0 = r.cpu_counts.front();
  for (std::size_t p = 0; p < r.policies.size(); ++p) {
    const run_result* first = r.at(p, 0);
    std::vector<std::string> row{r.policies[p]};
    std::string bend = "-";
    for (std::size_t c = 0; c < r.cpu_counts.size(); ++c) {
      const run_result* run = r.at(p, c);
      if (first == nullptr || run == nullptr || !first->complete || !run->complete ||
          first->ops_per_s() <= 0) {
        row.emplace_back("-");
        continue;
      }
      const double eff = run->ops_per_s() / first->ops_per_s() /
                         (static_cast<double>(r.cpu_counts[c]) / static_cast<double>(c0));
      row.push_back(fixed(eff, 2));
      if (bend == "-" && eff < bend_efficiency) bend = cpus_label(r.cpu_counts[c]);
    }
    row.push_back(bend);
    rows.push_back(std::move(row));

    // What the lost time went to at the largest count, against the first count.
    const run_result* big = r.at(p, last);
    if (first == nullptr || big == nullptr || big->executor != "deterministic") continue;
    struct item {
      std::string name;
      bool lock;
      double share;
    };
    std::vector<item> items{{"", false, big->cpu_share(big->cpu_wait_ns)}};
    for (const contention_figure& c : big->contention)
      items.push_back({c.name, c.lock, big->cpu_share(c.delay_ns)});
    std::stable_sort(items.begin(), items.end(),
                     [](const item& a, const item& b) { return a.share > b.share; });
    lost += "  " + r.policies[p] + ":";
    for (std::size_t i = 0; i < items.size() && i < top_objects; ++i) {
      const item& it = items[i];
      lost += std::string(i == 0 ? " " : "; ") +
              (it.name.empty() ? "spinning in waits (invalidations, flushes)"
               : it.lock       ? it.name
                               : it.name + " (line)") +
              " " + percent(it.share) + " (" + percent(share_of(*first, it.name, it.lock)) +
              " at " + cpus_label(c0) + ")";
    }
    lost += "\n";
  }
  out += "\nparallel efficiency (speed-up from " + cpus_label(c0) +
         " over the ideal; a curve bends where it first drops below " + fixed(bend_efficiency, 2) +
         ")\n\n" + text_table(header, rows);
  if (!lost.empty())
    out += "\nwhere CPU time went at " + cpus_label(r.cpu_counts[last]) +
           " (share of elapsed x CPUs, virtual time; the largest three):\n" + lost;
  return out;
}

}  // namespace ptreclaim::sim::detail
