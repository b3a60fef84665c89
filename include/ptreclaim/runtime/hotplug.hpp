// CPU hotplug events and notifiers (Xen's cpu_chain / Linux's CPU notifiers).
//
// Sequences the executors produce (notifiers are called in registration order):
//   cpu_up(c)      up_prepare [vetoed -> up_canceled to those already called] -> c online -> online
//   cpu_down(c)    c parks at a step boundary -> down_prepare [vetoed or failure injected ->
//                  down_failed -> c resumes] -> c goes offline -> dead
// c runs nothing from before down_prepare on, so every notifier may touch c's per-CPU data
// without racing with c. (In Xen the dying CPU may still run between DOWN_PREPARE and
// stop_machine; that window is not modelled: work c would have queued in it is queued before.)
// Every notifier call runs in the context of an ONLINE CPU other than the one changing state
// (current_cpu() is that CPU; context() is exec_context::notifier): the CPU that called
// cpu_down/cpu_up, or, for hotplug the controller starts, one the executor picks (see
// executor::cpu_down). So CPU_DEAD runs on a live CPU, as Xen's callback expects.
// Work left on a dead CPU (tasklets, work items, timers) is the notifiers' business, as in
// Xen and Linux; the executor neither runs it nor drops it (run_config::on_cpu_dead).
#pragma once

#include <cstdint>
#include <functional>

namespace ptreclaim::runtime {

enum class cpu_event : std::uint8_t {
  up_prepare,    // c is offline and about to come up; may veto
  up_canceled,   // an up_prepare veto: undo what up_prepare did
  online,        // c is online and running
  down_prepare,  // c is still online and about to go down; may veto
  down_failed,   // the down was vetoed or failed after down_prepare: c stays online
  dead,          // c is offline; runs on another online CPU
};
[[nodiscard]] const char* cpu_event_name(cpu_event e) noexcept;

// A notifier's answer; `veto` is honoured for up_prepare and down_prepare only. `defer`
// (down_prepare, only while executor::hotplug_may_defer(); otherwise it counts as a veto) says
// c is inside a region stop_machine cannot interrupt (a hypercall between a retire and its
// caller's flush): notifiers already called get down_failed, as for a veto, and the scheduled
// event is tried again run_config::hotplug_defer_ns later, as Xen's stop_machine waits for
// every CPU to reach its stopper. The deferring notifier keeps whatever it did (so it can
// stop c at its next safe point); it sees down_prepare again on the next try.
enum class notify_result : std::uint8_t { done, veto, defer };

using cpu_notifier = std::function<notify_result(cpu_event event, unsigned cpu)>;
using notifier_id = std::uint32_t;

enum class hotplug_op : std::uint8_t {
  down,       // cpu_down
  up,         // cpu_up
  down_fail,  // cpu_down with a failure injected after down_prepare (-> down_failed)
};

// A hotplug operation the controller performs at a platform time (virtual for the
// deterministic executor, real since run() for the threaded one).
struct hotplug_event {
  std::uint64_t at_ns = 0;
  hotplug_op op = hotplug_op::down;
  unsigned cpu = 0;
  unsigned defers = 0;  // times a `defer` answer moved this event later
};

// What happens to tasklets, work items and armed timers still queued on a CPU when it dies.
enum class dead_cpu_work : std::uint8_t {
  // They stay queued on the dead CPU, never run while it is offline, run again after cpu_up,
  // and are reported (executor::pending_on, run_stats::stranded_*). The notifier must move
  // them (Xen's free_pgt callback kills the tasklet in down_prepare and splices in dead).
  park,
  // Xen's own tasklet/timer notifiers: before client `dead` notifiers run, everything queued
  // on the dead CPU moves to the CPU running the notifier. A tasklet that asserts its CPU
  // then catches a policy that forgot to kill it.
  migrate,
};

}  // namespace ptreclaim::runtime
