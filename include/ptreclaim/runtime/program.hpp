// Programs and actors: the client code the executors run.
//
// A CPU runs one program: a function called once per step with the CPU number, doing one
// atomic piece of work (one map, one unmap, one retire...) and saying what comes next. Steps
// are atomic in the deterministic executor (no other entity runs inside one, except actors
// during wait_until), so a step must not wait for another CPU: hold no lock across steps,
// and spin only through platform::wait_until (which may wait for actors, never CPUs).
//
// Between steps a CPU passes its softirq point (expired timers and softirq tasklets run).
// After a step that returns yield / idle / sleep_for, and forever after `finished`, the CPU
// is at its scheduler point and also runs plain tasklets and work items. A program that only
// ever returns busy starves plain tasklets on its CPU, as a CPU that never schedules does.
//
// An actor (a device doing DMA, an IOMMU engine completing invalidations) is stepped the same
// way but is no CPU: current_cpu() is 0 there, context() is exec_context::actor, and it may
// not schedule tasklets or work (it has no CPU to queue them on). A daemon actor does not keep
// a run alive; a run stops once the non-daemon entities are done (executor::run).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace ptreclaim::runtime {

class step_result {
 public:
  enum class kind : std::uint8_t {
    busy,      // more to do at once; no scheduler point
    yield,     // more to do; pass the scheduler point first
    idle,      // nothing to do now: scheduler point, then poll again after cost_model::idle_poll_ns
               // (earlier if work arrives for this CPU)
    sleep,     // like idle, for sleep_ns
    finished,  // never call again
  };
  [[nodiscard]] static constexpr step_result busy() noexcept { return {kind::busy, 0}; }
  [[nodiscard]] static constexpr step_result yield() noexcept { return {kind::yield, 0}; }
  [[nodiscard]] static constexpr step_result idle() noexcept { return {kind::idle, 0}; }
  [[nodiscard]] static constexpr step_result sleep_for(std::uint64_t ns) noexcept {
    return {kind::sleep, ns};
  }
  [[nodiscard]] static constexpr step_result finished() noexcept { return {kind::finished, 0}; }

  [[nodiscard]] constexpr kind what() const noexcept { return kind_; }
  [[nodiscard]] constexpr std::uint64_t sleep_ns() const noexcept { return sleep_ns_; }

 private:
  constexpr step_result(kind k, std::uint64_t ns) noexcept : kind_(k), sleep_ns_(ns) {}
  kind kind_;
  std::uint64_t sleep_ns_;
};

// Called with the CPU number (== current_cpu()).
using program = std::function<step_result(unsigned cpu)>;
using actor_fn = std::function<step_result()>;
using actor_id = std::uint32_t;

struct actor_spec {
  std::string name;
  actor_fn step;
  bool daemon = true;  // does not keep the run alive
};

}  // namespace ptreclaim::runtime
