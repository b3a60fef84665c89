// An independent checker of the retire contract, for tests, the simulator and users who want to
// test their own invalidation logic. It checks
//   S2  every frame is freed exactly once, only after it was retired, and only frames the page
//       tables really unlinked are retired;
//   S3  a frame is freed only after, on every IOMMU its domain was attached to when the frame
//       was unlinked, an invalidation that the hardware processed covered it (a global
//       invalidation, a domain-selective one of the domain's did, or a page-selective one of
//       that did with IH=0 whose block contains the frame's span), that invalidation was
//       submitted after the unlink, and a wait descriptor behind it completed;
//   S5  frames pending never exceed the bound;
//   S6  (lazy DMA) an IOVA is never allocated again while a translation of its previous mapping
//       may still be cached: since its unmap, on every IOMMU its domain was attached to, an
//       invalidation covering its range (leaf suffices: a global one, a domain-selective one of
//       the domain's did, or a page-selective one of that did whose block contains the range)
//       was processed and a wait descriptor behind it completed.
// It trusts neither the policies nor the invalidation bookkeeping above the hardware (flush
// epochs, the backend's ranges): what was unlinked, and through which IOVA span a cached entry
// could still reach it, comes from the page-table code (pt::unlink_observer, wired through
// pt::domain_config::on_unlink); what was invalidated comes from the IOMMU units themselves,
// descriptor by descriptor as each unit processes them (iommu::inv_observer). A bug in
// iommu::system::invalidate (a range widened or narrowed wrongly, a unit left out) or in the
// epoch counters therefore fools the policy but not this checker. It never polls the hardware
// (a policy that forgets to poll is left waiting, and fails L1) and never takes a
// platform-reported lock (it must not perturb the virtual time it measures).
// Violations are recorded (count + the first few in full), never fatal.
//
// It also forwards the invalidation_backend (counting invalidations) so that a policy can be
// given the monitor as its backend; the S3 check does not use what passes through there. For
// lazy DMA it is the policy's iova_sink too, forwarding to the caller's allocator
// (set_iova_sink): the caller reports each unmap (on_iova_unmapped) and each allocation
// (on_iova_allocated), the policy's give-backs pass through iova_free.
//
// Thread-safety: all members may be called concurrently (one internal lock, a real-platform
// spinlock: never charged in virtual time; in threaded runs a short spin instead of a futex
// sleep, which on a 2-core VM cost ~8 % of a 2-CPU run). Lock order: a unit's lock (held when
// on_processed is called), then this lock; the table's lock (on_unlinked), then this lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "ptreclaim/base/spinlock.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/pt/unlink_observer.hpp"
#include "ptreclaim/reclaim/backend.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::reclaim {

class safety_monitor final : public reclaim_observer,
                             public invalidation_backend,
                             public pt::unlink_observer,
                             public iommu::inv_observer,
                             public iova_sink {
 public:
  // Registers itself as `sys`'s descriptor observer (until destroyed). `inner` does the real
  // invalidation work; `max_pending` is the S5 bound. Tables must name the monitor as their
  // pt::domain_config::on_unlink.
  safety_monitor(iommu::system& sys, invalidation_backend& inner, std::uint64_t max_pending,
                 std::size_t violations_kept = 16);
  ~safety_monitor() override;
  safety_monitor(const safety_monitor&) = delete;
  safety_monitor& operator=(const safety_monitor&) = delete;

  // --- invalidation_backend (forwarded) ---
  [[nodiscard]] Result<epoch_t> invalidate(domain_number d,
                                           const invalidation_range& range) override;
  [[nodiscard]] epoch_t stamp(domain_number d) noexcept override { return inner_.stamp(d); }
  [[nodiscard]] epoch_t completed(domain_number d) noexcept override { return inner_.completed(d); }
  [[nodiscard]] epoch_t completed_full(domain_number d) noexcept override {
    return inner_.completed_full(d);
  }
  [[nodiscard]] epoch_t completed_seen(domain_number d) noexcept override {
    return inner_.completed_seen(d);
  }
  [[nodiscard]] epoch_t completed_full_seen(domain_number d) noexcept override {
    return inner_.completed_full_seen(d);
  }
  [[nodiscard]] bool wait(domain_number d, epoch_t e, std::uint64_t timeout_ns) override {
    return inner_.wait(d, e, timeout_ns);
  }
  [[nodiscard]] bool flush_busy(domain_number d) noexcept override { return inner_.flush_busy(d); }
  [[nodiscard]] Result<epoch_t> invalidate_sync(domain_number d, const invalidation_range& range,
                                                std::uint64_t timeout_ns) override;

  // --- the page tables and the hardware ---
  void on_unlinked(const pt::unlinked_table& t) noexcept override;
  void on_processed(unsigned unit, std::uint64_t seq,
                    const iommu::inv_descriptor& d) noexcept override;

  // --- reclaim_observer (the policy's retires and frees; `need` is not trusted) ---
  void on_retire(domain_number d, mem::frame_id f, const invalidation_range& need) override;
  void on_free(mem::frame_id f, const char* path) override;
  void on_invariant_violation(const std::string& what) override;

  // --- lazy DMA (S6) ---
  // Where iova_free forwards to (the caller's allocator; nullptr: nowhere). Set before the run.
  void set_iova_sink(iova_sink* inner) noexcept { iova_inner_ = inner; }
  // The caller unmapped `r` of d and hands it to the policy (call after the unmap's PTE stores).
  void on_iova_unmapped(domain_number d, const iova_range& r) noexcept;
  // The policy gives `r` back: recorded (given back before a covering invalidation completed is
  // legal until the IOVA is allocated again), then forwarded.
  void iova_free(domain_number d, const iova_range& r) noexcept override;
  // The allocator hands out `r` of d again (call before mapping it): S6 is judged here.
  void on_iova_allocated(domain_number d, const iova_range& r) noexcept;
  // IOVAs unmapped and not yet given back (lazy DMA's L1).
  [[nodiscard]] std::uint64_t deferred_iovas() const;

  struct report {
    std::uint64_t retired = 0, freed = 0, pending = 0, peak_pending = 0;
    std::uint64_t unlinked = 0;        // frames the page tables reported unlinked
    std::uint64_t s2_violations = 0;   // double free, free of a frame never retired, retire of a
                                       // frame never unlinked
    std::uint64_t s3_violations = 0;   // freed before a covering invalidation completed
    std::uint64_t s4_violations = 0;   // policy-reported (wrong CPU, lost frames)
    std::uint64_t s5_violations = 0;   // pending above the bound
    std::uint64_t s6_violations = 0;   // an IOVA allocated again before a covering invalidation
                                       // completed (and give-backs of IOVAs never unmapped)
    std::uint64_t iovas_unmapped = 0;  // lazy DMA: IOVAs the caller handed over
    std::uint64_t iovas_returned = 0;  // of which given back
    std::uint64_t iovas_returned_early = 0;  // given back before a covering invalidation completed
    std::uint64_t deferred_iovas = 0;        // unmapped, not yet given back
    std::uint64_t peak_deferred_iovas = 0;
    std::uint64_t invalidations = 0;  // submitted through the monitor
    std::vector<std::string> first;   // the first violations, in full
    [[nodiscard]] bool ok() const noexcept {
      return s2_violations + s3_violations + s4_violations + s5_violations + s6_violations == 0;
    }
  };
  [[nodiscard]] report result() const;
  // Frames retired and not yet freed (the L1 check after quiescence).
  [[nodiscard]] std::uint64_t pending() const;
  // Grows with every unlink, retire and free: what a watchdog watches for progress.
  [[nodiscard]] std::uint64_t progress() const;

 private:
  // One unit a frame's domain was attached to when the frame was unlinked.
  struct unit_need {
    std::uint8_t unit = 0;
    iommu::hw_domain_id did = 0;
    std::uint64_t tail = 0;    // the unit's submitted count right after the unlink
    std::uint64_t pasids = 1;  // the PASIDs bound there (domain::attached_pasids)
  };
  using unit_needs = std::array<unit_need, limits::max_iommus>;
  struct unlinked_frame {
    domain_number domain{};
    pt::iova_t first = 0, last = 0;  // the span a cached entry could reach it through
    unsigned units = 0;
    unit_needs need{};
    bool unlinked = false;  // reported by the page tables (else only retired by a policy)
    bool retired = false;
  };
  // A processed descriptor as the unit reported it.
  struct logged {
    std::uint64_t seq = 0;
    iommu::inv_type type = iommu::inv_type::wait;
    iommu::hw_domain_id did = 0;
    iommu::pasid_t pasid = iommu::no_pasid;
    pt::iova_t first = 0, last = 0;
    bool ih = false;
  };
  struct unit_log {
    std::deque<logged> entries;               // in processing (= sequence) order
    std::map<std::uint64_t, unsigned> tails;  // tails of frames still unfreed, counted
  };

  void violation(std::uint64_t report::*counter, std::string what);  // mutex held
  // Whether frame f is covered on every unit; if not, why not into *why (when given: only a
  // violation that will be kept is described, so a canary's thousands cost no strings).
  [[nodiscard]] bool covered_everywhere(const unlinked_frame& r, std::string* why) const;
  // A new violation's text would be kept (report::first has room).             mutex held
  [[nodiscard]] bool keeping() const noexcept { return rep_.first.size() < kept_; }
  // What unit n processed after n.tail: an invalidation covering [first, last] of its domain
  // (page-selective ones with IH=1 only if leaf_counts: they keep paging-structure entries),
  // a wait behind one, and how many descriptors.                              mutex held
  struct coverage {
    bool covered = false, waited = false;
    std::uint64_t after = 0;
    std::uint64_t pasids_left = 0;  // PASIDs (bit p) no covering invalidation reached
  };
  [[nodiscard]] coverage scan(const unit_need& n, pt::iova_t first, pt::iova_t last,
                              bool leaf_counts) const;
  // Counts (drops) the tails a frame or an IOVA keeps in the units' logs.      mutex held
  void keep_tails(unsigned units, const unit_needs& need);
  void forget_tails(unsigned units, const unit_needs& need);
  // Lazy DMA: an unmapped IOVA, and the units its domain was attached to at the unmap.
  struct unmapped_iova {
    domain_number domain{};
    pt::iova_t first = 0, last = 0;
    unsigned units = 0;
    unit_needs need{};
    bool returned = false;  // given back early, kept until allocated again
  };
  [[nodiscard]] static std::uint64_t iova_key(domain_number d, pt::iova_t first) noexcept {
    return (first >> 12) | (std::uint64_t{d} << 48);
  }
  // The units d is attached to now, with their submitted counts (after a full fence, [mon-1]).
  void snapshot_units(domain_number d, unsigned& units, unit_needs& need) const;
  // Empty when a leaf-or-better invalidation covering [first, last] was processed on every unit
  // after need[i].tail and a wait behind it completed; else why not.          mutex held
  [[nodiscard]] std::string iova_uncovered(const unmapped_iova& r) const;
  void trim(unit_log& log);  // mutex held

  iommu::system& sys_;
  invalidation_backend& inner_;
  std::uint64_t max_pending_;
  std::size_t kept_;
  mutable spinlock mu_;
  std::unordered_map<std::uint32_t, unlinked_frame> frames_;  // unlinked, not yet freed
  std::array<unit_log, limits::max_iommus> logs_;
  std::unordered_map<std::uint64_t, unmapped_iova> iovas_;  // unmapped, not yet safe to reuse
  iova_sink* iova_inner_ = nullptr;
  report rep_;
};

}  // namespace ptreclaim::reclaim
