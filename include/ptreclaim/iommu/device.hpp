// DMA engines: a device issues translations through the unit it is attached behind, with a
// seeded access pattern over configured IOVA windows, concurrently with mapping changes on
// CPUs. A simulator actor or a thread drives it with step(): one whole translation, or - in
// step-wise mode - one memory read of a walk, so a deterministic executor can interleave a walk
// with CPU operations read by read.
//
// PASIDs and ATS. A device configured with PASIDs issues its requests with them, round-robin
// (the caller attaches it with the same list). With ATS it keeps a device-TLB (devtlb.hpp):
// a request it hits there never reaches the IOMMU; a miss asks the unit and fills it.
//
// Thread-safety: one driver at a time per device; stats() may be read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/iommu/devtlb.hpp"
#include "ptreclaim/iommu/system.hpp"

namespace ptreclaim::iommu {

enum class access_pattern : std::uint8_t {
  uniform,     // a uniformly random 4 KiB page of a random window (weighted by size)
  sequential,  // base, base + stride, ... wrapping within each window, then the next window
  hot_set,     // hot_percent of accesses to a fixed set of hot_pages pages, the rest uniform
};

// Where a device aims when its user knows better than its windows (the simulator aims at the
// ranges its domain mapped or released recently). next() may use the device's generator and
// returns false to let the device's own pattern choose from its windows.
class iova_source {
 public:
  virtual ~iova_source() = default;
  virtual bool next(prng& rng, iova_t& iova) = 0;
};

struct iova_window {
  iova_t base = 0;         // 4 KiB aligned
  std::uint64_t size = 0;  // bytes, a positive multiple of 4 KiB
};

struct device_config {
  device_id id = 0;
  access_pattern pattern = access_pattern::uniform;
  std::vector<iova_window> windows;
  std::uint64_t stride = 4096;  // sequential
  unsigned hot_pages = 16;      // hot_set
  unsigned hot_percent = 90;    // hot_set
  unsigned write_percent = 0;   // accesses that are writes (else reads); 0 draws nothing
  bool stepwise = false;        // step() = one PTE read instead of one translation
  std::uint64_t seed = 1;
  iova_source* source = nullptr;  // asked first for every IOVA (must outlive the device)
  std::vector<pasid_t> pasids{};  // used round-robin; empty: requests without PASID
  bool ats = false;               // a device-TLB in front of the unit
  cache_config devtlb{64, 8, replacement::lru, 3};
};

struct device_stats {
  std::uint64_t translations = 0;  // completed
  std::uint64_t busy = 0;          // requests the unit refused (no walk slot), retried
  std::uint64_t ok = 0;
  std::uint64_t faults = 0;
  std::uint64_t iotlb_hits = 0;
  std::uint64_t psc_hits = 0;
  std::uint64_t devtlb_hits = 0;  // answered by the device's own TLB
  std::uint64_t walks = 0;        // translations that walked from the root
  std::uint64_t pte_reads = 0;
  std::uint64_t violations = 0;
  std::uint64_t cost_ns = 0;  // modelled time of all translations

  [[nodiscard]] double iotlb_hit_rate() const noexcept {
    return translations == 0 ? 0.0
                             : static_cast<double>(iotlb_hits) / static_cast<double>(translations);
  }
  [[nodiscard]] double psc_hit_rate() const noexcept {
    const std::uint64_t misses = translations - iotlb_hits;
    return misses == 0 ? 0.0 : static_cast<double>(psc_hits) / static_cast<double>(misses);
  }
};

class device {
 public:
  // Precondition: config.windows non-empty, each window aligned and non-empty.
  device(system& sys, device_config config);
  device(const device&) = delete;
  device& operator=(const device&) = delete;
  ~device();

  [[nodiscard]] device_id id() const noexcept { return config_.id; }
  // One translation (or one walk read in step-wise mode). Returns true when a translation
  // completed during this call; its result is last(). An unattached device completes with
  // fault_no_context. A request the unit refused (outcome::busy: every walk slot taken) does not
  // complete: it is counted and the next step() retries the same IOVA and access.
  bool step();
  // Abandons a walk in flight (a device reset), so waits it blocks can complete.
  void cancel();
  [[nodiscard]] bool walking() const noexcept { return walk_.phase() == walk_phase::walking; }
  [[nodiscard]] const translate_result& last() const noexcept { return last_; }
  [[nodiscard]] iova_t last_iova() const noexcept { return last_iova_; }
  [[nodiscard]] device_stats stats() const noexcept;
  // The device's TLB (attach it with this), nullptr without ATS.
  [[nodiscard]] devtlb* ats() noexcept { return tlb_.get(); }

  // The next IOVA the pattern produces (advances the pattern).
  [[nodiscard]] iova_t next_iova();

 private:
  void account(const translate_result& r);
  // A device-TLB hit answers the request; false on a miss.
  bool devtlb_hit();
  void devtlb_fill(const translate_result& r);

  system* sys_;
  device_config config_;
  prng rng_;
  std::uint64_t total_pages_ = 0;
  std::size_t seq_window_ = 0;
  std::uint64_t seq_offset_ = 0;
  std::vector<iova_t> hot_;
  walk walk_;
  unit* walk_unit_ = nullptr;
  translate_result last_;
  iova_t last_iova_ = 0;
  std::uint8_t access_ = 0;
  bool retry_ = false;  // the last request was refused busy: reissue it
  pasid_t pasid_ = no_pasid;
  std::size_t next_pasid_ = 0;
  std::unique_ptr<devtlb> tlb_;
  std::uint64_t tlb_generation_ = 0;  // read before the request went to the unit

  struct counters {
    std::atomic<std::uint64_t> translations{0}, busy{0}, ok{0}, faults{0}, iotlb_hits{0},
        psc_hits{0}, devtlb_hits{0}, walks{0}, pte_reads{0}, violations{0}, cost_ns{0};
  };
  counters c_;
};

}  // namespace ptreclaim::iommu
