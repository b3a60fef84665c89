// The IOMMU system: several units, the domains, which device sits behind which unit, the
// violation log, and the domain flush helper the reclamation policies use.
//
// Setup (add_unit, create_domain, attach) happens before concurrent use; attach/detach may
// also run concurrently with translations. Everything else may be called from any thread.
//
// The flush helper, invalidate(domain, range):
//   on every unit the domain is attached to, submits one IOTLB invalidation - a PSI with the
//   smallest naturally aligned address mask covering the range (covering_block_lg2), or a DSI
//   when that mask exceeds the unit's max_am - with IH = 1 only when no non-leaf entry changed,
//   followed by a wait descriptor; a full queue is retried (advancing the hardware) until
//   system_config::queue_full_timeout_ns, then reported as errc::queue_full. On a unit where
//   PASIDs are bound (SVA), each bound PASID gets a P_IOTLB instead (the same block, or
//   PASID-selective beyond max_am), the PSI/DSI only if some device there translates without a
//   PASID, then each ATS device a device-TLB invalidation of the block, then the wait: the wait
//   completes only after the devices answered. It returns a
//   ticket: the per-unit wait sequences, pollable without blocking or waitable with the
//   platform's wait_until. The domain's flush epochs (domain.hpp) advance as tickets complete.
//
// The queue lock (queue_lock.hpp): every submission writes its descriptors under the driver's
// lock on the unit's queue (one inv_submit charge per descriptor, while held). A synchronous
// flush (flush_sync; the reclaim backend's invalidate_sync) then follows the unit's driver
// (unit_config::driver). Linux's VT-d driver, as qi_submit_sync, keeps the lock and spins for the
// wait's status, each iteration reading it under the lock (driver_config::poll_ns) and dropping the
// lock for a cpu_relax (relax_ns), so other CPUs get in between and the waiter queues again; the
// spin after the first read is modelled in closed form (queue_lock.hpp), and units are flushed one
// after the other, as the driver loops over its IOMMUs. Linux's AMD driver (iommu_completion_wait)
// and Xen's VT-d driver (queue_invalidate_wait) drop the lock once the wait is written and poll
// without it. invalidate() alone (asynchronous callers) only writes under the lock.
//
// Queue errors (injected faults, faults.hpp): a unit that aborts a group (ITE, IQE) keeps it; the
// driver resubmits it, as Linux's qi_submit_sync restarts a submission whose wait qi_check_fault
// found QI_ABORT. Here recovery runs whenever someone looks at a unit's progress (poll(ticket),
// poll_domain, wait_epoch, advance), never blocks (a full queue leaves the group for the next
// look), and records which wait replaced the aborted one; a ticket or flush epoch holding the
// aborted wait completes only when its latest resubmission completed (wait_done).
//
// SVA domains (domain::sva()) are flushed as Linux's iommu_sva_invalidate_kva_range does: under
// one global mutex, iommu_sva_lock, held from the submission until every wait completed (each
// unit's waited for synchronously, as above); the ticket returned is complete. The lock is
// platform-reported under that name, so contention figures show its share.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/iommu/domain.hpp"
#include "ptreclaim/iommu/queue_lock.hpp"
#include "ptreclaim/iommu/unit.hpp"
#include "ptreclaim/iommu/violation.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/gather.hpp"

namespace ptreclaim::iommu {

// What must be invalidated: the inclusive IOVA range and whether any non-leaf entry changed
// (then paging-structure caches must go too: IH = 0).
struct inv_range {
  iova_t first = 0;
  iova_t last = ~iova_t{0};
  bool nonleaf_changed = true;

  // The range a gather owes (precondition: !g.empty()).
  [[nodiscard]] static inv_range from(const pt::gather& g) noexcept {
    return {g.first(), g.last(), g.nonleaf_changed()};
  }
  // Everything, leaf and non-leaf: a DSI on every unit.
  [[nodiscard]] static constexpr inv_range all() noexcept { return {}; }
};

// A submitted invalidation: its epoch on the domain and the wait descriptor on each unit.
struct ticket {
  struct part {
    unsigned unit = 0;
    std::uint64_t seq = 0;  // the wait descriptor's sequence on that unit
  };
  domain* dom = nullptr;
  std::uint64_t epoch = 0;
  bool full = false;  // dropped every cached entry of the domain on every unit
  unsigned count = 0;
  std::array<part, limits::max_iommus> parts{};
};

class system {
 public:
  explicit system(mem::frame_pool& pool, const system_config& config = {},
                  platform& plat = default_platform());
  system(const system&) = delete;
  system& operator=(const system&) = delete;
  ~system();

  // --- setup ---
  // Adds a unit; returns its index (< limits::max_iommus).
  unsigned add_unit(const unit_config& config = {});
  // Registers a domain whose root table already exists (pt::table::root()). invalid_argument
  // if the id is taken, the format is missing, or the root is not a live level-`levels` table
  // of that domain.
  [[nodiscard]] Result<domain*> create_domain(const domain_desc& desc);
  [[nodiscard]] domain* find_domain(std::uint16_t id) const noexcept;
  // Installs the context entry: `dev` behind unit `u` translates through `dom` with did `did`.
  // invalid_argument if the device is already attached, `did` is used on that unit by another
  // domain, or `dom` already has another did on that unit. Narrows dom.leaf_levels() to the
  // unit's page sizes. `pasids` (1..max_pasid, distinct): the PASIDs the device translates with,
  // bound to `dom` on that unit; empty for a device translating without PASID. `ats`: the
  // device's TLB (at most max_ats_per_unit ATS devices per domain and unit).
  Status attach(device_id dev, unsigned u, domain& dom, hw_domain_id did,
                std::span<const pasid_t> pasids = {}, devtlb* ats = nullptr);
  // Removes the context entry (the unit stays in the domain's flush set).
  Status detach(device_id dev);
  // Every unit, present and added later, reports each descriptor it processes to `o` (or to
  // nobody: nullptr). Set it before invalidation traffic starts, or while none runs.
  void set_inv_observer(inv_observer* o);

  [[nodiscard]] unsigned unit_count() const noexcept {
    return static_cast<unsigned>(units_.size());
  }
  [[nodiscard]] unit& get_unit(unsigned u) noexcept { return *units_[u]; }
  [[nodiscard]] const unit& get_unit(unsigned u) const noexcept { return *units_[u]; }
  // The unit `dev` is attached behind, or nullptr.
  [[nodiscard]] unit* unit_of(device_id dev) const noexcept;

  // --- translation ---
  // One-shot translation by `dev` (fault_no_context if unattached).
  translate_result translate(device_id dev, iova_t iova, std::uint8_t access);

  // --- invalidation ---
  // The flush helper (see above). Precondition: first <= last.
  [[nodiscard]] Result<ticket> invalidate(domain& dom, const inv_range& range);
  [[nodiscard]] Result<ticket> invalidate_all(domain& dom) {
    return invalidate(dom, inv_range::all());
  }
  // Non-blocking: advances the units the ticket names, then the domain's epochs; true once
  // every wait of the ticket completed.
  [[nodiscard]] bool poll(const ticket& t);
  // Blocks (platform::wait_until) until poll(t) or timeout: errc::busy on timeout.
  [[nodiscard]] Status wait(const ticket& t, std::uint64_t timeout_ns);
  // The synchronous strict flush, each unit's queue lock held as its driver holds it (see "The
  // queue lock"). On success flush_completed() >= the epoch returned (every earlier flush of the
  // domain completed too). errc::busy on timeout.
  [[nodiscard]] Result<std::uint64_t> flush_sync_epoch(domain& dom, const inv_range& range,
                                                       std::uint64_t timeout_ns);
  [[nodiscard]] Status flush_sync(domain& dom, const inv_range& range, std::uint64_t timeout_ns) {
    return flush_sync_epoch(dom, range, timeout_ns).status();
  }
  // Advances the domain's flush_completed()/flush_completed_full() from the units' progress
  // (does not advance the units).
  void update_epochs(domain& dom);
  // Advances the units `dom` is attached to, then its epochs; returns flush_completed().
  // Never blocks (the reclaim backend's completed()).
  std::uint64_t poll_domain(domain& dom);
  // Spins (platform::wait_until) until dom.flush_completed() >= epoch: errc::busy on timeout.
  [[nodiscard]] Status wait_epoch(domain& dom, std::uint64_t epoch, std::uint64_t timeout_ns);
  // Advances every unit to now, then every domain's epochs (the engine step).
  void advance();

  // --- queue errors (see the file comment) ---
  // Resubmits the groups unit `u` aborted (non-blocking).
  void recover(unsigned u);
  // True once the wait at `seq` on unit `u` completed or, when it was aborted, the wait of its
  // resubmission did (following every resubmission). Never true for a wait that was aborted and
  // not (yet) successfully resubmitted. Does not advance the unit.
  [[nodiscard]] bool wait_done(unsigned u, std::uint64_t seq) const;
  // An SVA flush runs now (iommu_sva_lock is held) and `dom` is an SVA domain: a flush asked for
  // now would wait for it. Never blocks.
  [[nodiscard]] bool flush_busy(const domain& dom) const noexcept {
    return dom.sva() && sva_lock_.busy();
  }
  // Contention on unit `u`'s queue lock so far.
  [[nodiscard]] queue_lock_stats queue_lock_stats_of(unsigned u) const noexcept {
    return qlocks_[u]->stats();
  }

  // Aborted groups resubmitted so far (all units).
  [[nodiscard]] std::uint64_t resubmissions() const noexcept {
    return resubmissions_.load(std::memory_order_relaxed);
  }

  [[nodiscard]] violation_log& violations() noexcept { return log_; }
  [[nodiscard]] const violation_log& violations() const noexcept { return log_; }
  [[nodiscard]] platform& plat() const noexcept { return *plat_; }
  [[nodiscard]] mem::frame_pool& pool() const noexcept { return *pool_; }
  [[nodiscard]] const system_config& config() const noexcept { return config_; }
  // Every unit's invariants, and every domain's pending epochs in order.
  [[nodiscard]] Status check_invariants() const;

 private:
  Result<std::uint64_t> submit_retrying(unit& u, std::span<const inv_descriptor> descs);
  // invalidate() and flush_sync_epoch(): `sync` waits for each unit's wait as its driver does,
  // until deadline_ns; SVA domains are flushed synchronously under iommu_sva_lock.
  Result<ticket> flush(domain& dom, const inv_range& range, bool sync, std::uint64_t deadline_ns);
  // flush() without iommu_sva_lock.
  Result<ticket> submit_flush(domain& dom, const inv_range& range, bool sync,
                              std::uint64_t deadline_ns);
  // qi_submit_sync's wait, entered and left with `q` held: true once the wait at `seq` is done.
  bool spin_locked(unit& u, queue_lock& q, std::uint64_t seq, std::uint64_t deadline_ns);
  // Lets `ns` of platform time pass (the engine's actors, the hardware, run meanwhile).
  void pass(std::uint64_t ns);
  // The driver's view of one unit's aborted groups (system_recovery.cpp).
  struct recovery_state;

  mem::frame_pool* pool_;
  system_config config_;
  platform* plat_;
  violation_log log_;
  std::vector<std::unique_ptr<unit>> units_;
  std::vector<std::unique_ptr<recovery_state>> recovery_;  // one per unit
  std::vector<std::unique_ptr<queue_lock>> qlocks_;        // one per unit
  std::atomic<std::uint64_t> resubmissions_{0};
  mutable std::mutex setup_mutex_;  // domains_, device_unit_ writes, inv_observer_
  inv_observer* inv_observer_ = nullptr;
  std::vector<std::unique_ptr<domain>> domains_;
  std::array<std::atomic<domain*>, limits::max_domains> by_id_{};
  std::array<std::atomic<int>, limits::max_devices> device_unit_{};
  spinlock sva_lock_;  // iommu_sva_lock: one SVA flush at a time, held until it completed
};

}  // namespace ptreclaim::iommu
