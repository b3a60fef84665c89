#include "ptreclaim/iommu/queue_lock.hpp"

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim::iommu {

namespace {
constexpr std::uint64_t open_end = ~std::uint64_t{0};
}  // namespace

std::uint64_t queue_lock::begin_spin() noexcept {
  std::lock_guard g(spin_mu_);
  // The oldest slot goes (the ring's next one); ids grow, so the token names slot and id.
  const std::uint64_t id = next_spin_id_++;
  spin_interval& s = spins_[id % spin_capacity];
  s = {plat_->now_ns(), open_end, id};
  return id;
}

void queue_lock::end_spin(std::uint64_t token, const driver_config& d) noexcept {
  const std::uint64_t now = plat_->now_ns();
  std::uint64_t start = now;
  {
    std::lock_guard g(spin_mu_);
    PTR_ASSERT_MSG(token != 0 && token < next_spin_id_, "end_spin: not a begin_spin token");
    spin_interval& s = spins_[token % spin_capacity];
    // Overwritten only if spin_capacity spins began while this one spun: then it is forgotten.
    if (s.id == token && s.end == open_end) {
      s.end = std::max(now, s.start);
      start = s.start;
    }
  }
  // Its turns: poll_ns of each round among the spinners now.
  const std::uint64_t k = std::max(1u, spinners_at(now == 0 ? 0 : now - 1));
  const std::uint64_t period = spin_period_ns(k, d);
  if (period != 0) add(hold_ns_, (now - start) * d.poll_ns / period);
}

unsigned queue_lock::spinners_at(std::uint64_t t) const noexcept {
  std::lock_guard g(spin_mu_);
  // Only the slots ever used (ids 1, 2, ... take slots id % spin_capacity): none on a unit
  // nobody spun on, since every submission asks.
  const std::uint64_t slots = std::min<std::uint64_t>(next_spin_id_, spin_capacity);
  unsigned n = 0;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const spin_interval& s = spins_[i];
    if (s.id != 0 && s.start <= t && t < s.end) ++n;
  }
  return n;
}

}  // namespace ptreclaim::iommu
