// The deterministic executor: one OS thread, virtual time, seeded interleaving.
//
// Model. Every CPU and every actor is an entity with its own virtual clock. The scheduler
// repeatedly picks the entity that can act earliest (smallest ready time; ties broken by the
// seeded PRNG) and runs ONE step of it:
//   CPU    one expired timer or softirq tasklet (its softirq point), else, at the scheduler
//          point, one plain tasklet or work item, else one program step;
//   actor  one call of its step function;
//   hotplug a scheduled hotplug_event, run as an online CPU the PRNG picks.
// A step advances the entity's clock by what it charged through the platform (charge,
// touch_line, lock_acquire) plus cost_model::step_ns and a seeded jitter in
// [0, step_jitter_ns], so different seeds give different interleavings and the same seed the
// same one. A CPU with nothing to do sleeps; work scheduled on it wakes it at the sender's
// time (an item can be picked up up to one sender step early: cross-CPU causality is kept to
// step granularity).
//
// Contention in virtual time. A lock remembers its recent holds (busy_intervals.hpp) and who
// held it last; an acquirer whose clock falls inside a hold waits until it ends, and pays a
// cache_line_transfer when the last holder was another entity. (Only holds it falls into: an
// entity far ahead after a long step does not push an earlier-clocked one forward.)
// touch_line(addr, write) models MESI-like lines: a write after another entity's access costs a
// transfer, reads of a line nobody else has written since are free, and transfers of one line
// happen one at a time (a writer, or a reader of a modified line, waits for the transfer before
// it), so N CPUs writing one counter are as serial as N CPUs taking one lock. This makes one global
// lock, or one hot atomic, show its real scaling at 64-256 simulated CPUs.
// touch_table_line(entry, write) applies the same rules to the lines of page-table entries the
// page-table code reads and writes, with a bounded table instead (run_config::pt_lines slots,
// indexed by line address modulo its size: lines in one frame pool collide by their distance
// alone, so where the heap put the pool cannot change a run) and no transfer queue: a transfer
// costs cache_line_transfer, charged at once.
//
// Rules for client code here (asserted): a lock is released in the step that took it; a step
// never waits for another CPU (wait_until runs actors only); tasklet_kill/flush_work never wait
// for an item that is running on the current call chain.
//
// Determinism: same config + same programs/actors (themselves deterministic) + same seed =>
// the same sequence of steps, the same virtual times and the same trace_hash().
#pragma once

#include <bitset>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/runtime/busy_intervals.hpp"
#include "ptreclaim/runtime/executor.hpp"

namespace ptreclaim::runtime {

// One executed step, for trace sinks (tests comparing interleavings, debugging output).
struct trace_event {
  std::uint64_t index = 0;  // step number, from 0
  bool is_actor = false;
  unsigned entity = 0;  // CPU number or actor id
  enum class what : std::uint8_t {
    timer,
    softirq_tasklet,
    tasklet,
    work,
    program_step,
    hotplug,
    actor,
    idle
  };
  what kind = what::program_step;
  std::uint64_t start_ns = 0, end_ns = 0;
};
[[nodiscard]] const char* trace_what_name(trace_event::what w) noexcept;

class deterministic_executor final : public executor {
 public:
  explicit deterministic_executor(run_config config);

  // platform
  [[nodiscard]] std::uint64_t now_ns() noexcept override;
  void charge(cost_kind kind, std::uint64_t count = 1) noexcept override;
  void touch_line(const void* line, bool write) noexcept override;
  void touch_table_line(const void* entry, bool write) noexcept override;
  void touch_table_lines(const void* first, unsigned lines) noexcept override;
  [[nodiscard]] bool tracks_table_lines() const noexcept override { return !table_lines_.empty(); }
  void lock_acquire(const void* lock) noexcept override;
  void lock_release(const void* lock) noexcept override;
  [[nodiscard]] bool lock_busy(const void* lock) noexcept override;
  void name_shared(const void* object, const char* name) noexcept override;
  // Inside a step: advances the caller's clock, running actors (never CPUs) in time order,
  // until done() or timeout_ns of virtual time passed; returns done().
  [[nodiscard]] bool wait_until(const std::function<bool()>& done,
                                std::uint64_t timeout_ns) override;

  run_stats run() override;
  [[nodiscard]] std::uint64_t trace_hash() const noexcept override { return hash_; }
  void wake_actor(actor_id id) override;

  // Virtual clocks (any time; not synchronised, single-threaded by construction).
  [[nodiscard]] std::uint64_t cpu_clock_ns(unsigned cpu) const;
  [[nodiscard]] std::uint64_t actor_clock_ns(actor_id id) const;
  // The cost model in use; may be changed between steps.
  [[nodiscard]] cost_model& costs() noexcept { return config_.costs; }
  void set_cost(cost_kind kind, std::uint64_t ns) noexcept { config_.costs.set_cost(kind, ns); }
  // Cache-line transfers touch_table_line charged so far (page-table lines only).
  [[nodiscard]] std::uint64_t table_line_transfers() const noexcept {
    return table_line_transfers_;
  }
  // Called after every step (before the next is picked).
  void set_trace_sink(std::function<void(const trace_event&)> sink) { sink_ = std::move(sink); }

 private:
  static constexpr unsigned max_entities = limits::max_cpus + max_actors_limit;
  static constexpr unsigned none = ~0u;
  static_assert(busy_intervals::capacity >= max_entities,
                "every entity must be able to queue on one lock at once");
  struct lock_state {
    busy_intervals held;            // recent holds: an acquirer waits for the one it falls into
    std::uint64_t taken_at_ns = 0;  // start of the current hold
    unsigned holder = none;
    unsigned last = none;
    std::uint64_t acquisitions = 0, waits = 0, delay_ns = 0, hold_ns = 0;  // contention figures
  };
  struct line_state {
    unsigned owner = none;  // entity holding it modified
    std::bitset<max_entities> sharers;
    // Recent transfers of the line: one at a time, so writers that need it queue behind the
    // transfer their access falls into, as lock hand-overs do.
    busy_intervals transfers;
    std::uint64_t moves = 0, queued = 0, delay_ns = 0;  // contention figures
  };
  // One page-table line (touch_table_line): the compact form of line_state, with no transfer
  // history (its lines are rarely contended, and there are too many for 8 KiB each).
  struct table_line {
    std::uintptr_t line = 0;    // address / cache_line_size; 0 = empty slot
    unsigned owner = none;      // entity holding it modified
    std::uint64_t sharers = 0;  // bit (entity % 64): exact up to 64 CPUs and actors
  };

  void on_cpu_work(unsigned cpu, std::uint64_t at_ns, bool is_timer) override;
  void wait_for_change(lock_t& lock) override;
  void flush_remote(lock_t& lock, work_item& w) override;
  void park_cpu(unsigned cpu) override;
  void unpark_cpu(unsigned cpu) override;
  Status controller_hotplug(hotplug_op op, unsigned target) override;
  void charge_ns(std::uint64_t ns) noexcept override;

  [[nodiscard]] unsigned entity() const noexcept;                // current entity or none
  [[nodiscard]] std::uint64_t cpu_ready_ns(unsigned cpu) const;  // mu_ held
  [[nodiscard]] std::uint64_t actor_ready_ns(unsigned a) const;  // mu_ held
  void cpu_step(unsigned cpu);
  void actor_step(unsigned a);
  void hotplug_step(const hotplug_event& e);
  void end_step(unsigned entity, trace_event::what kind, std::uint64_t start_ns);
  void mix(std::uint64_t v) noexcept;
  // One page-table line's move (counted), without its charge; and the charge of one transfer.
  bool table_line_moves(unsigned e, std::uintptr_t line, bool write) noexcept;
  void charge_table_transfer(unsigned e) noexcept;
  [[nodiscard]] std::vector<contention_stat> contention() const;  // mu_ held

  prng rng_;
  std::vector<std::uint64_t> clock_;  // per entity: CPUs, then actors
  std::vector<unsigned> locks_held_;  // per entity
  std::uint64_t global_now_ = 0;      // start time of the current top-level step
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
  std::uint64_t steps_ = 0;
  std::unordered_map<const void*, lock_state> locks_;
  std::unordered_map<std::uintptr_t, line_state> lines_;
  std::unordered_map<const void*, const char*> lock_names_;     // name_shared
  std::unordered_map<std::uintptr_t, const char*> line_names_;  // by line, name_shared
  std::uint64_t cpu_wait_ns_ = 0;                               // wait_until on CPUs
  std::vector<table_line> table_lines_;  // run_config::pt_lines slots, direct-mapped
  std::uint64_t table_line_transfers_ = 0;
  std::uint64_t table_line_delay_ns_ = 0;  // the CPUs' share of those transfers
  std::function<void(const trace_event&)> sink_;
};

}  // namespace ptreclaim::runtime
