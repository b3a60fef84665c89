// The two inline policies: the cost floor and the slow-but-safe baseline.
#include "../policies.hpp"
#include "../policy_base.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

// Frees at once, before any invalidation: unsafe on purpose (the floor, and a canary that the
// IOMMU model must catch).
class immediate_policy final : public policy_base {
 public:
  using policy_base::policy_base;
  void retire(domain_number d, const pt::gather& g) override {
    // Admitted like every policy's frames, so even this one keeps S5 (S3 is what it breaks).
    if (retire_inline(d, g, env_.rt.current_cpu(), "immediate", std::nullopt, [] {}))
      ++counters().backpressure;
  }
  // Lazy DMA: the IOVA goes back at once, before anyone invalidated (S6 catches it), and the
  // frames are freed at once as in retire().
  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    note_deferred_iova(iova);
    retire(d, g);
    return_iova(d, iova);
  }
  Status drain() override { return {}; }
  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::immediate; }
};

// Invalidates the gather's range (non-leaf when tables were released), waits, frees inline.
class sync_policy final : public policy_base {
 public:
  // One shared count: sync holds frames only for the length of a retire, so a per-CPU share
  // would only split large gathers into more invalidations; a CAS is cheap beside the wait.
  sync_policy(const reclaim_env& env, const reclaim_config& config)
      : policy_base(env, config, bound_scope::global) {}
  void retire(domain_number d, const pt::gather& g) override {
    // One chunk (one invalidation) unless the gather exceeds max_pending.
    if (retire_inline(d, g, env_.rt.current_cpu(), "sync", invalidation_range::of(g), [] {}))
      ++counters().backpressure;
  }
  // Lazy mode made strict, as dma-iommu without a flush queue (__iommu_dma_unmap: iommu_unmap,
  // iommu_iotlb_sync, then free_iova_fast): the range is invalidated (non-leaf when tables were
  // released, leaf otherwise) and waited for, then the frames and the IOVA go back.
  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    note_deferred_iova(iova);
    invalidation_range inv = covering(g, iova);
    if (!g.released().empty()) {
      if (retire_inline(d, g, env_.rt.current_cpu(), "sync", inv, [] {})) ++counters().backpressure;
    } else if (!g.empty() || !iova.empty()) {
      inv.nonleaf = g.nonleaf_changed();
      invalidate_and_wait(d, inv);
    }
    return_iova(d, iova);
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
