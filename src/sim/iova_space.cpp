#include "sim/iova_space.hpp"

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim::sim::detail {

iova_space::iova_space(unsigned cpus, std::uint64_t slice_bytes, std::uint64_t buffer_bytes)
    : slice_(slice_bytes),
      buffer_(buffer_bytes),
      per_slice_(slice_bytes / buffer_bytes),
      count_(per_slice_ * cpus),
      words_(new std::atomic<std::uint64_t>[count_]()) {
  PTR_ASSERT_MSG(buffer_bytes != 0 && per_slice_ != 0, "iova_space: a slice holds no buffer");
}

std::atomic<std::uint64_t>* iova_space::word(std::uint64_t iova) noexcept {
  const std::uint64_t cpu = iova / slice_;
  const std::uint64_t i = (iova % slice_) / buffer_;
  if (i >= per_slice_) return nullptr;  // the slice's tail, smaller than a buffer
  const std::uint64_t k = cpu * per_slice_ + i;
  return k < count_ ? &words_[k] : nullptr;
}

void iova_space::set(std::uint64_t iova, state s, std::uint64_t now_ns) noexcept {
  if (auto* w = word(iova))
    w->store(static_cast<std::uint64_t>(s) | (now_ns << 2), std::memory_order_release);  // [is-1]
}

std::optional<std::uint64_t> iova_space::alloc(unsigned cpu, std::uint64_t& cursor) {
  const std::uint64_t base = std::uint64_t{cpu} * per_slice_;
  std::uint64_t i = (cursor / buffer_) % per_slice_;
  for (std::uint64_t n = 0; n < per_slice_; ++n, i = (i + 1) % per_slice_) {
    std::atomic<std::uint64_t>& w = words_[base + i];
    const auto s = static_cast<state>(w.load(std::memory_order_acquire) & 3);  // [is-2]
    if (s != state::unused && s != state::free) continue;
    w.store(static_cast<std::uint64_t>(state::mapped), std::memory_order_relaxed);
    cursor = ((i + 1) % per_slice_) * buffer_;
    return i * buffer_;
  }
  return std::nullopt;
}

void iova_space::iova_free(reclaim::domain_number /*d*/, const reclaim::iova_range& r) noexcept {
  for (std::uint64_t a = r.first; a <= r.last && a >= r.first; a += buffer_) {
    std::atomic<std::uint64_t>* w = word(a);
    if (w == nullptr) continue;
    const std::uint64_t v = w->load(std::memory_order_relaxed);
    if (static_cast<state>(v & 3) == state::deferred)
      w->store((v & ~std::uint64_t{3}) | static_cast<std::uint64_t>(state::free),
               std::memory_order_release);  // [is-1]
    if (r.last - a < buffer_) break;
  }
}

void iova_space::unmap_returned(std::uint64_t iova, std::uint64_t now_ns) noexcept {
  std::atomic<std::uint64_t>* w = word(iova);
  if (w == nullptr) return;
  std::uint64_t v = w->load(std::memory_order_relaxed);
  while (!w->compare_exchange_weak(v, (v & 3) | (now_ns << 2), std::memory_order_release,
                                   std::memory_order_relaxed)) {
  }
}

void iova_space::check(std::uint64_t iova, std::uint64_t start_ns, std::uint64_t now_ns) noexcept {
  std::atomic<std::uint64_t>* w = word(iova);
  if (w == nullptr) return;
  const std::uint64_t v = w->load(std::memory_order_acquire);  // [is-2]
  const auto s = static_cast<state>(v & 3);
  if (s != state::deferred && s != state::free) return;
  const std::uint64_t unmapped = v >> 2;
  if (unmapped > start_ns) return;  // the translation may have begun before the unmap returned
  exposures_.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t window = now_ns - unmapped;
  std::uint64_t cur = longest_.load(std::memory_order_relaxed);
  while (window > cur && !longest_.compare_exchange_weak(cur, window, std::memory_order_relaxed)) {
  }
}

}  // namespace ptreclaim::sim::detail
