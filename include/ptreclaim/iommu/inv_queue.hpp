// Invalidation descriptors and the bounded ring that holds them (VT-d queued invalidation,
// VT-d spec §6.5.2; AMD-Vi command buffer, AMD IOMMU spec §2.4).
//
// The model keeps one internal descriptor type; AMD-Vi commands are translated onto it:
//   VT-d                                   AMD-Vi                                  internal
//   IOTLB global invalidate                INVALIDATE_IOMMU_ALL                    global
//   IOTLB domain-selective (DSI)           INVALIDATE_IOMMU_PAGES S=1, all ones    domain
//   IOTLB page-selective (PSI) ADDR,AM,IH  INVALIDATE_IOMMU_PAGES ADDR,S,PDE       page
//   invalidation wait (status write)       COMPLETION_WAIT (store data)            wait
//   PASID-based IOTLB invalidate (P_IOTLB) -                                       page, pasid>0
//   device-TLB invalidate (ATS)            INVALIDATE_IOTLB_PAGES                  devtlb
// A P_IOTLB is a page descriptor with a PASID: it drops the IOTLB and paging-structure entries of
// that (did, PASID) only; AM = 52 at address 0 is its PASID-selective granularity (every address
// of the PASID), allowed beyond max_am. A device-TLB invalidation names a device (source id)
// and a block; it finishes when the device answers (latency inv_devtlb_ns) and drops the
// device's translations of the block for every PASID.
// PDE=1 means "paging-structure entries too", the opposite sense of IH: IH = !PDE.
//
// The ring is owned by a unit (unit.hpp), which processes it; it is not thread-safe itself.
// Sequence numbers are 64-bit positions in the stream of descriptors ever submitted to a unit:
// a descriptor at sequence s is done once the unit's processed count exceeds s.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/config.hpp"

namespace ptreclaim::iommu {

enum class inv_type : std::uint8_t { global, domain, page, wait, devtlb, count_ };
[[nodiscard]] const char* inv_type_name(inv_type t) noexcept;

struct inv_descriptor {
  inv_type type = inv_type::global;
  hw_domain_id did = 0;      // domain, page
  pasid_t pasid = no_pasid;  // page: a P_IOTLB of this PASID (0: a PSI, requests without PASID)
  device_id sid = 0;         // devtlb: the device whose TLB is invalidated
  iova_t addr = 0;           // page, devtlb: aligned to 2^(12 + am) bytes
  std::uint8_t am = 0;       // page, devtlb: 2^am pages
  bool ih = false;           // page: 1 = leaf entries only, paging-structure caches survive
  // wait: on completion `status` (if any) is stored `status_value` with release ordering,
  // as VT-d's status write (SW=1) and AMD's completion store.
  std::atomic<std::uint64_t>* status = nullptr;
  std::uint64_t status_value = 0;

  [[nodiscard]] static inv_descriptor global() noexcept { return {}; }
  [[nodiscard]] static inv_descriptor domain(hw_domain_id did) noexcept {
    inv_descriptor d;
    d.type = inv_type::domain;
    d.did = did;
    return d;
  }
  // addr must be aligned to 2^(12 + am) bytes (checked at submit).
  [[nodiscard]] static inv_descriptor page(hw_domain_id did, iova_t addr, unsigned am,
                                           bool ih) noexcept {
    inv_descriptor d;
    d.type = inv_type::page;
    d.did = did;
    d.addr = addr;
    d.am = static_cast<std::uint8_t>(am);
    d.ih = ih;
    return d;
  }
  // A P_IOTLB: page-selective within `pasid`, or PASID-selective with am = 52 and addr = 0.
  [[nodiscard]] static inv_descriptor pasid_page(hw_domain_id did, pasid_t pasid, iova_t addr,
                                                 unsigned am, bool ih) noexcept {
    inv_descriptor d = page(did, addr, am, ih);
    d.pasid = pasid;
    return d;
  }
  [[nodiscard]] static inv_descriptor devtlb(device_id sid, iova_t addr, unsigned am) noexcept {
    inv_descriptor d;
    d.type = inv_type::devtlb;
    d.sid = sid;
    d.addr = addr;
    d.am = static_cast<std::uint8_t>(am);
    return d;
  }
  // A P_IOTLB of the PASID's every address.
  [[nodiscard]] bool pasid_selective() const noexcept {
    return type == inv_type::page && pasid != no_pasid && am >= 52;
  }
  [[nodiscard]] static inv_descriptor wait(std::atomic<std::uint64_t>* status = nullptr,
                                           std::uint64_t value = 0) noexcept {
    inv_descriptor d;
    d.type = inv_type::wait;
    d.status = status;
    d.status_value = value;
    return d;
  }
  // page, devtlb: the inclusive IOVA range it covers. AM = 52 is the whole 64-bit space (2^64
  // bytes: no shift by 64 anywhere).
  [[nodiscard]] iova_t first() const noexcept { return addr; }
  [[nodiscard]] iova_t last() const noexcept {
    return 12u + am >= 64 ? ~iova_t{0} : addr + ((std::uint64_t{1} << (12u + am)) - 1);
  }
  // page, devtlb: addr is aligned to the block, 2^(12 + am) bytes.
  [[nodiscard]] bool aligned() const noexcept {
    return 12u + am >= 64 ? addr == 0 : (addr & ((std::uint64_t{1} << (12u + am)) - 1)) == 0;
  }
  // "PSI did=3 addr=0x200000 am=9 ih=0"
  [[nodiscard]] std::string describe() const;
};

// Hears every descriptor a unit processes, in queue order: what the hardware did, for a
// checker that must not trust the software's bookkeeping (reclaim::safety_monitor). Called
// with the unit's lock held, after an invalidation took effect and before a wait's status
// write (so a waiter that sees the status also finds the wait reported), before the unit's
// processed count moves: the observer must not call back into the unit.
class inv_observer {
 public:
  virtual ~inv_observer() = default;
  virtual void on_processed(unsigned unit, std::uint64_t seq, const inv_descriptor& d) noexcept = 0;
  // The same with when: the descriptor was submitted at `submit_ns` and took effect (a wait:
  // completed) at `done_ns`, both platform time. The unit calls this one; the default forwards
  // to on_processed, so an observer that needs no times overrides only that (a recorder of
  // timelines overrides this).
  virtual void on_processed_at(unsigned unit, std::uint64_t seq, const inv_descriptor& d,
                               std::uint64_t /*submit_ns*/, std::uint64_t /*done_ns*/) noexcept {
    on_processed(unit, seq, d);
  }
};

// AMD-Vi command buffer entries (AMD IOMMU spec §2.4.3 INVALIDATE_IOMMU_PAGES, §2.4.1
// COMPLETION_WAIT, §2.4.8 INVALIDATE_IOMMU_ALL), field by field.
struct amd_command {
  enum class opcode : std::uint8_t {
    completion_wait = 1,
    invalidate_iommu_pages = 3,
    invalidate_iommu_all = 8
  };
  opcode op = opcode::invalidate_iommu_all;
  hw_domain_id domain_id = 0;  // INVALIDATE_IOMMU_PAGES DomainID
  std::uint64_t address = 0;   // bits 63:12; with S=1 the lowest clear bit at or above 12 sizes it
  bool s = false;              // size: 0 = one 4K page, 1 = encoded in the address
  bool pde = false;            // 1 = also invalidate cached page-directory entries
  std::atomic<std::uint64_t>* store = nullptr;  // COMPLETION_WAIT with S (store) set
  std::uint64_t store_data = 0;

  // INVALIDATE_IOMMU_PAGES covering [first, last] with the smallest naturally aligned block
  // (S=1 encoding), or all pages of the domain when the block exceeds 2^51 pages.
  [[nodiscard]] static amd_command invalidate_pages(hw_domain_id did, iova_t first, iova_t last,
                                                    bool pde) noexcept;
  [[nodiscard]] static amd_command invalidate_all() noexcept { return {}; }
  [[nodiscard]] static amd_command completion_wait(std::atomic<std::uint64_t>* store = nullptr,
                                                   std::uint64_t data = 0) noexcept {
    amd_command c;
    c.op = opcode::completion_wait;
    c.store = store;
    c.store_data = data;
    return c;
  }
};

// The internal descriptor an AMD command maps onto. An INVALIDATE_IOMMU_PAGES whose size
// encoding covers the whole address space (address bits 62:12 all ones) becomes a
// domain-selective invalidation; otherwise a page-selective one with AM = the block size.
[[nodiscard]] inv_descriptor translate_amd(const amd_command& c) noexcept;

// The ring. Capacity is a power of two in [limits::inv_queue_min, limits::inv_queue_max].
class inv_queue {
 public:
  struct slot {
    inv_descriptor desc;
    std::uint64_t submit_ns = 0;
    // wait descriptors: 1 + the sequence of the last non-wait descriptor before it (0: none).
    std::uint64_t covers_through = 0;
    // How often the driver's recovery resubmitted this descriptor's group (faults.hpp); the
    // fault injector reads it, the hardware model does not.
    unsigned attempt = 0;
  };

  explicit inv_queue(unsigned entries);

  // Appends `d` at sequence tail(); errc::queue_full when no slot is free.
  [[nodiscard]] Result<std::uint64_t> push(const inv_descriptor& d, std::uint64_t now_ns,
                                           unsigned attempt = 0);
  [[nodiscard]] bool empty() const noexcept { return head_ == tail_; }
  [[nodiscard]] std::size_t free_slots() const noexcept { return ring_.size() - (tail_ - head_); }
  [[nodiscard]] const slot& front() const noexcept { return ring_[head_ & mask_]; }
  void pop() noexcept;
  [[nodiscard]] std::uint64_t head() const noexcept { return head_; }
  [[nodiscard]] std::uint64_t tail() const noexcept { return tail_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return ring_.size(); }
  // The descriptors not yet popped, oldest first.
  [[nodiscard]] std::vector<inv_descriptor> pending() const;
  // head <= tail <= head + capacity; pending waits cover only earlier descriptors.
  [[nodiscard]] Status check_invariants() const;

 private:
  std::vector<slot> ring_;
  std::uint64_t mask_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t last_inv_plus1_ = 0;  // 1 + sequence of the last non-wait descriptor pushed
};

}  // namespace ptreclaim::iommu
