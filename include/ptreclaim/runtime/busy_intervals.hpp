// busy_intervals: when a lock or a cache line was held, in virtual time, for the deterministic
// executor's contention model.
//
// The executor runs steps in clock order, but one step can take long (a timer that frees a few
// hundred frames, a wait for an invalidation), so the entity that last took a lock may be far
// ahead of the next entity to ask for it. Remembering only the last release would push that
// earlier-clocked entity forward to a time it never waited for. Instead each resource keeps its
// recent hold intervals; an access arriving at time a starts at the first instant >= a that no
// recorded interval covers. Holds are recorded when they end (their length is known then), so a
// hold that starts in a gap shorter than itself may overlap the next one, and an arrival is
// checked against the one hold that starts last before it (not older overlapping ones): a
// slight optimism, bounded by one hold per gap.
//
// Memory: at most `capacity` intervals per resource (the oldest are forgotten, which is exact
// once every entity's clock has passed them). The capacity exceeds the executor's entity count
// (asserted where it is used), so N entities arriving at once on one lock all still queue.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

namespace ptreclaim::runtime {

class busy_intervals {
 public:
  static constexpr unsigned capacity = 512;

  // The first instant >= arrive_ns outside every recorded interval. O(log n) to find the hold
  // it may fall into (by start), then a walk over the holds that follow without a gap.
  [[nodiscard]] std::uint64_t earliest_free(std::uint64_t arrive_ns) const noexcept {
    unsigned lo = 0, hi = count_;  // first interval that starts after arrive_ns
    while (lo < hi) {
      const unsigned mid = (lo + hi) / 2;
      if (at(mid).start <= arrive_ns)
        lo = mid + 1;
      else
        hi = mid;
    }
    std::uint64_t t = arrive_ns;
    if (lo > 0 && at(lo - 1).end > t) t = at(lo - 1).end;
    for (unsigned i = lo; i < count_ && at(i).start <= t; ++i)
      t = std::max(t, at(i).end);
    return t;
  }

  // Records [start, end) (empty intervals are not kept), keeping the list sorted by start.
  // Holds mostly end in clock order, so this is usually an append.
  void add(std::uint64_t start_ns, std::uint64_t end_ns) noexcept {
    if (end_ns <= start_ns) return;
    if (count_ == capacity) {  // forget the oldest
      head_ = (head_ + 1) % capacity;
      --count_;
    }
    unsigned pos = count_;
    while (pos > 0 && at(pos - 1).start > start_ns) {
      at(pos) = at(pos - 1);
      --pos;
    }
    at(pos) = {start_ns, end_ns};
    ++count_;
  }

  [[nodiscard]] unsigned size() const noexcept { return count_; }

 private:
  struct interval {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
  };
  // i-th oldest (0 = oldest); the storage is a ring starting at head_.
  [[nodiscard]] interval& at(unsigned i) noexcept { return slots_[(head_ + i) % capacity]; }
  [[nodiscard]] const interval& at(unsigned i) const noexcept {
    return slots_[(head_ + i) % capacity];
  }
  std::array<interval, capacity> slots_{};
  unsigned head_ = 0;
  unsigned count_ = 0;
};

}  // namespace ptreclaim::runtime
