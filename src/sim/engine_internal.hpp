// The engine's private parts: the simulated machine one run builds (frame pool, IOMMU model,
// page tables, executor, reclamation policy, safety monitor), the workload drivers that run as
// CPU programs, and the device and sampler actors. engine.cpp puts them together in run().
//
// What a step is (docs/engine.md has the long version). A CPU program step does ONE of:
//   begin+mutate  choose the next operation and do its first chunk of page-table mutations
//                 into a gather, then retire() what the gather released;
//   mutate        the next chunk of the same operation (+ retire);
//   softirq       process_pending_softirqs() (scenario.caller.softirq = before-caller-flush);
//   flush         the caller's own invalidation (scenario.caller.flush), then, optionally, a
//                 softirq point after it.
// Between the steps of one operation the program returns step_result::busy() (no scheduler
// point, so a plain tasklet cannot run there, as in Xen), and yield() once the operation is
// complete (batched flushing: once the batch is flushed). Device actors run between any two
// steps, so a walk can meet a table that was freed but not yet invalidated.
//
// Memory ordering (threaded executor): per-CPU driver and workload state is touched only by
// its CPU (hotplug parks a CPU at a step boundary). Shared run state is atomic: the done
// counter [en-1] release-increments pair with [en-2] the finisher's acquire loads so the finish
// times and pending_at_end written before the increment are visible; the device stop flag [en-3]
// release store pairs with [en-4] the actors' acquire loads; the actors' acknowledgements [en-5]
// pair with [en-6]. mid_op/going_down use seq_cst (a Dekker pair, see cpu_driver).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ptreclaim/base/prng.hpp"
#include "ptreclaim/iommu/device.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/reclaim/safety_monitor.hpp"
#include "ptreclaim/runtime/cpu.hpp"
#include "ptreclaim/runtime/executor.hpp"
#include "ptreclaim/runtime/program.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/testbed/testbed.hpp"
#include "sim/invariants.hpp"
#include "sim/iova_space.hpp"

namespace ptreclaim::sim::detail {

inline constexpr std::uint64_t two_mib = std::uint64_t{1} << 21;
inline constexpr std::uint64_t one_gib = std::uint64_t{1} << 30;
inline constexpr std::uint64_t page_bytes = 4096;

// A small lock-free ring of IOVA ranges, written by CPUs and sampled by device actors: the
// ranges most recently mapped (target = live) or released (target = replaced). Entries are
// hints: a device may find the range changed since (then it faults, which is counted).
class range_ring {
 public:
  static constexpr unsigned size = 64;
  void push(std::uint64_t first, std::uint64_t bytes) noexcept;
  // The i-th newest entry (0 = newest); false if empty.
  bool get(unsigned i, std::uint64_t& first, std::uint64_t& bytes) const noexcept;
  [[nodiscard]] unsigned filled() const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, size> e_{};  // iova | lg2(bytes); 0 = empty; relaxed
  std::atomic<std::uint32_t> next_{0};                // relaxed: hints only
};

// The engine's view of one testbed domain: which scenario group it belongs to, and the ranges
// its devices aim at.
struct domain_slot {
  std::uint16_t id = 0;  // software domain number (also its did on every unit)
  unsigned group = 0;
  pt::table* table = nullptr;  // owned by the testbed
  iommu::domain* dom = nullptr;
  range_ring live;
  range_ring replaced;
  range_ring unmapped;  // dma-storm: buffers whose unmap returned most recently
};

class machine;
class recorder;  // recorder.hpp: what a run records on request (sim::recording)

// A workload: what each operation of a CPU does to the page tables. Per-CPU state lives in
// the workload (indexed by CPU, touched only by that CPU).
class workload {
 public:
  virtual ~workload() = default;
  // Chooses CPU `cpu`'s next operation; returns the domain it works on.
  virtual domain_slot& begin_op(unsigned cpu) = 0;
  // Performs the next chunk of the current operation into `g` (cleared by the caller). Returns
  // true when the operation has no chunk left. Mutation errors (no_memory, address_in_use) are
  // part of the workload's life: counted, never fatal.
  virtual bool mutate(unsigned cpu, pt::gather& g) = 0;
  // A 64-bit summary of what the last mutate() did (operation trace for the trace hash).
  [[nodiscard]] virtual std::uint64_t last_trace(unsigned cpu) const = 0;
  // The IOVA region devices use by default: [0, region_bytes()).
  [[nodiscard]] virtual std::uint64_t region_bytes() const = 0;
  // Mutation errors seen (no_memory and the like), for notes.
  [[nodiscard]] virtual std::uint64_t errors() const = 0;
  // Fills that ended in a 2M / 1G superpage (superpage-churn only). Read after the run.
  [[nodiscard]] virtual std::uint64_t coalesced_2m() const { return 0; }
  [[nodiscard]] virtual std::uint64_t coalesced_1g() const { return 0; }
  // dma-storm: strict callers' unmaps on `cpu` since its last flush have returned (the flush
  // completed, or there is none). Lazy DMA: packets dropped for want of a free IOVA.
  virtual void caller_flushed(unsigned /*cpu*/) {}
  [[nodiscard]] virtual std::uint64_t iova_exhausted() const { return 0; }
  // What CPU `cpu`'s current operation is, for a recording (recorder.hpp): a short name
  // ("fill-2m") and where ("domain 2, block 0x40000000"). Read only when recording.
  struct op_label {
    std::string name = "operation";
    std::string where;
  };
  [[nodiscard]] virtual op_label describe_op(unsigned /*cpu*/) const { return {}; }
};

std::unique_ptr<workload> make_superpage_churn(machine& m);
std::unique_ptr<workload> make_sva_kernel(machine& m);
std::unique_ptr<workload> make_dma_storm(machine& m);

// Per-CPU state of the operation driver (the CPU program).
struct cpu_driver {
  enum class phase : std::uint8_t { between_ops, mutate, softirq, flush, done, finisher };
  phase ph = phase::between_ops;
  pt::gather g;
  domain_slot* dom = nullptr;
  bool last_chunk = false;
  std::uint64_t ops = 0;
  // Threaded runs: a copy of ops for the progress watcher thread (relaxed: only a figure shown).
  std::atomic<std::uint64_t> ops_seen{0};
  std::uint64_t caller_flushes = 0;
  std::uint64_t map_flushes = 0;  // of which after maps, for units in caching mode
  std::uint64_t trace = 0x9e3779b97f4a7c15ULL;
  // batched caller flushes: union of the owed ranges per domain, ops since the last flush
  struct owed {
    bool any = false;
    pt::gather g;  // range + hint only (no released frames)
  };
  std::vector<owed> batch;  // by domain index
  unsigned batch_ops = 0;
  std::uint64_t finish_ns = 0;
  std::atomic<bool> finished{false};  // [en-7] release store pairs with [en-8] in the finisher
  // Hotplug handshake (seq_cst, Dekker): the program sets mid_op then reads going_down before
  // starting an operation; the down_prepare notifier sets going_down then reads mid_op and
  // defers the offline if set (the executor tries again shortly). Either the CPU does not
  // start, or the offline waits: a CPU never goes down between a retire and its caller's
  // flush (Xen's stop_machine cannot interrupt a hypercall either).
  std::atomic<bool> mid_op{false};
  std::atomic<bool> going_down{false};
};

// Everything one run builds. Built, run and destroyed by sim::run() on the calling thread.
class machine {
 public:
  machine(const scenario& s, const run_options& o, std::uint64_t seed);
  ~machine();
  machine(const machine&) = delete;
  machine& operator=(const machine&) = delete;

  // Builds pool, executor, IOMMU units, domains, tables, devices, monitor, reclaimer, programs
  // and actors. invalid_argument / no_memory on failure.
  Status build();
  // Runs the executor until quiescent (the finisher tears the machine down at the end) and
  // fills `out`.
  void run(run_result& out);

  // --- what the workloads use (their own CPU's data only) ---
  const scenario& sc;
  const run_options& opt;
  const std::uint64_t seed;
  const unsigned cpus;
  std::vector<std::unique_ptr<domain_slot>> domains;
  [[nodiscard]] runtime::executor& ex() noexcept { return *ex_; }
  [[nodiscard]] mem::frame_pool& pool() noexcept { return *pool_; }
  [[nodiscard]] prng fork_rng(std::uint64_t salt) const noexcept { return root_.fork(salt); }
  // --- DMA (dma-storm) ---
  [[nodiscard]] bool lazy_dma() const noexcept { return sc.caller.flush == caller_flush::lazy; }
  // The IOVA space (built once: exposure for every DMA run, the allocator's states for lazy
  // DMA), the monitor's iova_sink.
  iova_space* make_iova_space(std::uint64_t slice_bytes, std::uint64_t buffer_bytes);
  // Lazy DMA: the caller unmapped `r` (its PTEs cleared into g, not invalidated) and hands it
  // to the policy; `r` was allocated again (before its map).
  void lazy_unmap(domain_slot& dom, const pt::gather& g, const reclaim::iova_range& r);
  void iova_allocated(domain_slot& dom, const reclaim::iova_range& r);

 private:
  enum class finish_phase : std::uint8_t { wait_workload, wait_l1, stop_actors, teardown, done };
  struct device_state;

  // engine.cpp: runs the executor (threaded: with a progress watcher thread).
  runtime::run_stats run_executor();
  // engine_results.cpp: what the run measured into `out`; the notes on how it stopped (returns
  // the watchdog's account if it stopped the run, else ""); the verdicts' evidence.
  std::string note_how_it_stopped(const runtime::run_stats& st, run_result& out);
  void collect_devices(run_result& out) const;
  void collect_reclaim(run_result& out, std::uint64_t caller_flushes) const;
  void collect_hotplug(const runtime::run_stats& st, run_result& out);
  void collect_dma(run_result& out);
  [[nodiscard]] invariant_evidence evidence(const runtime::run_stats& st, const run_result& out,
                                            const std::string& stuck) const;

  runtime::step_result program_step(unsigned cpu);
  runtime::step_result finisher_step();
  runtime::step_result complete_op(unsigned cpu, cpu_driver& d);
  void caller_flush(unsigned cpu, cpu_driver& d);
  [[nodiscard]] reclaim::invalidation_range caller_range_of(const domain_slot& dom,
                                                            const pt::gather& g,
                                                            bool batched) const;
  void flush_batch(unsigned cpu, cpu_driver& d);
  void flush_mapped(cpu_driver& d);
  bool workload_over(const cpu_driver& d);
  void finish_workload(unsigned cpu, cpu_driver& d);
  void report_progress();
  // Threaded runs: reports progress from ops_seen every 100 ms until `stop` is set.
  void watch_progress(const std::atomic<bool>& stop, std::mutex& mu, std::condition_variable& cv);
  runtime::step_result device_step(device_state& dev);
  runtime::step_result sampler_step();
  runtime::step_result engine_step(unsigned unit);
  // build()'s parts: the testbed (executor, pool, units, monitor), the scenario's domains on
  // it, the policy; then the devices.
  Status build_testbed();
  Status build_domains();
  Status install_policy();
  Status build_devices(prng& rng);
  void plan_hotplug(prng rng);
  runtime::notify_result hotplug_guard(runtime::cpu_event e, unsigned cpu);
  void snapshot_metrics();
  void teardown();
  // engine_watchdog.cpp: the count the executor's watchdog watches (operations done, frames
  // unlinked, retired and freed); what the policy's pending frames wait for (`quiescent`: no
  // CPU runs, so every queue may be read; else only the count); everything a stopped run was
  // stuck on (after run() returned).
  static const char* finish_phase_name(finish_phase f);
  [[nodiscard]] std::uint64_t progress_probe() const;
  [[nodiscard]] std::string pending_report(bool quiescent) const;
  [[nodiscard]] std::string stuck_report() const;
  // engine_faults.cpp: injected faults. The unit configuration with the scenario's queue faults
  // (seeded from the run); the pool's allocation faults, armed once the roots exist; devices
  // that keep translating through teardown (whether a device must stop now, and teardown's
  // detach-and-invalidate first); the run's fault figures.
  [[nodiscard]] iommu::unit_config unit_config_with_faults() const;
  void arm_alloc_faults();
  [[nodiscard]] bool device_keeps_running() const noexcept;
  [[nodiscard]] unsigned actors_to_stop() const noexcept;
  void detach_and_invalidate();
  [[nodiscard]] std::uint64_t unit_translations() const;
  void fault_results(run_result& out);

  prng root_;
  // The machine the policy stands on (testbed/testbed.hpp) and short names for its parts.
  std::unique_ptr<testbed::testbed> tb_;
  mem::frame_pool* pool_ = nullptr;
  runtime::executor* ex_ = nullptr;
  iommu::system* sys_ = nullptr;
  reclaim::safety_monitor* monitor_ = nullptr;
  testbed::observer* observer_ = nullptr;
  reclaim::reclaimer* rec_ = nullptr;
  std::unique_ptr<workload> wl_;
  std::unique_ptr<iova_space> iovas_;  // dma-storm only; the monitor's iova sink
  std::unique_ptr<runtime::per_cpu<cpu_driver>> drivers_;
  // Only when the run records (run_options::record); the engine's hooks test it for null.
  std::unique_ptr<recorder> recorder_;
  std::vector<std::unique_ptr<device_state>> devices_;

  std::uint64_t ops_target_ = 0;  // per CPU; 0 = until the time limit
  std::uint64_t time_limit_ns_ = 0;
  std::uint64_t flush_timeout_ns_ = 0;
  bool deterministic_ = true;
  std::uint64_t run_start_ns_ = 0;  // platform time when the executor started (threaded: > 0)

  // Shared run state (see the memory-ordering note).
  std::atomic<unsigned> cpus_done_{0};
  std::atomic<std::uint64_t> pending_at_end_{0};
  std::atomic<bool> stop_actors_{false};
  std::atomic<unsigned> actors_stopped_{0};
  unsigned actors_total_ = 0;
  std::atomic<bool> stopped_early_{false};  // a CPU ended its workload on a stop request;
                                            // relaxed: read after the executor joined

  // Finisher (CPU 0) state.
  finish_phase fin_ = finish_phase::wait_workload;
  std::uint64_t stop_ns_ = 0;
  bool l1_held_ = false;
  std::uint64_t drain_ns_ = 0;
  std::string l1_reason_;
  Status drain_status_;

  // Sampler (one actor).
  std::vector<pending_sample> series_;
  std::uint64_t sample_every_ns_ = 0;
  std::uint64_t next_sample_ns_ = 0;

  // Progress (deterministic only: called from the run() thread).
  std::uint64_t last_progress_wall_ns_ = 0;

  // Snapshots taken by the finisher before teardown.
  struct snapshot {
    bool taken = false;
    std::uint64_t tables_coalesced = 0, splits = 0;  // pt::table_stats over domains
    reclaim::reclaim_stats stats;
    reclaim::safety_monitor::report mon;
    std::vector<iommu::unit_stats> units;
    std::uint64_t s1_count = 0;
    std::string s1_first;
    std::optional<std::uint32_t> s1_first_frame;
  } snap_;
  leak_summary leaks_;
  std::vector<std::string> notes_;

  // Injected faults (engine_faults.cpp).
  std::atomic<bool> teardown_done_{false};  // devices_through_teardown: they may stop now
  std::uint64_t translations_at_stop_ = 0;  // when the devices would have been stopped
  std::uint64_t detached_ = 0;              // context entries teardown cleared
};

// One device actor (engine_actors.cpp): an iommu::device, the one device model of the project,
// aimed by its group's target (the ranges its domain mapped or released recently); its own
// pattern over its window serves target = window and every empty ring.
struct machine::device_state final : iommu::iova_source {
  iommu::device_id id = 0;
  domain_slot* dom = nullptr;
  const device_group* grp = nullptr;
  std::unique_ptr<iommu::device> dev;
  bool acked = false;
  std::uint64_t seq_page = 0;  // sequential: the page within the newest range
  std::uint64_t seq_entry_first = ~std::uint64_t{0};

  bool next(prng& rng, iommu::iova_t& iova) override;
};

}  // namespace ptreclaim::sim::detail
