// busy_intervals: when a lock or a cache line was held, in virtual time, for the deterministic
// executor's contention model.
//
// The executor runs steps in clock order, but one step can take long (a timer that frees a few
// hundred frames, a wait for an invalidation), so the entity that last took a lock may be far
// ahead of the next entity to ask for it. Remembering only the last release would push that
// earlier-clocked entity forward to a time it never waited for. Instead each resource keeps its
// recent hold intervals; an access arriving at time a starts at the first instant >= a that no
// recorded interval covers (earliest_free). When a lock's hold ends, the holds recorded inside
// it (it began in a gap shorter than itself) are counted as waited for (busy_within): a CPU
// taking a lock 512 times in a loop (a superpage fill) leaves gaps of a few ns, and another
// CPU's hold that slipped into one used to overlap the next and never wait. An arrival is
// checked against the one hold that starts last before it (not older overlapping ones).
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
    const unsigned lo = first_after(arrive_ns);
    std::uint64_t t = arrive_ns;
    if (lo > 0 && at(lo - 1).end > t) t = at(lo - 1).end;
    for (unsigned i = lo; i < count_ && at(i).start <= t; ++i)
      t = std::max(t, at(i).end);
    return t;
  }

  // How long recorded intervals cover [from, to): the sum of their overlaps with it.
  [[nodiscard]] std::uint64_t busy_within(std::uint64_t from, std::uint64_t to) const noexcept {
    std::uint64_t sum = 0;
    const unsigned lo = first_after(from);
    if (lo > 0 && at(lo - 1).end > from) sum += std::min(at(lo - 1).end, to) - from;
    for (unsigned i = lo; i < count_ && at(i).start < to; ++i)
      sum += std::min(at(i).end, to) - at(i).start;
    return sum;
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
  // Index of the first interval that starts after t (count_ if none).
  [[nodiscard]] unsigned first_after(std::uint64_t t) const noexcept {
    unsigned lo = 0, hi = count_;
    while (lo < hi) {
      const unsigned mid = (lo + hi) / 2;
      if (at(mid).start <= t)
        lo = mid + 1;
      else
        hi = mid;
    }
    return lo;
  }
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
