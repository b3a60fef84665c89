#include "ptreclaim/iommu/faults.hpp"

#include <algorithm>
#include <cmath>

#include "ptreclaim/base/prng.hpp"

namespace ptreclaim::iommu {

std::uint64_t fault_config::max_extra_ns() const noexcept {
  std::uint64_t wait_extra = 0;
  if (ite_probability > 0) wait_extra = ite_timeout_ns;
  if (slow_wait_probability > 0) wait_extra = std::max(wait_extra, slow_wait_max_ns);
  return (stall_probability > 0 ? stall_ns : 0) + wait_extra;
}

double fault_schedule::uniform(std::uint64_t seq, purpose p) const noexcept {
  std::uint64_t x = c_.seed ^ (std::uint64_t{unit_} << 56) ^ (seq * 0x9e3779b97f4a7c15ULL) ^
                    (static_cast<std::uint64_t>(p) * 0xd1b54a32d192ed03ULL);
  (void)prng::splitmix64(x);  // one round to spread the salts, a second for the draw
  return static_cast<double>(prng::splitmix64(x) >> 11) * 0x1.0p-53;
}

fault_schedule::draw fault_schedule::at(std::uint64_t seq, inv_type type,
                                        unsigned attempt) const noexcept {
  draw d;
  if (!c_.enabled()) return d;
  if (c_.stall_probability > 0 && uniform(seq, purpose::stall) < c_.stall_probability)
    d.stall_ns = c_.stall_ns;
  const bool may_abort = attempt < c_.max_aborts_in_a_row;
  if (type == inv_type::wait) {
    d.ite = may_abort && c_.ite_probability > 0 && uniform(seq, purpose::ite) < c_.ite_probability;
    if (c_.slow_wait_probability > 0 && uniform(seq, purpose::slow) < c_.slow_wait_probability) {
      const double u = uniform(seq, purpose::slow_length);
      const double x = -std::log1p(-u) * static_cast<double>(c_.slow_wait_mean_ns);
      d.slow_ns = std::min(c_.slow_wait_max_ns, static_cast<std::uint64_t>(x));
    }
  } else {
    d.iqe = may_abort && c_.iqe_probability > 0 && uniform(seq, purpose::iqe) < c_.iqe_probability;
  }
  return d;
}

const char* queue_error_name(queue_error e) noexcept {
  return e == queue_error::ite ? "ITE" : "IQE";
}

}  // namespace ptreclaim::iommu
