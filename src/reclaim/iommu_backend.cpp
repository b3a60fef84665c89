#include "ptreclaim/reclaim/iommu_backend.hpp"

namespace ptreclaim::reclaim {

iommu::domain& iommu_backend::dom(domain_number d) const noexcept {
  iommu::domain* p = sys_.find_domain(d);
  PTR_ASSERT_MSG(p != nullptr, "the reclaim backend was asked about an unknown domain");
  return *p;
}

Result<epoch_t> iommu_backend::invalidate(domain_number d, const invalidation_range& range) {
  iommu::domain* p = sys_.find_domain(d);
  if (p == nullptr) return Status(errc::invalid_argument, "unknown domain " + std::to_string(d));
  Result<iommu::ticket> t = sys_.invalidate(*p, {range.first, range.last, range.nonleaf});
  if (!t.ok()) return t.status();
  return t->epoch;
}

Result<epoch_t> iommu_backend::invalidate_sync(domain_number d, const invalidation_range& range,
                                               std::uint64_t timeout_ns) {
  iommu::domain* p = sys_.find_domain(d);
  if (p == nullptr) return Status(errc::invalid_argument, "unknown domain " + std::to_string(d));
  return sys_.flush_sync_epoch(*p, {range.first, range.last, range.nonleaf}, timeout_ns);
}

epoch_t iommu_backend::stamp(domain_number d) noexcept {
  return dom(d).flush_stamp();
}

epoch_t iommu_backend::completed(domain_number d) noexcept {
  sys_.plat().charge(cost_kind::inv_poll);
  return sys_.poll_domain(dom(d));
}

epoch_t iommu_backend::completed_full(domain_number d) noexcept {
  iommu::domain& x = dom(d);
  sys_.poll_domain(x);
  return x.flush_completed_full();
}

bool iommu_backend::wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) {
  return sys_.wait_epoch(dom(d), e, timeout_ns).ok();
}

}  // namespace ptreclaim::reclaim
