// The deterministic executor's cost model: how much virtual time each charged operation and
// each executor action costs, in nanoseconds. The threaded executor ignores it.
//
// Defaults are plausible figures for a current x86 server (a cross-core cache-line transfer
// ~100 ns, an uncontended lock ~20 ns, a context switch to a kworker ~1.5 us). This is the one
// cost model: a scenario's cost file (the TOML `ptreclaim calibrate` writes, read by
// sim::parse_cost_model in ptreclaim/scenario/scenario.hpp) fills it directly.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "ptreclaim/base/cost.hpp"
#include "ptreclaim/base/status.hpp"

namespace ptreclaim::runtime {

inline constexpr std::size_t cost_kind_count = static_cast<std::size_t>(cost_kind::count_);
// The key of a cost kind in a cost file ("pte_write", ...). Precondition: k < cost_kind::count_.
[[nodiscard]] std::string_view cost_kind_name(cost_kind k) noexcept;

struct cost_model {
  // platform::charge(kind, n) advances the caller's clock by n * cost(kind).
  std::array<std::uint64_t, cost_kind_count> charge_ns{
      5,    // pte_write
      3,    // pte_read
      40,   // frame_alloc
      40,   // frame_free
      10,   // enqueue
      10,   // dequeue
      100,  // inv_submit
      50,   // inv_poll
      100,  // cache_line_transfer (also paid by touch_line / lock handover)
      20,   // lock_uncontended (every lock_acquire)
      50,   // op_overhead
      500,  // table_fill (one whole table: 512 stores in a loop, not 512 map calls)
  };
  std::uint64_t step_ns = 10;           // every executor step, on top of what it charged
  std::uint64_t step_jitter_ns = 16;    // + uniform [0, jitter] from the seeded PRNG per step
  std::uint64_t softirq_item_ns = 100;  // dispatching one softirq tasklet or timer
  std::uint64_t tasklet_ns = 300;       // dispatching one plain tasklet from the idle/sched path
  std::uint64_t work_ns = 1500;         // switching to a kworker and back for one work item
  std::uint64_t idle_poll_ns = 1000;    // step_result::idle sleeps this long
  std::uint64_t hotplug_ns = 20000;     // one cpu_down/cpu_up, charged to the CPU running it

  [[nodiscard]] std::uint64_t cost(cost_kind k) const noexcept {
    return charge_ns[static_cast<std::size_t>(k)];
  }
  void set_cost(cost_kind k, std::uint64_t ns) noexcept {
    charge_ns[static_cast<std::size_t>(k)] = ns;
  }
  friend bool operator==(const cost_model&, const cost_model&) = default;
};

}  // namespace ptreclaim::runtime
