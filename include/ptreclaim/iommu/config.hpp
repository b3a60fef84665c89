// Configuration of the IOMMU model: cache geometry, invalidation-queue size and latencies, and
// the identifiers the model uses. Every bound is explicit here, with a default and, for timing,
// the public figure it comes from.
//
// Glossary (VT-d names, AMD-Vi equivalents in parentheses):
//   unit        one IOMMU (a DMAR unit; an AMD IOMMU), with its own caches and queue.
//   did         the domain id *this unit* uses for a domain (AMD: DomainID in the DTE); the
//               same domain may have different dids on different units.
//   domain id   the software domain number (`mem::frame_ident::domain`, the ledger owner).
//   IOTLB       cache of finished translations, keyed by (did, IOVA page, page size).
//   PSC         paging-structure caches, one per level L >= 2: the frame of the level-(L-1)
//               table that the level-L entry for an IOVA prefix points to (AMD: PDE cache).
//   PSI/DSI     page-selective / domain-selective IOTLB invalidation; AM = log2 pages; IH = 1
//               invalidates leaf entries only (paging-structure caches survive).
#pragma once

#include <cstdint>
#include <functional>

#include "ptreclaim/base/limits.hpp"

namespace ptreclaim::iommu {

using device_id = std::uint16_t;     // source id (bus/dev/fn), < limits::max_devices
using hw_domain_id = std::uint16_t;  // a unit's domain id (16 bits in VT-d)
using iova_t = std::uint64_t;
// A process address space id (PCIe PASID). 0 stands for requests without a PASID; PASIDs
// 1..max_pasid tag first-stage (SVA) cache entries. The bound keeps a unit's bound PASIDs in one
// 64-bit mask (bit p; bit 0 = requests without PASID).
using pasid_t = std::uint32_t;
inline constexpr pasid_t no_pasid = 0;
inline constexpr pasid_t max_pasid = 63;
// ATS devices whose device-TLB one unit invalidates for one domain (the flush sends one
// device-TLB invalidation to each).
inline constexpr unsigned max_ats_per_unit = 16;

enum class replacement : std::uint8_t { lru, random };

// A set-associative cache: `entries` = sets * ways; ways == entries is fully associative.
struct cache_config {
  unsigned entries = 64;
  unsigned ways = 8;
  replacement policy = replacement::lru;
  std::uint64_t seed = 1;  // random replacement only
};

// Model latencies, for the simulator's device and engine timing. Defaults are the public figures
// this project works from (published measurements on Xeon servers):
//  - an IOTLB miss adds about 225-280 ns to a DMA read;
//  - a walk costs about 197 ns per level (one memory read each);
//  - a strict unmap's invalidation (PSI + wait) costs about 2,100 cycles, about 1 us;
//  - real invalidation descriptors take hundreds of ns to a few us.
// Xen and Linux always use IH=0 when any table was freed; the flush helper does the same.
struct latency_config {
  std::uint64_t iotlb_hit_ns = 0;     // the hit path is part of the DMA itself
  std::uint64_t iotlb_miss_ns = 250;  // fixed miss overhead (225-280 ns measured)
  std::uint64_t pte_read_ns = 197;    // one memory read of the walk
  std::uint64_t inv_page_ns = 200;    // one PSI descriptor
  std::uint64_t inv_domain_ns = 200;  // one DSI descriptor
  std::uint64_t inv_global_ns = 400;  // one global descriptor
  std::uint64_t inv_wait_ns = 800;    // a wait descriptor's round trip (PSI + wait ~ 1 us)
  // A device-TLB (ATS) invalidation: the IOMMU sends it over PCIe and the descriptor finishes
  // when the device's completion message returns, a few microseconds.
  std::uint64_t inv_devtlb_ns = 3000;

  // All zero: the model's own machinery is what benchmarks measure.
  [[nodiscard]] static constexpr latency_config zero() noexcept { return {0, 0, 0, 0, 0, 0, 0, 0}; }
};

// Abort probabilities above this would let one invalidation fail more often than it succeeds.
inline constexpr double max_abort_probability = 0.5;

// Injected queue faults (faults.hpp says what each does). All off by default.
struct fault_config {
  std::uint64_t seed = 0;
  double ite_probability = 0.0;           // per wait descriptor, 0 .. max_abort_probability
  std::uint64_t ite_timeout_ns = 20'000;  // time the unit spends on a wait before ITE
  double iqe_probability = 0.0;           // per invalidation descriptor, 0 .. 0.5
  unsigned max_aborts_in_a_row = 4;    // >= 1: aborts of one invalidation, resubmissions included
  double stall_probability = 0.0;      // per descriptor, 0 .. 1
  std::uint64_t stall_ns = 20'000;     // one stall
  double slow_wait_probability = 0.0;  // per completed wait, 0 .. 1
  std::uint64_t slow_wait_mean_ns = 10'000;  // mean of the exponential extra delay
  std::uint64_t slow_wait_max_ns = 200'000;  // its truncation

  [[nodiscard]] bool enabled() const noexcept {
    return ite_probability > 0 || iqe_probability > 0 || stall_probability > 0 ||
           slow_wait_probability > 0;
  }
  // The longest one descriptor can take beyond its configured latency.
  [[nodiscard]] std::uint64_t max_extra_ns() const noexcept;
};

// The driver's side of a unit's invalidation queue: how a synchronous flush holds the queue's
// lock (system.hpp, "The queue lock").
enum class queue_driver : std::uint8_t {
  // Linux's VT-d driver, qi_submit_sync: q_lock held while the descriptors and the wait
  // descriptor are written and while spinning for the wait's status, dropped and retaken once
  // per spin iteration.
  linux_vtd,
  // The lock held only while the commands and the wait are written; the completion is polled
  // without it: Linux's AMD driver (iommu_completion_wait) and Xen's VT-d queue_invalidate_wait
  // (each CPU polls its own status slot, so one wait per CPU may be outstanding).
  unlocked_poll,
};

// Bounds of driver_config's times (a spin iteration longer than this is a configuration error).
inline constexpr std::uint64_t max_driver_spin_ns = 1'000'000;

struct driver_config {
  queue_driver kind = queue_driver::linux_vtd;
  // linux_vtd: one spin iteration's reads under q_lock, the wait's status word and qi_check_fault's
  // read of the fault status register (an uncached MMIO read; assumed a few hundred ns, not
  // measured here). At most max_driver_spin_ns.
  std::uint64_t poll_ns = 200;
  // linux_vtd: cpu_relax() between dropping and retaking q_lock (a PAUSE, ~40 ns on current cores).
  // At most max_driver_spin_ns; 0 keeps the lock (nobody can get in between).
  std::uint64_t relax_ns = 40;
};

// One IOMMU.
struct unit_config {
  cache_config iotlb{64, 8, replacement::lru, 1};  // effective IOTLB of ~64 entries for 4K pages
  // One PSC per level 2..max_levels (index = level). Figures for real PSCs are not public; these
  // are small, like the IOTLB.
  cache_config psc{32, 4, replacement::lru, 2};
  // Page sizes this unit supports: bit L set = a leaf at level L (bit 1 = 4K, 2 = 2M, 3 = 1G).
  // VT-d reports them in CAP.SLLPS; a unit without 1G support has 0b0110.
  std::uint32_t leaf_levels = 0b1110;
  unsigned max_am = 18;          // VT-d CAP.MAMV: the largest PSI address mask (<= 52)
  unsigned queue_entries = 256;  // invalidation queue ring (VT-d: 256 .. 32768, power of 2)
  bool caching_mode = false;     // VT-d CAP.CM: 1 = not-present results are cached too
  // Physical address bits the unit implements (VT-d: the host address width, HAW; x86-64 first
  // stage: MAXPHYADDR), 32 .. 52. An entry's address bits at or above it are reserved: a walk
  // that reads one set faults (VT-d §9.8, SDM §4.5). 52 = the formats' full address field.
  unsigned host_address_width = 52;
  driver_config driver{};  // how the driver's flushes hold the queue lock
  // Walks registered at once (one per walking device); a begin() beyond it is outcome::busy.
  unsigned max_walks_in_flight = 256;
  latency_config latency{};
  fault_config faults{};  // injected queue faults (faults.hpp); off by default
  // Mutation testing only, never for real runs: waits ignore walks in flight (the wait rule,
  // unit.hpp, is off), so a table freed after a completed wait may still be read. Tests use it
  // to show the checks catch a model without the rule.
  bool mutant_no_wait_rule = false;

  // QEMU's emulated VT-d: a 1024-entry IOTLB (VTD_IOTLB_MAX_SIZE) and caching mode on.
  [[nodiscard]] static unit_config qemu_like() {
    unit_config c;
    c.iotlb = {1024, 16, replacement::lru, 1};
    c.caching_mode = true;
    return c;
  }
};

struct system_config {
  std::size_t violations_kept = 64;  // first N violations recorded in full
  // How long invalidate() keeps retrying while a unit's queue is full before giving up.
  std::uint64_t queue_full_timeout_ns = 100'000'000;
  // An SVA flush holds iommu_sva_lock until its waits complete; how long it waits before
  // giving up (errc::busy).
  std::uint64_t sva_wait_timeout_ns = 1'000'000'000;
  // Tests only: called by invalidate() between numbering an invalidation and submitting it to
  // the units (domain id, epoch), where a real CPU may be preempted. Lets a test hold one
  // invalidation numbered but unsubmitted while others complete.
  std::function<void(std::uint16_t, std::uint64_t)> after_numbering{};
};

}  // namespace ptreclaim::iommu
