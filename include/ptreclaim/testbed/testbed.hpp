// One machine for a reclamation policy to stand on, wired the same way wherever a policy is
// checked: the executor (deterministic or threaded), the frame pool on it, the IOMMU units, the
// safety monitor between the policy and the invalidation backend, the domains (a page table and
// the IOMMU model's view of it, the table reporting its unlinks to the monitor), and the policy.
// The simulator's engine builds its machine from it, and so do the reclamation tests, so both
// check a policy against one wiring and one checker.
//
// Construction order is the order things depend on each other: executor, pool (charges the
// executor), system and its units, backend, monitor (the system's descriptor observer), domains
// (after the monitor: they report unlinks to it), then the policy (install_policy, after the
// caller has registered any CPU notifier that must see hotplug events before the policy does).
// Destruction runs it backwards, with the executor's pending work discarded first, so no
// policy callback runs on a half-destroyed machine.
//
// Thread-safety: build on one thread before the executor runs; the accessors are plain
// references, used from CPU contexts as each component documents.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ptreclaim/base/histogram.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/reclaim/iommu_backend.hpp"
#include "ptreclaim/reclaim/policy.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"
#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::testbed {

enum class executor_kind : std::uint8_t { deterministic, threaded };

// The executor of `kind` for `rc`.
[[nodiscard]] std::unique_ptr<runtime::executor> make_executor(executor_kind kind,
                                                               const runtime::run_config& rc);

struct config {
  executor_kind executor = executor_kind::deterministic;
  runtime::run_config run;  // cpus, seed, costs, limits
  mem::pool_config pool;    // caches: one per CPU is the usual choice
  iommu::system_config system;
  std::vector<iommu::unit_config> units;  // one per IOMMU unit (at least one)
  std::uint64_t max_pending = 0;          // the monitor's S5 bound
  // Listeners that hear every unlink the tables report and every descriptor the units process
  // (with its times), after the safety monitor did: a recorder of timelines (sim's trace and
  // frame story). nullptr (the default): nothing is forwarded and nothing is paid.
  pt::unlink_observer* unlink_tap = nullptr;
  iommu::inv_observer* inv_tap = nullptr;
};

// A domain: its page table and the IOMMU model's view of it (one did on every unit).
struct domain {
  std::uint16_t id = 0;
  std::unique_ptr<pt::table> table;
  iommu::domain* dom = nullptr;
};

struct domain_spec {
  std::uint16_t id = 0;  // also its did on every unit; unique, non-zero
  pt::format_kind format = pt::format_kind::vtd_ss_4;
  pt::concurrency_mode mode = pt::concurrency_mode::locked;
  bool coalesce = true;
  std::uint32_t leaf_levels = pt::domain_config{}.leaf_levels;  // narrowed by the format
};

// The policy's observer: the safety monitor, exact retire-to-free latencies (per freeing CPU,
// merged on demand), then, if set, an observer of the user's own.
class observer final : public reclaim::reclaim_observer {
 public:
  observer(reclaim::safety_monitor& mon, runtime::executor& ex, mem::frame_pool& pool);
  void set_extra(reclaim::reclaim_observer* o) noexcept { extra_ = o; }
  void on_retire(reclaim::domain_number d, mem::frame_id f,
                 const reclaim::invalidation_range& need) override;
  void on_free(mem::frame_id f, const char* path) override;
  void on_invariant_violation(const std::string& what) override;
  // Every freeing CPU's latencies in one histogram. Read when no CPU frees.
  [[nodiscard]] log_histogram merged() const;

 private:
  struct slot {
    log_histogram h;
  };
  reclaim::safety_monitor& mon_;
  runtime::executor& ex_;
  mem::frame_pool& pool_;
  runtime::per_cpu<slot> lat_;
  reclaim::reclaim_observer* extra_ = nullptr;
};

class testbed {
 public:
  // Executor, pool, units, backend and monitor. invalid_argument if `c` has no unit.
  static Result<std::unique_ptr<testbed>> create(const config& c);
  ~testbed();
  testbed(const testbed&) = delete;
  testbed& operator=(const testbed&) = delete;

  // Builds the domain's table (its leaf levels: the spec's, narrowed by the format) and
  // registers it with the IOMMU model. Errors: the table's or create_domain's.
  Result<domain*> add_domain(const domain_spec& spec);
  // The policy, observed by the monitor (and the observer's extra). Once.
  Status install_policy(reclaim::policy_kind kind, const reclaim::reclaim_config& rc);

  [[nodiscard]] runtime::executor& ex() noexcept { return *ex_; }
  [[nodiscard]] mem::frame_pool& pool() noexcept { return *pool_; }
  [[nodiscard]] const mem::frame_pool& pool() const noexcept { return *pool_; }
  [[nodiscard]] iommu::system& sys() noexcept { return *sys_; }
  [[nodiscard]] reclaim::safety_monitor& monitor() noexcept { return *monitor_; }
  [[nodiscard]] observer& obs() noexcept { return *observer_; }
  // Precondition: install_policy succeeded.
  [[nodiscard]] reclaim::reclaimer& policy() noexcept { return *policy_; }
  [[nodiscard]] bool has_policy() const noexcept { return policy_ != nullptr; }
  [[nodiscard]] std::vector<std::unique_ptr<domain>>& domains() noexcept { return domains_; }

 private:
  testbed() = default;
  class tap;  // the monitor, then config::unlink_tap / inv_tap

  std::unique_ptr<runtime::executor> ex_;
  std::unique_ptr<mem::frame_pool> pool_;
  std::unique_ptr<iommu::system> sys_;
  std::unique_ptr<reclaim::iommu_backend> backend_;
  std::unique_ptr<reclaim::safety_monitor> monitor_;
  std::unique_ptr<tap> tap_;  // only with a config tap
  std::unique_ptr<observer> observer_;
  std::vector<std::unique_ptr<domain>> domains_;
  std::unique_ptr<reclaim::reclaimer> policy_;
};

}  // namespace ptreclaim::testbed
