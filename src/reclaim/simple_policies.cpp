// The two inline policies: the cost floor and the slow-but-safe baseline.
#include "policies.hpp"
#include "policy_base.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

// Frees at once, before any invalidation: unsafe on purpose (the floor, and a canary that the
// IOMMU model must catch).
class immediate_policy final : public policy_base {
 public:
  using policy_base::policy_base;
  void retire(domain_number d, const pt::gather& g) override {
    const unsigned cpu = env_.rt.current_cpu();
    account_retire(d, g, cpu);
    free_gather(g, "immediate", cpu);
  }
  Status drain() override { return {}; }
  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::immediate; }
};

// Invalidates the gather's range (non-leaf when tables were released), waits, frees inline.
class sync_policy final : public policy_base {
 public:
  using policy_base::policy_base;
  void retire(domain_number d, const pt::gather& g) override {
    const unsigned cpu = env_.rt.current_cpu();
    if (account_retire(d, g, cpu) == 0) return;
    invalidate_and_wait(d, invalidation_range::of(g));
    free_gather(g, "sync", cpu);
  }
  Status drain() override { return {}; }
  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::sync; }
};

}  // namespace

std::unique_ptr<reclaimer> make_immediate(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<immediate_policy>(env, config);
}
std::unique_ptr<reclaimer> make_sync(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<sync_policy>(env, config);
}

}  // namespace ptreclaim::reclaim::detail
