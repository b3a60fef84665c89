// A domain as the IOMMU model sees it: the page table a set of devices translates through (its
// root frame and format), the units it is attached to with the did each uses, the page sizes
// it may use, and its flush epochs - the counters a reclamation policy reads to decide when a
// retired table may be freed.
//
// Flush epochs. Every system::invalidate() on a domain gets the next number n = 1, 2, ...,
// taken *before* any of its descriptors is submitted. Three counters, readable lock-free from
// any thread:
//   flush_started()        the last number handed out (0: none yet).
//   flush_completed()      the largest n such that every invalidation numbered <= n has completed
//                          on every unit it was submitted to (advanced in order by polls). It
//                          says nothing about *which* ranges those covered: use it for frames
//                          whose own covering invalidation has a number <= n (e.g. the epoch a
//                          ticket carries).
//   flush_completed_full() the largest n of a completed *full* invalidation: one that dropped
//                          every IOTLB and paging-structure entry of the domain on every unit it
//                          is attached to (a DSI or global, or an IH=0 PSI covering the whole
//                          address space), and whose wait found no earlier walk in flight.
// The reclaimer's rule: stamp a retired frame with `s = flush_stamp()` *after* unlinking it; the
// frame may be freed once `flush_completed_full() > s`, because that invalidation was numbered
// after the unlink, so it was submitted after the unlink was visible, dropped every cached
// pointer to the frame on every unit, and no walk that could still hold one is in flight.
// A ranged IH=0 invalidation covers only its range: for those, keep the ticket's epoch per frame
// and wait for flush_completed() >= epoch (or poll the ticket).
// A failed invalidate() (queue full past the timeout) consumes its number, counts as completed
// for flush_completed() (no caller holds that epoch) and never as full.
//
// Memory ordering, as Linux dma-iommu orders fq_flush_start_cnt (smp_mb(), then a read):
// [ep-1] flush_stamp() is a seq_cst fence, then a load of started_, so stamping writes no shared
// line; [ep-2] invalidate() numbers with a seq_cst RMW of started_; [ep-6] every walk that reads
// PTEs starts behind a seq_cst fence, after the unit's lock that also orders the
// invalidation's processing. If the stamp's load returned s, it is coherence-ordered before
// the RMW numbering s+1, so fence [ep-1] precedes that RMW in the single total order S
// ([atomics.order]/4.3), which precedes fence [ep-6] of any walk that starts after the
// invalidation took effect (the RMW strongly happens before it through the unit's lock). A
// PTE read after [ep-6] that missed the unlink would put [ep-6] before [ep-1] in S (/4.4):
// impossible. So the unlink before the stamp is visible to every walk after an invalidation
// numbered after it. [ep-3] the releasing stores of the completed counters pair with [ep-4] their
// acquiring loads, so a reader that sees n also sees the hardware's completion of n.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <vector>

#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/mem/frame.hpp"
#include "ptreclaim/pt/format.hpp"

namespace ptreclaim::iommu {

class system;

struct domain_desc {
  std::uint16_t id = 0;  // software domain: the ledger owner of its tables
  const pt::format_desc* format = nullptr;
  mem::frame_id root = mem::no_frame;  // a live level-`format->levels` table of `id`
  std::uint32_t leaf_levels = 0b1110;  // page sizes software wants (bit L: a leaf at level L)
};

struct attachment {
  unsigned unit = 0;
  hw_domain_id did = 0;
  unsigned devices = 0;  // context entries on that unit naming this domain
  // What the flush must reach on that unit: bit p = PASID p is bound there (a P_IOTLB each),
  // bit 0 = a device translates without PASID (a PSI or DSI); and the ATS devices (a device-TLB
  // invalidation each). Kept after a detach, as the unit is.
  std::uint64_t pasids = 0;
  unsigned ats_count = 0;
  std::array<device_id, max_ats_per_unit> ats{};
};

class domain {
 public:
  domain(const domain&) = delete;
  domain& operator=(const domain&) = delete;

  [[nodiscard]] std::uint16_t id() const noexcept { return desc_.id; }
  [[nodiscard]] const pt::format_desc& format() const noexcept { return *desc_.format; }
  [[nodiscard]] mem::frame_id root() const noexcept { return desc_.root; }
  [[nodiscard]] std::uint32_t root_generation() const noexcept { return root_generation_; }
  // Page sizes the domain may use: its wish, the format's and every attached unit's
  // (intersection). Attach devices before mapping: a unit that lacks a size already mapped
  // faults on it (a reserved-bit fault).
  [[nodiscard]] std::uint32_t leaf_levels() const noexcept {
    return leaf_levels_.load(std::memory_order_relaxed);
  }
  // Units this domain is attached to, with its did on each. A detached device does not remove
  // the unit: its caches may still hold the domain's entries, so it stays in the flush set.
  [[nodiscard]] std::vector<attachment> attachments() const;
  // The domain's did on unit `u` plus one, 0 when not attached there: a lock-free read for
  // checkers, which must not take (and so perturb) the domain's platform-reported lock. Set
  // (release) before the attaching device's context entry is installed.
  [[nodiscard]] std::uint32_t attached_did_plus1(unsigned u) const noexcept {
    // [sys-6] pairs with system::attach's [sys-5]
    return u < limits::max_iommus ? did_plus1_[u].load(std::memory_order_acquire) : 0;
  }

  // The PASID mask of unit `u` (attachment::pasids), lock-free for checkers; published with
  // attached_did_plus1 ([sys-6]).
  [[nodiscard]] std::uint64_t attached_pasids(unsigned u) const noexcept {
    return u < limits::max_iommus ? pasids_[u].load(std::memory_order_acquire) : 0;
  }
  // Some PASID is bound: a shared-virtual-addressing domain, whose flushes take iommu_sva_lock
  // and wait for completion under it (system::invalidate).
  [[nodiscard]] bool sva() const noexcept { return sva_.load(std::memory_order_acquire); }

  [[nodiscard]] std::uint64_t flush_started() const noexcept {
    return started_.load(std::memory_order_acquire);
  }
  // The stamp for a retired frame; call after the unlink. A full fence and a load [ep-1], see
  // above: the line is only read, so CPUs stamping concurrently share it instead of moving it.
  // The counters are lines every CPU of the domain shares: each access is charged to the
  // platform (a write takes the line exclusive, so stamping CPUs contend in virtual time).
  [[nodiscard]] std::uint64_t flush_stamp() noexcept {
    plat_->charge(cost_kind::lock_uncontended);  // a full fence costs about a locked op
    plat_->touch_line(&started_, false);
    return peek_stamp();
  }
  [[nodiscard]] std::uint64_t flush_completed() const noexcept {
    plat_->touch_line(&completed_, false);
    return completed_.load(std::memory_order_acquire);  // [ep-4] pairs with [ep-3]
  }
  [[nodiscard]] std::uint64_t flush_completed_full() const noexcept {
    plat_->touch_line(&completed_full_, false);
    return completed_full_.load(std::memory_order_acquire);  // [ep-4] pairs with [ep-3]
  }
  // The same three values for checkers (safety monitors), not charged to the platform: an
  // observer must not perturb the virtual time it measures.
  [[nodiscard]] std::uint64_t peek_stamp() const noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // [ep-1] pairs with [ep-2] and [ep-6]
    return started_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t peek_completed() const noexcept {
    return completed_.load(std::memory_order_acquire);  // [ep-4]
  }
  [[nodiscard]] std::uint64_t peek_completed_full() const noexcept {
    return completed_full_.load(std::memory_order_acquire);  // [ep-4]
  }

 private:
  friend class system;
  domain(const domain_desc& d, std::uint32_t root_generation, platform& plat)
      : desc_(d),
        root_generation_(root_generation),
        leaf_levels_(d.leaf_levels & d.format->leaf_levels),
        plat_(&plat),
        lock_(plat) {
    lock_.name("IOMMU domain lock (pending invalidations)");
    plat.name_shared(&started_, "IOMMU domain: invalidations started (stamp line)");
    plat.name_shared(&completed_, "IOMMU domain: invalidations completed");
  }

  struct pending {
    std::uint64_t epoch = 0;
    bool submitted = false;
    bool failed = false;
    bool done = false;
    bool full = false;
    unsigned count = 0;
    std::array<std::pair<unsigned, std::uint64_t>, limits::max_iommus> waits{};  // (unit, seq)
  };

  domain_desc desc_;
  std::uint32_t root_generation_;
  std::atomic<std::uint32_t> leaf_levels_;
  platform* plat_;
  mutable spinlock lock_;  // attachments_, pending_
  std::vector<attachment> attachments_;
  std::array<std::atomic<std::uint32_t>, limits::max_iommus> did_plus1_{};  // mirrors attachments_
  std::array<std::atomic<std::uint64_t>, limits::max_iommus> pasids_{};     // mirrors attachments_
  std::atomic<bool> sva_{false};
  std::deque<pending> pending_;
  // started_ is written by every stamp and submission, the completed pair only when epochs
  // advance: separate lines, so readers of completions do not share the stampers' line.
  alignas(64) std::atomic<std::uint64_t> started_{0};
  alignas(64) std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> completed_full_{0};
};

}  // namespace ptreclaim::iommu
