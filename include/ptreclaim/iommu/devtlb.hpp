// A device's TLB (PCIe ATS): the translations the device got from its IOMMU, cached on the
// device and used without asking the IOMMU again. It holds finished translations only (never a
// table pointer), tagged by PASID, and only a device-TLB invalidation descriptor drops them
// (inv_type::devtlb), which the unit applies here when it processes it.
//
// The check. A device-TLB entry may legally be stale until the software's flush of its range
// completes; after that the device must not use it. When the unit applies a page-selective IOTLB
// invalidation (PSI or P_IOTLB, not widened to a whole PASID or domain: software asked for that
// block, and its device-TLB invalidation names the same) whose (did, PASID, block) covers an
// entry, the entry is marked owed: the flush has begun and must reach the device too. When a wait
// descriptor then completes on the unit, every entry still owed (no device-TLB invalidation dropped
// it) is orphaned: the flush is over and the entry survived it. A device that then uses an orphaned
// entry whose translation the page table no longer gives has used a stale translation: the
// device records a stale_devtlb violation.
//
// Fills race with invalidations as ATS translation completions do: a fill carries the
// invalidation generation read before its translation request; one that a device-TLB
// invalidation overtook is dropped (the PCIe rule that an invalidation completes only after
// the translations in flight are discarded).
//
// Thread-safety: every member may be called from any thread (one lock, on the real platform:
// a device-side cache, never a software lock the contention figures should show). Lock order:
// the unit's lock, then this one.
#pragma once

#include <cstdint>
#include <optional>

#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/iommu/cache.hpp"

namespace ptreclaim::iommu {

struct devtlb_entry {
  bool valid = false;
  bool owed = false;      // an IOTLB invalidation covered it; no device-TLB one yet
  bool orphaned = false;  // a wait completed while it was owed
  std::uint8_t level = 1;
  std::uint8_t perms = pt::perm_none;
  hw_domain_id did = 0;
  pasid_t pasid = no_pasid;
  std::uint64_t vpn = 0;  // iova >> level_shift(level)
  std::uint64_t phys_base = 0;

  [[nodiscard]] iova_t first() const noexcept { return vpn << pt::level_shift(level); }
  [[nodiscard]] iova_t last() const noexcept {
    return first() + ((std::uint64_t{1} << pt::level_shift(level)) - 1);
  }
};

struct devtlb_stats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t fills = 0;
  std::uint64_t fills_dropped = 0;  // overtaken by a device-TLB invalidation
  std::uint64_t invalidations = 0;  // device-TLB invalidation descriptors applied
  std::uint64_t dropped = 0;        // entries they dropped
};

class devtlb {
 public:
  explicit devtlb(const cache_config& c) : cache_(c) {}
  devtlb(const devtlb&) = delete;
  devtlb& operator=(const devtlb&) = delete;

  // The entry translating `iova` for `pasid`, of any level in `levels`.
  [[nodiscard]] std::optional<devtlb_entry> lookup(pasid_t pasid, iova_t iova,
                                                   std::uint32_t levels);
  // The invalidation generation to pass to fill(): read it before the translation request.
  [[nodiscard]] std::uint64_t generation() const;
  // Caches a successful translation unless a device-TLB invalidation came since `generation`.
  void fill(const devtlb_entry& e, std::uint64_t generation);
  // A device-TLB invalidation of [first, last], every PASID; returns the entries dropped.
  unsigned invalidate(iova_t first, iova_t last);
  // A page-selective IOTLB invalidation of (did, pasid) over [first, last] took effect on the
  // unit.
  void mark_owed(hw_domain_id did, pasid_t pasid, iova_t first, iova_t last);
  // A wait descriptor completed on the unit.
  void wait_completed();
  [[nodiscard]] devtlb_stats stats() const;
  [[nodiscard]] std::size_t size() const;

 private:
  mutable spinlock mu_;
  detail::set_assoc<devtlb_entry> cache_;
  std::uint64_t generation_ = 0;
  bool any_owed_ = false;
  devtlb_stats stats_;
};

}  // namespace ptreclaim::iommu
