// Violations: a device walk read a frame that is not a live page table of the walking domain
// (safety invariant S1). They are the model's verdict on the *software* (a missing or too-early
// invalidation, an early free), never a hardware fault: the walk goes on with whatever the
// memory held, exactly as hardware would, and the violation is recorded here.
//
// What counts (checked on every PTE read, against the ledger `pool.ident(frame)`):
//   free_frame          the frame is free (poisoned) - a hardware use-after-free;
//   data_frame          the frame holds data, not a table;
//   other_domain        a table (live or retired) of another domain;
//   wrong_level         a table of this domain at another level;
//   generation_changed  the frame was freed and reallocated since the paging-structure cache
//                       entry that led here was filled (its generation differs);
//   reused_via_stale    the walk went through a retired table and reached a frame that is live
//                       again: it was freed and reused (a retired table's children are retired
//                       with it, so a live child means reuse);
//   wild_frame          the entry read names a frame outside the pool (decoded poison);
//   reserved_bits       a present entry of a live table has bits set that the hardware
//                       reserves: the DMA faults (outcome::fault_invalid) and the software wrote
//                       a malformed entry (software markers in reserved rather than ignored
//                       bits, say). Checked only on frames that passed the checks above.
// What does NOT count: a *retired* table of the same domain, level and generation. That is the
// deferred-free window doing its job: the memory still holds the old table.
//
// Thread-safety: violation_log may be appended to and read from any thread concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/mem/frame.hpp"

namespace ptreclaim::iommu {

enum class violation_kind : std::uint8_t {
  free_frame,
  data_frame,
  other_domain,
  wrong_level,
  generation_changed,
  reused_via_stale,
  wild_frame,
  reserved_bits,
  // An IOTLB superpage entry that a page-selective invalidation of one of its pages left in
  // place (its address mask was below the page's order, VT-d §6.5.2.3) translated an address
  // the page table no longer maps that way: the software flushed, the hardware kept it.
  stale_superpage,
  // A device used its device-TLB (ATS) entry after a flush of its range completed on its IOMMU
  // without a device-TLB invalidation dropping it, and the page table no longer maps the address
  // so (devtlb.hpp): the flush left the device out.
  stale_devtlb,
};
[[nodiscard]] const char* violation_kind_name(violation_kind k) noexcept;

struct violation {
  violation_kind kind = violation_kind::free_frame;
  unsigned unit = 0;
  device_id device = 0;
  std::uint16_t domain = 0;  // software domain (ledger owner) of the walk
  hw_domain_id did = 0;
  iova_t iova = 0;
  mem::frame_id frame = mem::no_frame;
  unsigned level = 0;    // the table level the walk expected the frame to be
  bool via_psc = false;  // the frame came from a paging-structure cache entry
  bool has_expected_generation = false;
  std::uint32_t expected_generation = 0;  // PSC: generation when cached
  mem::frame_ident now{};                 // the ledger's view at the read
  std::uint64_t at_ns = 0;                // when the read happened
  std::uint64_t retired_ns = 0;           // meta.retired_ns (0: never retired)
  std::uint64_t freed_ns = 0;             // meta.freed_ns (0: never freed)
  const char* freed_by = nullptr;         // meta.freed_by
  std::uint16_t last_domain = 0;          // owner before the last free
  std::uint64_t reserved = 0;             // reserved_bits: the reserved bits that were set
  unsigned psi_am = 0;                    // stale_superpage: the too-small PSI's address mask
  pasid_t pasid = no_pasid;               // stale_devtlb: the PASID of the entry

  // One line: "S1 violation: unit 0 device 3 (domain 1, did 7) iova 0x200000 read frame 42 as
  // level-1 table via PSC: free (gen 5, cached gen 4), retired at 1200 ns, freed at 1300 ns by
  // immediate"
  [[nodiscard]] std::string describe() const;
};

class violation_log {
 public:
  explicit violation_log(std::size_t keep = 64) : keep_(keep) {}

  void record(const violation& v);
  [[nodiscard]] std::uint64_t count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }
  // The first `keep` violations in full.
  [[nodiscard]] std::vector<violation> first() const;
  // Their one-line descriptions, newline-separated, plus "... and N more".
  [[nodiscard]] std::string report() const;
  void clear();

 private:
  std::size_t keep_;
  std::atomic<std::uint64_t> count_{0};
  mutable std::mutex mutex_;
  std::vector<violation> kept_;
};

}  // namespace ptreclaim::iommu
