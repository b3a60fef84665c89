// The kernel: the narrow interface reclamation policies run on. It is a ptreclaim::platform
// (time, current CPU, cost and lock hooks, wait_until) plus the few Xen/Linux services a
// policy uses: tasklets, the softirq point, one bound workqueue, per-CPU timers and the CPU
// hotplug notifier chain. Nothing else: no programs, actors, run loop or hotplug control.
//
// Implementations:
//   runtime::executor (executor.hpp)  both executors, deterministic and threaded: the
//                                     simulator and the tests;
//   bench_kernel (bench/reclaim)      Google Benchmark threads as CPUs, real time;
//   tests/unit/reclaim/kernel_test    a hand-written one-CPU kernel, proof that this is enough.
// Code under reclaim includes this header, never executor.hpp.
//
// Calling contexts. "CPU context" is code the kernel runs as a CPU: a process-context step, a
// tasklet, a work item, a timer, a CPU notifier. "Any context" adds code running as no CPU (an
// actor, the controller that builds and destroys policies). Where each deferred kind runs is in
// deferred.hpp; the hotplug sequence and what a notifier may touch is in hotplug.hpp.
//
// Blocking. Only the calls documented as "waits" block, and only until an item that is running
// (or, for flush_work, queued) finishes: the threaded executor waits on its condition variable,
// the deterministic one runs a queued item at once and never finds one running elsewhere. The
// caller must not hold a lock that item takes. Everything else returns without waiting for
// another CPU (wait_until spins for the condition it is given).
//
// Memory ordering, every implementation: scheduling an item (tasklet_schedule, schedule_work,
// set_timer) happens-before the item runs; an item's completion happens-before the
// tasklet_kill, flush_work or kill_timer that waited for it returns. A notifier call for CPU c
// happens-after c's last step before it went down (c is parked first), so a notifier may read
// c's per-CPU data. Beyond that the kernel publishes nothing: policies order their own data.
#pragma once

#include <cstdint>
#include <functional>

#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/runtime/deferred.hpp"
#include "ptreclaim/runtime/hotplug.hpp"

namespace ptreclaim::runtime {

class kernel : public platform {
 public:
  // From platform (platform.hpp): now_ns, current_cpu, cpu_count, charge, touch_line,
  // lock_acquire, lock_release, wait_until. A policy's spinlock reports to its kernel.

  // ---- tasklets (Xen: tasklet_init / softirq_tasklet_init / tasklet_schedule / kill) ----
  // (Re)initialises t: not dead, not scheduled; kind says where it runs (deferred.hpp).
  // Precondition: t is neither queued nor running (kill it first). Any context.
  virtual void tasklet_init(tasklet& t, std::function<void()> fn,
                            tasklet_kind kind = tasklet_kind::plain) = 0;
  // Schedules t on the current CPU. CPU context only; never waits. Returns false when nothing
  // changed: t is already queued on this CPU, or dead. Queued on another CPU: moved here (Xen).
  // Running: it runs again after the current run finishes, on this CPU.
  virtual bool tasklet_schedule(tasklet& t) = 0;
  // Unqueues t, waits until it is not running, and marks it dead: it will not run until the
  // next tasklet_init. Any context except t's own function.
  virtual void tasklet_kill(tasklet& t) = 0;

  // ---- softirq ----
  // Runs this CPU's pending softirq work (expired timers, softirq tasklets) until none is left;
  // never plain tasklets or work items. A no-op in softirq context (softirqs do not nest).
  // CPU context only; the caller may hold no lock such work takes.
  virtual void process_pending_softirqs() = 0;

  // ---- workqueue (system-wide, bound to the queuing CPU) ----
  // Initialises w. Any context, while w is neither pending nor running.
  virtual void work_init(work_item& w, std::function<void()> fn) = 0;
  // Queues w on the current CPU. CPU context only; never waits. Returns false and does
  // nothing if w is already pending. If w is running, it is queued on the CPU running it (so
  // it never runs concurrently with itself) and runs again afterwards.
  virtual bool schedule_work(work_item& w) = 0;
  // Waits until w is neither pending nor running. A pending w on the caller's own CPU (or an
  // offline one) is run right here; on another CPU it is waited for. Returns true if it
  // waited or ran w. CPU context or the controller; not from w itself.
  virtual bool flush_work(work_item& w) = 0;
  // w is queued and has not started. Any context; a snapshot.
  [[nodiscard]] virtual bool work_pending(const work_item& w) const = 0;

  // ---- per-CPU timers (Xen: init_timer / set_timer / kill_timer) ----
  // Initialises t to fire on `cpu` in softirq context. Any context, while t is not armed.
  virtual void timer_init(timer& t, std::function<void()> fn, unsigned cpu) = 0;
  // Arms (or re-arms, moving its expiry) t to fire at platform time expires_ns (now_ns()) on
  // its CPU, at that CPU's first softirq point at or after it. Ignored if killed. Any context;
  // never waits.
  virtual void set_timer(timer& t, std::uint64_t expires_ns) = 0;
  // Disarms t, waits until it is not running, and ignores set_timer until the next
  // timer_init. Any context except t's own function.
  virtual void kill_timer(timer& t) = 0;

  // ---- CPU hotplug notifiers (hotplug.hpp) ----
  // Registers n, called in registration order for every later cpu_up/cpu_down (a kernel
  // without hotplug never calls it again). With replay_online, n first receives up_prepare
  // then online for every online CPU, in the caller's context. Any context, but not while a
  // hotplug operation is in progress.
  virtual notifier_id register_cpu_notifier(cpu_notifier n, bool replay_online = false) = 0;
  // Removes a registered notifier: never called again. Same contexts as register_cpu_notifier
  // (not during a hotplug operation, so no call of it is in progress).
  virtual void unregister_cpu_notifier(notifier_id id) = 0;
};

}  // namespace ptreclaim::runtime
