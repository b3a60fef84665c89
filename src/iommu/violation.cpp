#include "ptreclaim/iommu/violation.hpp"

#include <sstream>

namespace ptreclaim::iommu {

const char* violation_kind_name(violation_kind k) noexcept {
  switch (k) {
    case violation_kind::free_frame:
      return "free frame";
    case violation_kind::data_frame:
      return "data frame";
    case violation_kind::other_domain:
      return "table of another domain";
    case violation_kind::wrong_level:
      return "table at another level";
    case violation_kind::generation_changed:
      return "frame reused since cached";
    case violation_kind::reused_via_stale:
      return "reused frame reached through a retired table";
    case violation_kind::wild_frame:
      return "frame outside memory";
    case violation_kind::reserved_bits:
      return "entry with reserved bits set";
    case violation_kind::stale_superpage:
      return "stale superpage translation";
    case violation_kind::stale_devtlb:
      return "stale device-TLB translation";
  }
  return "?";
}

std::string violation::describe() const {
  std::ostringstream os;
  if (kind == violation_kind::stale_superpage) {
    os << "S1 violation: unit " << unit << " device " << device << " (domain " << domain << ", did "
       << did << ") iova 0x" << std::hex << iova << std::dec << ": " << violation_kind_name(kind)
       << ": a "
       << (level == 3   ? "1G"
           : level == 2 ? "2M"
                        : "level-" + std::to_string(level))
       << " IOTLB entry that a page-selective invalidation too small for it (address mask "
       << psi_am << ", needs >= " << 9 * (level - 1)
       << ") left in place translated it, and the page table no longer maps it so, at " << at_ns
       << " ns";
    return os.str();
  }
  if (kind == violation_kind::stale_devtlb) {
    os << "S1 violation: unit " << unit << " device " << device << " (domain " << domain << ", did "
       << did << ", PASID " << pasid << ") iova 0x" << std::hex << iova << std::dec << ": "
       << violation_kind_name(kind)
       << ": a flush of it completed on the IOMMU without a device-TLB invalidation, and the "
          "device used the entry after the page table changed, at "
       << at_ns << " ns";
    return os.str();
  }
  os << "S1 violation: unit " << unit << " device " << device << " (domain " << domain << ", did "
     << did << ") iova 0x" << std::hex << iova << std::dec << " read frame " << frame.value
     << " as level-" << level << " table" << (via_psc ? " via PSC" : "") << ": "
     << violation_kind_name(kind) << " [" << mem::frame_state_name(now.state);
  if (now.state != mem::frame_state::free)
    os << " domain " << now.domain << " level " << unsigned{now.level};
  os << " gen " << now.generation;
  if (has_expected_generation) os << ", cached gen " << expected_generation;
  os << "]";
  if (kind == violation_kind::reserved_bits)
    os << " (reserved bits 0x" << std::hex << reserved << std::dec << ")";
  os << " at " << at_ns << " ns";
  if (retired_ns != 0) os << ", retired at " << retired_ns << " ns";
  if (freed_ns != 0) {
    os << ", freed at " << freed_ns << " ns by " << (freed_by != nullptr ? freed_by : "?")
       << " (last owner domain " << last_domain << ")";
  }
  return os.str();
}

void violation_log::record(const violation& v) {
  count_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mutex_);
  if (kept_.size() < keep_) kept_.push_back(v);
}

std::vector<violation> violation_log::first() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return kept_;
}

std::string violation_log::report() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& v : kept_)
    out += v.describe() + "\n";
  const std::uint64_t n = count_.load(std::memory_order_relaxed);
  if (n > kept_.size()) out += "... and " + std::to_string(n - kept_.size()) + " more\n";
  return out;
}

void violation_log::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  kept_.clear();
  count_.store(0, std::memory_order_relaxed);
}

}  // namespace ptreclaim::iommu
