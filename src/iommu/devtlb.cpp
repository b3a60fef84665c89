#include "ptreclaim/iommu/devtlb.hpp"

#include <mutex>

namespace ptreclaim::iommu {
namespace {

std::uint64_t key_hash(pasid_t pasid, std::uint64_t vpn, unsigned level) noexcept {
  return vpn * 0x9e3779b97f4a7c15ULL ^ (std::uint64_t{pasid} << 44) ^ (std::uint64_t{level} << 40);
}

bool overlaps(const devtlb_entry& e, iova_t first, iova_t last) noexcept {
  return e.first() <= last && first <= e.last();
}

}  // namespace

std::optional<devtlb_entry> devtlb::lookup(pasid_t pasid, iova_t iova, std::uint32_t levels) {
  std::lock_guard<spinlock> g(mu_);
  for (unsigned l = 1; l <= limits::max_levels; ++l) {
    if ((levels & (1u << l)) == 0) continue;
    const std::uint64_t vpn = iova >> pt::level_shift(l);
    const devtlb_entry* e = cache_.find(key_hash(pasid, vpn, l), [&](const devtlb_entry& x) {
      return x.pasid == pasid && x.level == l && x.vpn == vpn;
    });
    if (e != nullptr) {
      ++stats_.hits;
      return *e;
    }
  }
  ++stats_.misses;
  return std::nullopt;
}

std::uint64_t devtlb::generation() const {
  std::lock_guard<spinlock> g(mu_);
  return generation_;
}

void devtlb::fill(const devtlb_entry& e, std::uint64_t generation) {
  std::lock_guard<spinlock> g(mu_);
  if (generation != generation_) {
    ++stats_.fills_dropped;
    return;
  }
  ++stats_.fills;
  devtlb_entry x = e;
  x.owed = false;
  x.orphaned = false;
  cache_.insert(key_hash(x.pasid, x.vpn, x.level), x, [&](const devtlb_entry& y) {
    return y.pasid == x.pasid && y.level == x.level && y.vpn == x.vpn;
  });
}

unsigned devtlb::invalidate(iova_t first, iova_t last) {
  std::lock_guard<spinlock> g(mu_);
  ++generation_;
  ++stats_.invalidations;
  const unsigned n =
      cache_.drop_if([&](const devtlb_entry& e) { return overlaps(e, first, last); });
  stats_.dropped += n;
  return n;
}

void devtlb::mark_owed(hw_domain_id did, pasid_t pasid, iova_t first, iova_t last) {
  std::lock_guard<spinlock> g(mu_);
  // drop_if visits every valid entry: used here to mark, dropping none.
  cache_.drop_if([&](devtlb_entry& e) {
    if (e.did == did && e.pasid == pasid && overlaps(e, first, last)) {
      e.owed = true;
      any_owed_ = true;
    }
    return false;
  });
}

void devtlb::wait_completed() {
  std::lock_guard<spinlock> g(mu_);
  if (!any_owed_) return;
  any_owed_ = false;
  cache_.drop_if([](devtlb_entry& e) {
    if (e.owed) e.orphaned = true;
    return false;
  });
}

devtlb_stats devtlb::stats() const {
  std::lock_guard<spinlock> g(mu_);
  return stats_;
}

std::size_t devtlb::size() const {
  std::lock_guard<spinlock> g(mu_);
  return cache_.size();
}

}  // namespace ptreclaim::iommu
