// The deterministic executor's cost model: how much virtual time each charged operation and
// each executor action costs, in nanoseconds. The threaded executor ignores it.
//
// Defaults are plausible figures for a current x86 server (a cross-core cache-line transfer
// ~100 ns, an uncontended lock ~20 ns, a context switch to a kworker ~1.5 us); they can be
// replaced from a cost file of `key = value` lines (parse_cost_model), the format
// `ptreclaim calibrate` writes. Keys are the cost_kind names (pte_write, ...) and the names of
// the runtime fields below.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "ptreclaim/base/cost.hpp"
#include "ptreclaim/base/status.hpp"

namespace ptreclaim::runtime {

inline constexpr std::size_t cost_kind_count = static_cast<std::size_t>(cost_kind::count_);
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
  // Sets a cost by its key; errc::invalid_argument for an unknown key.
  Status set(std::string_view key, std::uint64_t ns);
  // `key = value` lines, one per field, parse_cost_model's format.
  [[nodiscard]] std::string to_string() const;
};

// Parses `key = value` lines ('#' starts a comment, blank lines ignored) on top of `base`.
// errc::parse_error with the line number for malformed lines or unknown keys.
[[nodiscard]] Result<cost_model> parse_cost_model(std::string_view text, cost_model base = {});

}  // namespace ptreclaim::runtime
