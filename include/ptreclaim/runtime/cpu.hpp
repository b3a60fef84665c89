// Simulated CPUs: the online mask type and per-CPU storage.
//
// A CPU is named by its slot number in [0, cpu_count()). per_cpu<T> gives every slot its own
// cache-line-aligned T, so per-CPU data of neighbouring CPUs never shares a line (the point of
// per-CPU data is that the owner touches it without coherence traffic).
#pragma once

#include <bitset>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

#include "ptreclaim/base/assert.hpp"
#include "ptreclaim/base/limits.hpp"

namespace ptreclaim::runtime {

// Coherence granule assumed for padding and for the deterministic executor's line model.
inline constexpr std::size_t cache_line_size = 64;

// A set of CPU slots (online CPUs, CPUs a test expects something of, ...).
class cpu_mask {
 public:
  cpu_mask() = default;
  // CPUs [0, n).
  [[nodiscard]] static cpu_mask first(unsigned n) {
    PTR_ASSERT_MSG(n <= limits::max_cpus, "cpu_mask::first beyond limits::max_cpus");
    cpu_mask m;
    for (unsigned c = 0; c < n; ++c)
      m.bits_.set(c);
    return m;
  }
  void set(unsigned cpu, bool on = true) { bits_.set(check(cpu), on); }
  void reset(unsigned cpu) { bits_.reset(check(cpu)); }
  [[nodiscard]] bool test(unsigned cpu) const { return cpu < limits::max_cpus && bits_.test(cpu); }
  [[nodiscard]] unsigned count() const noexcept { return static_cast<unsigned>(bits_.count()); }
  [[nodiscard]] bool empty() const noexcept { return bits_.none(); }
  // Lowest member >= from, or limits::max_cpus if none.
  [[nodiscard]] unsigned next(unsigned from) const noexcept {
    for (unsigned c = from; c < limits::max_cpus; ++c)
      if (bits_.test(c)) return c;
    return limits::max_cpus;
  }
  friend bool operator==(const cpu_mask&, const cpu_mask&) = default;

 private:
  static unsigned check(unsigned cpu) {
    PTR_ASSERT_MSG(cpu < limits::max_cpus, "cpu number beyond limits::max_cpus");
    return cpu;
  }
  std::bitset<limits::max_cpus> bits_;
};

// One T per CPU slot, each on its own cache line(s). T must be default-constructible, or a
// factory `T(unsigned cpu)` is given. Indexing is not synchronised: the usual per-CPU
// discipline applies (the owner CPU touches its slot; others only under the owner's protocol,
// e.g. a CPU_DEAD notifier touching a dead CPU's slot).
template <class T>
class per_cpu {
 public:
  explicit per_cpu(unsigned cpus) : per_cpu(cpus, [](unsigned) { return T(); }) {}
  // make(cpu) returns a T prvalue, so non-movable T (tasklets, locks) are built in place.
  template <class Factory>
  per_cpu(unsigned cpus, Factory&& make) : size_(cpus) {
    PTR_ASSERT_MSG(cpus >= 1 && cpus <= limits::max_cpus, "per_cpu size must be 1..max_cpus");
    slots_ = std::make_unique<slot[]>(cpus);
    for (unsigned c = 0; c < cpus; ++c) {
      ::new (static_cast<void*>(slots_[c].storage)) T(make(c));
      built_ = c + 1;
    }
  }
  per_cpu(const per_cpu&) = delete;
  per_cpu& operator=(const per_cpu&) = delete;
  ~per_cpu() {
    for (unsigned c = 0; c < built_; ++c)
      get(c).~T();
  }

  [[nodiscard]] T& operator[](unsigned cpu) {
    PTR_ASSERT_MSG(cpu < size_, "per_cpu index beyond its CPU count");
    return get(cpu);
  }
  [[nodiscard]] const T& operator[](unsigned cpu) const {
    PTR_ASSERT_MSG(cpu < size_, "per_cpu index beyond its CPU count");
    return const_cast<per_cpu*>(this)->get(cpu);
  }
  [[nodiscard]] unsigned size() const noexcept { return size_; }

 private:
  static constexpr std::size_t slot_align = alignof(T) > cache_line_size ? alignof(T)
                                                                         : cache_line_size;
  struct alignas(slot_align) slot {
    alignas(T) unsigned char storage[sizeof(T)];
  };
  T& get(unsigned cpu) { return *std::launder(reinterpret_cast<T*>(slots_[cpu].storage)); }

  unsigned size_ = 0;
  unsigned built_ = 0;
  std::unique_ptr<slot[]> slots_;
};

}  // namespace ptreclaim::runtime
