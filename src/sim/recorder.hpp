// What a run records on request (engine.hpp's sim::recording), beside its metrics: the run as a
// Chrome trace-event document, and the story of one frame (metrics.hpp's frame_story).
//
// The recorder only listens. It hears the machine through hooks that exist for checkers and
// recorders and that cost nothing when unset: the deterministic executor's step sink (every CPU
// and actor step with its virtual start and end), the testbed's taps (every unlink the tables
// report, every descriptor the IOMMU units process, with when it was submitted and took
// effect), the frame pool's observer (allocations, links, frees), the policy's observer
// (retires), and four engine calls (an operation begins and ends, a device actor's identity,
// teardown). It never charges the platform, takes no platform lock and draws no random number,
// so a recorded run is the same run: the same seed gives the same trace hash with or without it.
//
// Deterministic executor only (one thread): nothing here is synchronised.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ptreclaim/iommu/inv_queue.hpp"
#include "ptreclaim/iommu/system.hpp"
#include "ptreclaim/iommu/violation.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/unlink_observer.hpp"
#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim::detail {

class recorder final : public reclaim::reclaim_observer,
                       public pt::unlink_observer,
                       public iommu::inv_observer,
                       public mem::pool_observer {
 public:
  // What an operation is: a short name and where ("fill-2m", "domain 2, block 0x40000000").
  using label_fn = std::function<std::pair<std::string, std::string>(unsigned cpu)>;

  struct context {
    std::string scenario;
    std::string policy;
    std::uint64_t seed = 0;
    unsigned cpus = 0;
  };

  recorder(recording& want, context c);
  recorder(const recorder&) = delete;
  recorder& operator=(const recorder&) = delete;

  // The violations the IOMMU model should keep in full: a story finds its walks among them.
  static constexpr std::size_t violations_kept = 64;
  [[nodiscard]] bool tracing() const noexcept { return trace_; }
  [[nodiscard]] bool telling() const noexcept { return story_; }

  // Once the machine stands (before the run).
  void attach(runtime::executor& ex, mem::frame_pool& pool, iommu::system& sys, label_fn labels);
  void name_device(unsigned actor, unsigned device, unsigned domain, unsigned unit);

  // The engine's calls: CPU `cpu` begins / completes an operation; what the CPU does outside
  // operations ("teardown").
  void op_begin(unsigned cpu);
  void op_end(unsigned cpu);
  void set_context(unsigned cpu, std::string what);
  // The executor's step sink.
  void on_step(const runtime::trace_event& ev);

  // reclaim_observer (the policy's retires; frees are heard from the pool)
  void on_retire(reclaim::domain_number d, mem::frame_id f,
                 const reclaim::invalidation_range& need) override;
  void on_free(mem::frame_id /*f*/, const char* /*path*/) override {}
  void on_invariant_violation(const std::string& /*what*/) override {}
  // unlink_observer
  void on_unlinked(const pt::unlinked_table& t) noexcept override;
  // inv_observer (the times come with on_processed_at)
  void on_processed(unsigned /*unit*/, std::uint64_t /*seq*/,
                    const iommu::inv_descriptor& /*d*/) noexcept override {}
  void on_processed_at(unsigned unit, std::uint64_t seq, const iommu::inv_descriptor& d,
                       std::uint64_t submit_ns, std::uint64_t done_ns) noexcept override;
  // pool_observer
  void on_alloc(mem::frame_id f, mem::frame_ident now) noexcept override;
  void on_linked(mem::frame_id f) noexcept override;
  void on_freed(mem::frame_id f, mem::frame_ident before, const char* path) noexcept override;

  // After the run: the violations the IOMMU model kept (the first few, in order) and the run's
  // result (its pending series goes into the trace; its story is set here). Fills `want`.
  void finish(const std::vector<iommu::violation>& kept, run_result& out);

 private:
  struct cpu_state {
    bool op_open = false, op_started = false, op_closing = false;
    std::uint64_t op_start = 0;
    std::uint64_t ops = 0;  // operations begun
    std::string context;    // outside operations ("teardown"), "" = between operations
  };
  struct device_track {
    bool known = false;
    unsigned device = 0;
    bool open = false;
    std::uint64_t start = 0, end = 0, steps = 0;
  };
  struct unit_track {
    std::uint64_t last_done = 0;
    bool group_open = false;
    std::uint64_t group_submit = 0, group_first_seq = 0;
    unsigned group_size = 0;
    std::string group_name;
  };
  // One relevant invalidation of the watched frame's domain, waiting for its wait.
  struct pending_inv {
    std::uint64_t seq = 0, submit = 0, done = 0;
    std::string what;
    bool covers = false;
    std::string why;
  };
  // One allocation of the watched frame, to its free (and the next allocation).
  struct lifetime {
    std::size_t first_event = 0;  // its "allocated" in told_
    std::size_t free_event = ~std::size_t{0};
    std::uint64_t alloc_ns = 0, unlink_ns = 0, free_ns = 0;
    bool linked = false, unlinked = false, freed = false, was_table = false;
    std::uint16_t domain = 0;
    unsigned level = 0;
    std::uint64_t first = 0, last = 0;  // the span a cached entry reaches it through
    std::string free_path;
    std::array<std::uint32_t, limits::max_iommus> did_plus1{};   // 0: the domain is not there
    std::array<std::uint64_t, limits::max_iommus> tail{};        // submitted count at the unlink
    std::array<std::uint64_t, limits::max_iommus> covered_at{};  // a covering wait done, 0: not
    std::array<bool, limits::max_iommus> any_relevant{};
    std::array<unsigned, limits::max_iommus> shown{}, hidden{};
    std::array<std::vector<pending_inv>, limits::max_iommus> group;
  };

  // Chrome trace events.
  void emit(std::string event);
  void slice(int pid, int tid, std::uint64_t start, std::uint64_t end, const std::string& name,
             const char* cat, const std::string& args);
  void instant(int pid, int tid, std::uint64_t t, const std::string& name, const char* cat,
               const std::string& args, char scope = 't');
  void close_device(device_track& d);
  [[nodiscard]] std::string metadata() const;

  // The story.
  [[nodiscard]] bool watched(mem::frame_id f) const noexcept { return story_ && f.value == frame_; }
  // Appends to told_, in the current lifetime.
  void add(std::uint64_t t, const char* kind, std::string text, int cpu = -1, int iommu = -1,
           int device = -1);
  void check_walks();  // after a device step: new kept violations that read the frame
  [[nodiscard]] int cpu_here() const;
  [[nodiscard]] std::string doing(unsigned cpu) const;  // "operation #17 (fill-2m: ...)"
  [[nodiscard]] std::string queue_of(unsigned cpu) const;
  void settle_group(lifetime& l, unsigned unit, std::uint64_t wait_done);
  void build_story(run_result& out);

  recording& want_;
  context ctx_;
  bool trace_ = false;
  bool story_ = false;
  std::uint32_t frame_ = 0;

  runtime::executor* ex_ = nullptr;
  mem::frame_pool* pool_ = nullptr;
  iommu::system* sys_ = nullptr;
  label_fn labels_;
  unsigned units_ = 0;

  std::vector<cpu_state> cpu_;
  std::vector<device_track> actors_;  // by actor id
  std::vector<unit_track> unit_;
  std::string body_;  // the events, ",\n"-separated
  std::uint64_t events_ = 0, dropped_ = 0, async_ids_ = 0;

  static constexpr std::size_t max_lifetimes = 4096;
  static constexpr std::size_t max_told = 200000;
  static constexpr unsigned max_shown_per_unit = 6;
  std::vector<lifetime> lives_;
  // The watched frame's events in the order they happened (each actor's virtual clock can lag
  // another's by up to a step, so times alone do not order them), and each one's lifetime.
  std::vector<frame_event> told_;
  std::vector<std::size_t> told_life_;
  std::uint64_t violations_seen_ = 0;
  std::uint64_t allocations_ = 0;  // of the watched frame, all of them
};

}  // namespace ptreclaim::sim::detail
