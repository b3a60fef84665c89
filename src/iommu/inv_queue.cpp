#include "ptreclaim/iommu/inv_queue.hpp"

#include <bit>
#include <cstdio>

#include "ptreclaim/base/bits.hpp"
#include "ptreclaim/base/limits.hpp"

namespace ptreclaim::iommu {

const char* inv_type_name(inv_type t) noexcept {
  switch (t) {
    case inv_type::global:
      return "global";
    case inv_type::domain:
      return "DSI";
    case inv_type::page:
      return "PSI";
    case inv_type::wait:
      return "wait";
    case inv_type::devtlb:
      return "devTLB";
    case inv_type::count_:
      break;
  }
  return "?";
}

std::string inv_descriptor::describe() const {
  char buf[128];
  switch (type) {
    case inv_type::page:
      if (pasid != no_pasid)
        std::snprintf(buf, sizeof buf, "P_IOTLB did=%u pasid=%u addr=%#llx am=%u ih=%d",
                      unsigned{did}, unsigned{pasid}, static_cast<unsigned long long>(addr),
                      unsigned{am}, ih ? 1 : 0);
      else
        std::snprintf(buf, sizeof buf, "PSI did=%u addr=%#llx am=%u ih=%d", unsigned{did},
                      static_cast<unsigned long long>(addr), unsigned{am}, ih ? 1 : 0);
      break;
    case inv_type::devtlb:
      std::snprintf(buf, sizeof buf, "devTLB sid=%u addr=%#llx am=%u", unsigned{sid},
                    static_cast<unsigned long long>(addr), unsigned{am});
      break;
    case inv_type::domain:
      std::snprintf(buf, sizeof buf, "DSI did=%u", unsigned{did});
      break;
    case inv_type::wait:
      std::snprintf(buf, sizeof buf, "wait value=%llu",
                    static_cast<unsigned long long>(status_value));
      break;
    default:
      std::snprintf(buf, sizeof buf, "global");
      break;
  }
  return buf;
}

amd_command amd_command::invalidate_pages(hw_domain_id did, iova_t first, iova_t last,
                                          bool pde) noexcept {
  amd_command c;
  c.op = opcode::invalidate_iommu_pages;
  c.domain_id = did;
  c.pde = pde;
  const unsigned am = covering_block_lg2(first, last, 12);
  if (am == 0) {
    c.s = false;
    c.address = align_down(first, 12);
  } else if (am >= 52) {
    c.s = true;
    c.address = bit_range(12, 62);  // "all pages": bits 62:12 ones, bit 63 clear
  } else {
    c.s = true;
    // The lowest clear bit at or above bit 12 is bit 12 + am - 1: a block of 2^am pages.
    c.address = align_down(first, 12 + am) | (am >= 2 ? bit_range(12, 12 + am - 2) : 0);
  }
  return c;
}

inv_descriptor translate_amd(const amd_command& c) noexcept {
  switch (c.op) {
    case amd_command::opcode::completion_wait:
      return inv_descriptor::wait(c.store, c.store_data);
    case amd_command::opcode::invalidate_iommu_all:
      return inv_descriptor::global();
    case amd_command::opcode::invalidate_iommu_pages: {
      if (!c.s) return inv_descriptor::page(c.domain_id, align_down(c.address, 12), 0, !c.pde);
      const unsigned ones = static_cast<unsigned>(std::countr_one(c.address >> 12));
      const unsigned am = ones + 1;
      if (am >= 52) return inv_descriptor::domain(c.domain_id);
      return inv_descriptor::page(c.domain_id, align_down(c.address, 12 + am), am, !c.pde);
    }
  }
  return inv_descriptor::global();
}

inv_queue::inv_queue(unsigned entries) : ring_(entries), mask_(entries - 1) {
  PTR_ASSERT_MSG(
      entries >= limits::inv_queue_min && entries <= limits::inv_queue_max && is_pow2(entries),
      "inv_queue: entries must be a power of two in [256, 32768]");
}

Result<std::uint64_t> inv_queue::push(const inv_descriptor& d, std::uint64_t now_ns,
                                      unsigned attempt) {
  if (tail_ - head_ >= ring_.size()) return errc::queue_full;
  slot& s = ring_[tail_ & mask_];
  s.desc = d;
  s.submit_ns = now_ns;
  s.attempt = attempt;
  s.covers_through = d.type == inv_type::wait ? last_inv_plus1_ : 0;
  if (d.type != inv_type::wait) last_inv_plus1_ = tail_ + 1;
  return tail_++;
}

void inv_queue::pop() noexcept {
  PTR_DASSERT(head_ < tail_);
  ++head_;
}

std::vector<inv_descriptor> inv_queue::pending() const {
  std::vector<inv_descriptor> out;
  out.reserve(tail_ - head_);
  for (std::uint64_t q = head_; q < tail_; ++q)
    out.push_back(ring_[q & mask_].desc);
  return out;
}

Status inv_queue::check_invariants() const {
  if (head_ > tail_ || tail_ - head_ > ring_.size())
    return {errc::invalid_argument, "inv_queue: head/tail out of order or over capacity"};
  if (last_inv_plus1_ > tail_)
    return {errc::invalid_argument, "inv_queue: last invalidation beyond tail"};
  for (std::uint64_t q = head_; q < tail_; ++q) {
    const slot& s = ring_[q & mask_];
    if (s.desc.type == inv_type::wait && s.covers_through > q)
      return {errc::invalid_argument, "inv_queue: a wait covers a later descriptor"};
    if (s.desc.type == inv_type::page && !s.desc.aligned())
      return {errc::invalid_argument, "inv_queue: PSI address not aligned to its mask"};
    if (q > head_ && ring_[(q - 1) & mask_].submit_ns > s.submit_ns)
      return {errc::invalid_argument, "inv_queue: submit times out of order"};
  }
  return {};
}

}  // namespace ptreclaim::iommu
