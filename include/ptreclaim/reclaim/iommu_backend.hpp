// The invalidation backend on the IOMMU model (iommu::system): domain numbers are the model's
// software domain ids, epochs are the domains' flush epochs, and every invalidation goes through
// the model's flush helper (PSI with the smallest covering AM or DSI, IH=0 when non-leaf, a wait
// descriptor, on every unit the domain is attached to).
#pragma once

#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/reclaim/backend.hpp"

namespace ptreclaim::reclaim {

class iommu_backend final : public invalidation_backend {
 public:
  explicit iommu_backend(iommu::system& sys) : sys_(sys) {}

  [[nodiscard]] Result<epoch_t> invalidate(domain_number d,
                                           const invalidation_range& range) override;
  [[nodiscard]] epoch_t stamp(domain_number d) noexcept override;
  [[nodiscard]] epoch_t completed(domain_number d) noexcept override;
  [[nodiscard]] epoch_t completed_full(domain_number d) noexcept override;
  [[nodiscard]] epoch_t completed_seen(domain_number d) noexcept override {
    return dom(d).flush_completed();
  }
  [[nodiscard]] epoch_t completed_full_seen(domain_number d) noexcept override {
    return dom(d).flush_completed_full();
  }
  [[nodiscard]] bool wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) override;
  [[nodiscard]] bool flush_busy(domain_number d) noexcept override {
    return sys_.flush_busy(dom(d));
  }
  [[nodiscard]] Result<epoch_t> invalidate_sync(domain_number d, const invalidation_range& range,
                                                std::uint64_t timeout_ns) override;

  [[nodiscard]] iommu::system& system() noexcept { return sys_; }

 private:
  [[nodiscard]] iommu::domain& dom(domain_number d) const noexcept;
  iommu::system& sys_;
};

}  // namespace ptreclaim::reclaim
