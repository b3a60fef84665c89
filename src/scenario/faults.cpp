// The [faults] section: every key, its range, and the bound that keeps every invalidation
// finite under the queue faults.
#include "scenario/faults.hpp"

#include <algorithm>
#include <string>

namespace ptreclaim::sim::detail {

namespace {
constexpr std::uint64_t max_fault_ns = 10'000'000;  // 10 ms: each delay a fault may add
}  // namespace

void read_faults(table_reader t, faults_params& f) {
  iommu::fault_config& q = f.queue;
  t.real("ite_probability", q.ite_probability, 0, iommu::max_abort_probability);
  t.uint("ite_timeout_ns", q.ite_timeout_ns, 0, max_fault_ns);
  t.real("iqe_probability", q.iqe_probability, 0, iommu::max_abort_probability);
  t.uint_as("max_aborts_in_a_row", q.max_aborts_in_a_row, 1, 64);
  t.real("stall_probability", q.stall_probability, 0, 1);
  t.uint("stall_ns", q.stall_ns, 0, max_fault_ns);
  t.real("slow_wait_probability", q.slow_wait_probability, 0, 1);
  t.uint("slow_wait_mean_ns", q.slow_wait_mean_ns, 0, max_fault_ns);
  t.uint("slow_wait_max_ns", q.slow_wait_max_ns, 0, max_fault_ns);
  t.real("alloc_fail_probability", f.alloc_fail_probability, 0, 1);
  t.boolean("devices_through_teardown", f.devices_through_teardown);
  t.finish("[faults]");
}

std::uint64_t worst_invalidation_ns(const scenario& s) {
  const iommu::fault_config& q = s.faults.queue;
  if (!q.enabled()) return 0;
  const iommu::latency_config& l = s.iommu.unit.latency;
  const std::uint64_t slowest =
      std::max({l.inv_page_ns, l.inv_domain_ns, l.inv_global_ns, l.inv_wait_ns, l.inv_devtlb_ns});
  // Each attempt waits behind at most a full queue of descriptors, each as slow as it can be,
  // and may first wait as long again for room to be resubmitted; the injector aborts at most
  // max_aborts_in_a_row attempts.
  const std::uint64_t per_attempt =
      2 * std::uint64_t{s.iommu.unit.queue_entries} * (slowest + q.max_extra_ns());
  return (std::uint64_t{q.max_aborts_in_a_row} + 1) * per_attempt;
}

Status validate_faults(const scenario& s) {
  const iommu::fault_config& q = s.faults.queue;
  if (q.slow_wait_probability > 0 && q.slow_wait_max_ns < q.slow_wait_mean_ns) {
    return Status(errc::invalid_argument,
                  "faults.slow_wait_max_ns: " + std::to_string(q.slow_wait_max_ns) +
                      " is below slow_wait_mean_ns (" + std::to_string(q.slow_wait_mean_ns) +
                      "): the truncation would hide the distribution");
  }
  const std::uint64_t one = worst_invalidation_ns(s);
  const std::uint64_t all = one * (std::uint64_t{s.domain_count()} + 1);
  if (all > invalidation_timeout_ns) {
    return Status(
        errc::invalid_argument,
        "faults: one invalidation could take up to " + std::to_string(one) +
            " ns under these faults ((max_aborts_in_a_row + 1) x 2 x iommu.queue_entries x the "
            "slowest descriptor with its stall and ITE timeout or slow wait), " +
            std::to_string(all) + " ns for domains + 1 in turn: beyond the simulator's " +
            std::to_string(invalidation_timeout_ns) +
            " ns invalidation timeout; lower stall_ns, ite_timeout_ns, slow_wait_max_ns or "
            "max_aborts_in_a_row");
  }
  return {};
}

}  // namespace ptreclaim::sim::detail
