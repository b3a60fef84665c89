// The executor: the machine reclamation code runs on. It implements runtime::kernel
// (kernel.hpp: a ptreclaim::platform - time, current CPU, cost hooks, wait_until - plus the
// Xen/Linux-style deferred work and hotplug notifiers policies use) and adds what a machine
// needs around it: programs and actors, the run loop, hotplug control, targeted scheduling
// (tasklet_schedule_on, schedule_work_on), stop_timer and the state queries tests use.
// Reclamation policies see only the kernel; the simulator, tools and tests drive the executor.
//
// Two implementations run the same client code:
//   deterministic_executor  one OS thread, virtual time, seeded interleaving, cost model;
//   threaded_executor       one OS thread per CPU and per actor, real time.
// Client code takes an `executor&` (or, for a policy, a `kernel&`) and never asks which one it
// has.
//
// Typical use:
//   deterministic_executor ex(run_config{.cpus = 8, .seed = 42});
//   my_policy policy(ex);                          // registers notifiers, inits tasklets
//   for (unsigned c = 0; c < 8; ++c) ex.set_program(c, [&](unsigned cpu) { ... });
//   ex.add_actor({"iommu0", [&] { return engine.step(); }});
//   run_stats st = ex.run();                       // until quiescent or a limit
//
// Calling contexts. "CPU context" means code the executor runs as a CPU: a program step, a
// tasklet, a work item, a timer, a notifier. Each API says which contexts may call it.
// "Any context" includes actors and the controller (the thread that built the executor and
// calls run(), before and after run()).
//
// Memory ordering (threaded_executor): all deferred-work and hotplug state lives under one
// executor mutex (Xen's tasklet_lock is global too); client callbacks run with it released.
// Scheduling an item happens-before the item runs; an item's completion happens-before
// tasklet_kill/flush_work/kill_timer returns. Per-CPU client data needs no ordering of its
// own as long as only its CPU touches it: hotplug parks the dying CPU (at a step boundary,
// under the mutex) before its down_prepare notifiers run, which orders the dying
// CPU's last writes before the notifier's reads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/runtime/cost_model.hpp"
#include "ptreclaim/runtime/cpu.hpp"
#include "ptreclaim/runtime/deferred.hpp"
#include "ptreclaim/runtime/hotplug.hpp"
#include "ptreclaim/runtime/kernel.hpp"
#include "ptreclaim/runtime/program.hpp"

namespace ptreclaim::runtime {

struct run_config {
  unsigned cpus = 4;       // CPU slots, 1..limits::max_cpus
  cpu_mask online{};       // CPUs online at start; empty = all of [0, cpus)
  std::uint64_t seed = 1;  // deterministic: tie breaks, jitter, hotplug runner choice
  cost_model costs{};      // deterministic only
  // Limits. The deterministic executor stops when the next step would start after
  // virtual_time_limit_ns or after max_steps steps; the threaded one after real_time_limit_ns.
  std::uint64_t virtual_time_limit_ns = ~std::uint64_t{0};
  std::uint64_t max_steps = std::uint64_t{1} << 32;
  std::uint64_t real_time_limit_ns = std::uint64_t{60} * 1000 * 1000 * 1000;
  unsigned max_actors = 64;  // <= max_actors_limit
  // deterministic: page-table cache lines whose last writer and readers it remembers
  // (touch_table_line), in a direct-mapped table of this many slots (a power of two <=
  // max_pt_lines; 0 = charge no page-table line). 2^16 slots cover 4 MiB of tables (1,024 frames)
  // in 1.5 MiB; a line whose slot another line took is forgotten and its next touch is free.
  unsigned pt_lines = 1u << 16;
  unsigned max_notifiers = 64;
  dead_cpu_work on_cpu_dead = dead_cpu_work::park;  // see hotplug.hpp
  // threaded: how long a hotplug operation waits for a CPU to reach a step boundary before it
  // asserts (a step that waits for the CPU running the hotplug would deadlock).
  std::uint64_t park_timeout_ns = std::uint64_t{10} * 1000 * 1000 * 1000;
  // A scheduled cpu_down a notifier defers (notify_result::defer) runs again this much later;
  // its last try (after hotplug_max_defers defers) may not defer, so it fails or succeeds.
  // Later scheduled events for the same CPU wait behind it: an offline/online pair keeps its
  // order.
  std::uint64_t hotplug_defer_ns = 2000;
  unsigned hotplug_max_defers = 1000;
  // The watchdog: a run whose `progress` probe (a count that only grows while the run gets
  // somewhere, e.g. operations done plus frames freed) stays unchanged for `stall_steps` steps
  // (deterministic) or `stall_real_ns` of real time (threaded) stops with
  // stop_reason::no_progress. 0 or no probe: off.
  std::function<std::uint64_t()> progress{};
  std::uint64_t stall_steps = 0;
  std::uint64_t stall_real_ns = 0;
};
inline constexpr unsigned max_actors_limit = 256;
inline constexpr unsigned max_pt_lines = 1u << 24;  // run_config::pt_lines (384 MiB of slots)

enum class stop_reason : std::uint8_t {
  quiescent,    // all programs finished, non-daemon actors finished, hotplug events done,
                // no tasklet/work/timer pending on an online CPU and nothing running
  time_limit,   // virtual (deterministic) or real (threaded) time limit
  step_limit,   // deterministic max_steps
  stalled,      // deterministic: nothing can run, yet not quiescent (programs or work only on
                // offline CPUs)
  requested,    // request_stop(): the client decided the run is over
  no_progress,  // the watchdog (run_config::progress) saw no progress within its bound
};
[[nodiscard]] const char* stop_reason_name(stop_reason r) noexcept;

struct cpu_run_stats {
  std::uint64_t program_steps = 0;
  std::uint64_t tasklets = 0;  // plain tasklets run on this CPU
  std::uint64_t softirq_tasklets = 0;
  std::uint64_t work_items = 0;
  std::uint64_t timers = 0;
  std::uint64_t clock_ns = 0;  // deterministic: the CPU's virtual clock at the end
};

// Virtual time lost on shared objects of one name (platform::name_shared; unnamed ones are summed
// as "unnamed lock" / "unnamed line"). Deterministic executor only: the threaded one pays real
// contention and reports none.
struct contention_stat {
  std::string name;
  bool lock = false;           // a lock (else a cache line)
  std::uint64_t accesses = 0;  // lock: acquisitions; line: touches that moved the line
  std::uint64_t waits = 0;     // lock: acquisitions that waited for a holder; line: transfers
                               // that queued behind another transfer of the line
  std::uint64_t delay_ns = 0;  // CPU time those callers lost (waiting, plus transfers);
                               // device and IOMMU actors' delays are not counted
  std::uint64_t hold_ns = 0;   // lock: time held in all
};

struct run_stats {
  stop_reason reason = stop_reason::quiescent;
  std::uint64_t elapsed_ns = 0;  // virtual (deterministic: max clock) or real time of run()
  std::uint64_t trace_hash = 0;  // deterministic only (0 for threaded)
  std::uint64_t steps = 0;       // all entities
  std::vector<cpu_run_stats> cpu;
  std::vector<std::uint64_t> actor_steps;
  std::uint64_t tasklets_run = 0, softirq_tasklets_run = 0, work_run = 0, timers_fired = 0;
  std::uint64_t cpu_downs = 0, cpu_down_failures = 0, cpu_ups = 0, cpu_up_failures = 0;
  std::uint64_t hotplug_rejected = 0;  // scheduled hotplug events refused (invalid or busy)
  std::uint64_t hotplug_defers = 0;    // times a scheduled cpu_down waited for a safe point
  // Left at the end on offline CPUs (dead_cpu_work::park) or, for any stop other than
  // quiescent, anywhere.
  std::uint64_t stranded_tasklets = 0, stranded_work = 0, stranded_timers = 0;
  bool programs_finished = false;
  // Deterministic only: by delay_ns, largest first; and the virtual time CPUs spent in
  // wait_until (spinning for an invalidation, a flush), summed over CPUs.
  std::vector<contention_stat> contention;
  std::uint64_t cpu_wait_ns = 0;
};

// What is queued on one CPU right now (tests, S4 checks).
struct pending_counts {
  std::uint32_t plain_tasklets = 0;
  std::uint32_t softirq_tasklets = 0;
  std::uint32_t work_items = 0;
  std::uint32_t timers = 0;
  [[nodiscard]] std::uint32_t total() const noexcept {
    return plain_tasklets + softirq_tasklets + work_items + timers;
  }
};

class executor : public kernel {
 public:
  explicit executor(run_config config);
  ~executor() override;

  // ---- CPUs (any context) ----
  [[nodiscard]] unsigned cpu_count() const noexcept final { return cpus_; }
  // The CPU the caller runs as; 0 in actors and the controller (see on_cpu()).
  [[nodiscard]] unsigned current_cpu() const noexcept final;
  [[nodiscard]] bool on_cpu() const noexcept;  // caller runs in CPU context
  [[nodiscard]] exec_context context() const noexcept;
  [[nodiscard]] bool in_softirq() const noexcept { return context() == exec_context::softirq; }
  [[nodiscard]] bool cpu_online(unsigned cpu) const;
  [[nodiscard]] cpu_mask online_mask() const;
  [[nodiscard]] const run_config& config() const noexcept { return config_; }

  // ---- setup (controller, before run) ----
  void set_program(unsigned cpu, program p);
  actor_id add_actor(actor_spec spec);
  // Performed by the controller at `at_ns` during run() (see cpu_down for where they run).
  void schedule_hotplug(hotplug_event e);

  // ---- tasklets ----
  // (Re)initialises t: not dead, not scheduled. Precondition: t is neither queued nor running
  // (kill it first). Any context.
  void tasklet_init(tasklet& t, std::function<void()> fn,
                    tasklet_kind kind = tasklet_kind::plain) final;
  // Schedules t on the current CPU. CPU context only. Returns false when nothing changed: t is
  // already queued on this CPU, or dead. Queued on another CPU: moved here (Xen). Running:
  // it runs again after the current run finishes, on this CPU.
  bool tasklet_schedule(tasklet& t) final;
  // As tasklet_schedule, on `cpu` (online or not: on an offline CPU it waits, see hotplug.hpp).
  // Any context.
  bool tasklet_schedule_on(tasklet& t, unsigned cpu);
  // Unqueues t, waits until it is not running, and marks it dead: it will not run until the
  // next tasklet_init. Any context except t's own function.
  void tasklet_kill(tasklet& t) final;
  [[nodiscard]] bool tasklet_is_scheduled(const tasklet& t) const;
  [[nodiscard]] bool tasklet_is_running(const tasklet& t) const;
  [[nodiscard]] bool tasklet_is_dead(const tasklet& t) const;

  // ---- softirq ----
  // Runs this CPU's pending softirq work (expired timers, softirq tasklets) until none is
  // left; never plain tasklets or work. A no-op in softirq context (softirqs do not nest).
  // CPU context only.
  void process_pending_softirqs() final;

  // ---- workqueue (system-wide, bound) ----
  // Any context. Precondition for schedule_*: w initialised.
  void work_init(work_item& w, std::function<void()> fn) final;
  // Queues w on the current CPU. CPU context only. Returns false and does nothing if w is
  // already pending. If w is running, it is queued on the CPU running it (so it never runs
  // concurrently with itself) and runs again afterwards.
  bool schedule_work(work_item& w) final;
  bool schedule_work_on(unsigned cpu, work_item& w);  // any context
  // Waits until w is neither pending nor running. A pending w on the caller's own CPU or on an
  // offline CPU is run right here (the kworker preempting the caller); on another CPU it is
  // waited for (deterministic: run at once as that CPU). Returns true if it waited or ran w.
  // CPU context or controller; not from w itself.
  bool flush_work(work_item& w) final;
  [[nodiscard]] bool work_pending(const work_item& w) const final;

  // ---- timers (Xen: init_timer / set_timer / stop_timer / kill_timer) ----
  void timer_init(timer& t, std::function<void()> fn, unsigned cpu) final;  // any context
  // Arms (or re-arms) t to fire at platform time expires_ns on its CPU. Ignored if killed.
  void set_timer(timer& t, std::uint64_t expires_ns) final;
  bool stop_timer(timer& t);  // disarms; returns whether it was armed
  void kill_timer(
      timer& t) final;  // disarms, waits until not running, ignores set_timer until init
  [[nodiscard]] bool timer_is_armed(const timer& t) const;

  // ---- hotplug ----
  // True while a scheduled cpu_down's down_prepare may answer notify_result::defer (not on
  // its last try, and never for cpu_down called directly).
  [[nodiscard]] bool hotplug_may_defer() const noexcept {
    return may_defer_.load(std::memory_order_relaxed);
  }
  // True while a scheduled cpu_down of `cpu` that a notifier deferred waits for its next try
  // (until that try ends). A deferring notifier's state is stale once this is false.
  [[nodiscard]] bool hotplug_down_waiting(unsigned cpu) const;
  // Registers n (called in registration order). With replay_online, n immediately receives
  // up_prepare then online for every online CPU, in the caller's context. Any context, but
  // not while a hotplug operation is in progress.
  notifier_id register_cpu_notifier(cpu_notifier n, bool replay_online = false) final;
  void unregister_cpu_notifier(notifier_id id) final;
  // Takes `cpu` offline (sequence in hotplug.hpp). From CPU context the notifiers run on the
  // calling CPU (it must not be `cpu`); from the controller on an online CPU != cpu that the
  // executor picks (deterministic: seeded choice; threaded: the lowest, whose thread is held at
  // a step boundary meanwhile, so per-CPU data keeps one owner). Not from actors.
  // Errors: invalid_argument (already offline, last online CPU, the caller's own CPU),
  // busy (vetoed, failure injected, or another hotplug operation in progress).
  Status cpu_down(unsigned cpu);
  // Brings `cpu` online; same contexts. Errors: invalid_argument (already online), busy
  // (vetoed or another hotplug operation in progress).
  Status cpu_up(unsigned cpu);
  // Test hook: the next `count` cpu_down calls fail after down_prepare (-> down_failed).
  void inject_cpu_down_failure(unsigned count = 1);
  // Queued on `cpu` now (works for offline CPUs: what they hold stranded). Any context.
  [[nodiscard]] pending_counts pending_on(unsigned cpu) const;

  // ---- actors ----
  // Ends actor `id`'s idle/sleep now (e.g. a doorbell write). Any context.
  virtual void wake_actor(actor_id id) = 0;

  // ---- running ----
  // Runs until stop (run_stats::reason). Once per executor. Controller only.
  virtual run_stats run() = 0;
  // Ends run() at the next step boundary (stop_reason::requested), whatever is still armed or
  // queued. Any context, any thread.
  void request_stop() noexcept {
    stop_requested_.store(true, std::memory_order_release);
    maybe_done_.notify_all();
  }
  // Deterministic: the running trace hash (0 for threaded).
  [[nodiscard]] virtual std::uint64_t trace_hash() const noexcept { return 0; }
  // Validates internal structure (queues, counters). Any time no callback is running.
  void check_invariants() const;
  // Unqueues every tasklet, work item and timer (they will not run), so client objects can be
  // destroyed after a run that stopped on a limit. Controller only, not during run().
  void discard_pending();

 protected:
  struct cpu_slot;
  struct actor_slot;
  using lock_t = std::unique_lock<std::mutex>;

  // Who the calling thread runs as; one per thread (the deterministic executor nests them).
  struct tls_context {
    const executor* owner = nullptr;
    unsigned cpu = no_cpu;    // CPU slot, or no_cpu
    unsigned actor = no_cpu;  // actor index, or no_cpu
    exec_context kind = exec_context::none;
  };
  // RAII: the calling thread runs as (cpu|actor, kind) until destruction.
  class context_guard {
   public:
    context_guard(const executor& ex, unsigned cpu, unsigned actor, exec_context kind) noexcept;
    ~context_guard();
    context_guard(const context_guard&) = delete;
    context_guard& operator=(const context_guard&) = delete;

   private:
    tls_context saved_;
  };
  [[nodiscard]] static tls_context& tls() noexcept;
  [[nodiscard]] const tls_context* mine() const noexcept;  // tls if it belongs to this

  // Executor-specific hooks, called with mu_ held unless stated.
  // A tasklet or work item became runnable on `cpu` at platform time `at_ns`, or (is_timer) a
  // timer was armed there.
  virtual void on_cpu_work(unsigned cpu, std::uint64_t at_ns, bool is_timer) = 0;
  // Waits for a change (an item finished running). Deterministic: asserts (nothing can change
  // inside a step). Threaded: waits on changed_.
  virtual void wait_for_change(lock_t& lock) = 0;
  // flush_work of an item pending on another online CPU.
  virtual void flush_remote(lock_t& lock, work_item& w) = 0;
  // Hotplug: park `cpu` (it stops at a step boundary) / let it run again. Called without mu_.
  virtual void park_cpu(unsigned cpu) = 0;
  virtual void unpark_cpu(unsigned cpu) = 0;
  // Hotplug started by the controller (or an actor): run `op` as an online CPU != target.
  virtual Status controller_hotplug(hotplug_op op, unsigned target) = 0;
  // Accounting of executor actions in virtual time (deterministic only). Called without mu_.
  virtual void charge_ns(std::uint64_t /*ns*/) noexcept {}

  // What one CPU step did (trace records, statistics).
  enum class ran : std::uint8_t { nothing, timer, softirq_tasklet, tasklet, work, program_step };

  // Shared machinery for the executors' loops (mu_ held on entry and exit; released around
  // the callback). Each runs at most one item as CPU `cpu` and says what it ran.
  // softirq: the earliest expired timer, else a softirq tasklet. scheduled: a plain tasklet,
  // else a work item.
  ran run_one_softirq(lock_t& lock, unsigned cpu);
  ran run_one_scheduled(lock_t& lock, unsigned cpu);
  // Records a program step's result in the CPU's state (mu_ held).
  void apply_step_result(unsigned cpu, step_result r, std::uint64_t now_ns);
  // Programs remain, but only on offline CPUs, and nothing else can ever run (mu_ held).
  [[nodiscard]] bool stalled() const;
  // Called by run() implementations at start (mu_ held).
  void start_run();
  void run_work(lock_t& lock, work_item& w, unsigned cpu);  // w already unqueued
  // Unlinks a pending w from its CPU's queue and returns that CPU (mu_ held).
  unsigned unqueue_work(work_item& w);
  [[nodiscard]] bool has_softirq_work(unsigned cpu, std::uint64_t now_ns) const;
  [[nodiscard]] bool has_scheduled_work(unsigned cpu) const;
  [[nodiscard]] std::uint64_t next_timer_ns(unsigned cpu) const;  // ~0 if none
  [[nodiscard]] bool quiescent() const;                      // see stop_reason::quiescent; mu_ held
  void fill_stats(run_stats& st, bool at_quiescence) const;  // mu_ held
  Status hotplug(hotplug_op op, unsigned target);            // as CPU current_cpu(); mu_ not held
  void hotplug_events_remaining_add(int delta) { hotplug_events_left_ += delta; }
  // Runs the scheduled event hotplug_events_[next++] at `now_ns` (the schedule's clock; mu_
  // not held), re-queueing it when a notifier defers it (see run_config::hotplug_defer_ns).
  void run_scheduled_hotplug(std::size_t& next, std::uint64_t now_ns);

  run_config config_;
  unsigned cpus_;
  mutable std::mutex mu_;
  // Xen's tasklet_lock (xen/common/tasklet.c: "Protects all lists and tasklet structures"),
  // one lock over every CPU's tasklet lists: taken to schedule a tasklet and twice around each
  // run (tasklet_lock_pass). Only its address is used, reported to the platform, so that the
  // deterministic executor makes CPUs contend on it in virtual time; the threaded executor's
  // mu_ serialises the same paths already.
  alignas(64) char tasklet_lock_ = 0;
  void tasklet_lock_pass();
  std::condition_variable changed_;  // an item finished running, an actor finished, a CPU parked
  // Threads waiting on changed_ (tasklet_kill, flush_work, kill_timer, a CPU being parked).
  // The end of an item notifies only when one waits: a futex wake per tasklet or timer would
  // cost a threaded run microseconds per item that no kernel pays. Under mu_.
  unsigned change_waiters_ = 0;
  void notify_changed() {
    if (change_waiters_ != 0) changed_.notify_all();
  }
  std::vector<std::unique_ptr<cpu_slot>> slot_;
  std::vector<std::unique_ptr<actor_slot>> actors_;
  std::vector<hotplug_event> hotplug_events_;  // sorted by at_ns when run() starts
  bool ran_ = false;
  std::atomic<bool> stop_requested_{false};
  // Wakes the controller of a threaded run (request_stop, a CPU going idle); unused by the
  // deterministic one.
  std::condition_variable maybe_done_;

  // Under mu_.
  unsigned programs_active_ = 0;
  unsigned nondaemon_actors_active_ = 0;
  unsigned running_items_ = 0;
  int hotplug_events_left_ = 0;
  bool hotplug_busy_ = false;
  bool down_deferred_ = false;                 // the last do_cpu_down got notify_result::defer
  std::atomic<bool> may_defer_{false};         // see hotplug_may_defer()
  std::vector<std::uint64_t> deferred_until_;  // per CPU: a deferred cpu_down's next try, or 0
  unsigned injected_down_failures_ = 0;
  run_stats counters_;  // event counters only
  struct notifier_entry {
    notifier_id id;
    std::shared_ptr<cpu_notifier> fn;
  };
  std::vector<notifier_entry> notifiers_;
  notifier_id next_notifier_id_ = 1;

 private:
  void enqueue_tasklet(tasklet& t, unsigned cpu);
  void run_tasklet(lock_t& lock, tasklet& t, unsigned cpu);
  void enqueue_work(work_item& w, unsigned cpu);
  // Notifies in order; returns how many were called before a veto (or all), and whether
  // one vetoed. Called without mu_.
  std::size_t notify(cpu_event e, unsigned cpu, std::size_t limit, bool* vetoed,
                     bool* deferred = nullptr);
  std::vector<notifier_entry> notifier_snapshot() const;
  Status do_cpu_down(unsigned target, bool force_fail);
  Status do_cpu_up(unsigned target);
};

// Per-CPU state shared by both executors (the executor's own; clients use per_cpu<T>).
struct executor::cpu_slot {
  bool online = false;
  detail::fifo<tasklet> plain;
  detail::fifo<tasklet> softirq;
  detail::fifo<work_item> work;
  detail::fifo<timer> timers;  // unsorted: a CPU holds a handful
  program prog;
  bool prog_active = false;
  bool sched_point = true;         // last step ended at the scheduler point
  std::uint64_t prog_wake_ns = 0;  // program runnable again at this platform time
  cpu_run_stats stats;
};

struct executor::actor_slot {
  actor_spec spec;
  bool finished = false;
  std::uint64_t wake_ns = 0;
  std::uint64_t steps = 0;
};

}  // namespace ptreclaim::runtime
