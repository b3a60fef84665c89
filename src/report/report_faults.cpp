#include "report/report_faults.hpp"

#include "report/report_format.hpp"

namespace ptreclaim::sim::detail {

std::vector<std::pair<std::string, std::string>> fault_lines(const fault_metrics& f) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!f.enabled) return out;
  auto n = [](std::uint64_t v) { return std::to_string(v); };
  out.emplace_back("queue errors", n(f.ite) + " ITE, " + n(f.iqe) + " IQE; " +
                                       n(f.descriptors_aborted) + " descriptors aborted, " +
                                       n(f.resubmissions) + " groups resubmitted");
  out.emplace_back("queue delays", n(f.stalls) + " stalls (" +
                                       human_ns(static_cast<double>(f.stall_ns)) + "), " +
                                       n(f.slow_waits) + " slow waits (+" +
                                       human_ns(static_cast<double>(f.slow_wait_ns)) + ")");
  out.emplace_back("allocation faults", n(f.alloc_failures) + " table allocations failed, " +
                                            n(f.mutation_errors) + " mutations failed");
  if (f.devices_through_teardown) {
    out.emplace_back("devices in teardown",
                     n(f.teardown_translations) + " translations after they would have stopped, " +
                         n(f.detached_contexts) + " context entries cleared first");
  }
  return out;
}

nlohmann::json fault_json(const fault_metrics& f) {
  return {{"enabled", f.enabled},
          {"ite", f.ite},
          {"iqe", f.iqe},
          {"descriptors_aborted", f.descriptors_aborted},
          {"resubmissions", f.resubmissions},
          {"stalls", f.stalls},
          {"stall_ns", f.stall_ns},
          {"slow_waits", f.slow_waits},
          {"slow_wait_ns", f.slow_wait_ns},
          {"alloc_failures", f.alloc_failures},
          {"mutation_errors", f.mutation_errors},
          {"devices_through_teardown", f.devices_through_teardown},
          {"teardown_translations", f.teardown_translations},
          {"detached_contexts", f.detached_contexts}};
}

}  // namespace ptreclaim::sim::detail
