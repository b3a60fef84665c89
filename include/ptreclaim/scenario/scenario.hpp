// Scenarios (the scenario component, ptreclaim::scenario; names in namespace ptreclaim::sim): what
// a run simulates, read from TOML files (built-in ones are embedded in the library). A scenario
// fixes the machine (CPUs, memory, IOMMUs), the domains and devices, the workload and its knobs,
// the reclamation bounds, optional CPU hotplug and the cost model. It does NOT name a reclamation
// policy: policies are chosen per run (engine.hpp, run_options).
//
// Every field below has an explicit default and a documented range; parse_scenario() rejects
// unknown keys, wrong types and out-of-range values with "file:line:column: reason". The same
// ranges are documented in docs/scenarios.md and in the comments of scenarios/*.toml.
//
// Overlays: a file may start with `base = "NAME|PATH"`; the base scenario is loaded first and the
// file's keys override it (an array of tables such as [[domains]] replaces the base's array as a
// whole). This is how `hotplug-chaos` adds a [hotplug] table to `superpage-churn`, and how a user
// adds hotplug (or anything else) to any scenario without copying it.
//
// Cost model: the deterministic executor charges virtual time per step (base/platform.hpp,
// cost_kind). runtime::cost_model holds those charges; `ptreclaim calibrate` measures them on this
// machine and writes a cost file that a scenario may name in [cost] file. Without one, the embedded
// scenarios/costs/default.toml (a calibrate run, committed) is used.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ptreclaim/base/limits.hpp"
#include "ptreclaim/base/platform.hpp"
#include "ptreclaim/base/status.hpp"
#include "ptreclaim/iommu/config.hpp"
#include "ptreclaim/pt/table.hpp"
#include "ptreclaim/runtime/cost_model.hpp"

namespace ptreclaim::sim {

// ---------------------------------------------------------------------------------------------
// The cost model: runtime::cost_model (runtime/cost_model.hpp), the one struct the
// deterministic executor consumes; cost files are read straight into it.

using runtime::cost_kind_count;
using runtime::cost_kind_name;
using runtime::cost_model;

// Where the default costs come from: scenarios/costs/default.toml, a `ptreclaim calibrate` run
// on the development machine, embedded in the library at build time (its header says when,
// where and how it was measured). A scenario's [cost] file, or the tool's --costs FILE,
// replaces it.
inline constexpr std::string_view default_cost_source = "builtin:costs/default.toml";
// The embedded text of scenarios/costs/default.toml.
[[nodiscard]] std::string_view default_cost_file_text() noexcept;
// runtime::cost_model{} with the embedded default file read over it (parsed once; the file must
// give every cost kind). Every scenario starts from it.
[[nodiscard]] const cost_model& default_cost_model();

// A cost file's figure in the whole nanoseconds the executor charges: rounded to the nearest ns,
// negatives 0 (so a kind measured under 0.5 ns is charged 0).
[[nodiscard]] std::uint64_t whole_ns(double ns) noexcept;

// Reads a cost file (the TOML that `ptreclaim calibrate` writes: a [cost_ns] table with one key
// per cost kind, fractions rounded by whole_ns, and an optional [kernel_ns] table of dispatch
// costs) over `base`: what the file leaves out keeps base's figure. parse_error with
// file:line:reason.
[[nodiscard]] Result<cost_model> load_cost_model(const std::string& path);
[[nodiscard]] Result<cost_model> parse_cost_model(std::string_view toml_text,
                                                  const std::string& source_name);
[[nodiscard]] Result<cost_model> parse_cost_model(std::string_view toml_text,
                                                  const std::string& source_name,
                                                  const cost_model& base);
// The cost file text for `model`; `header` lines become leading comments, each of `notes` a
// "# note:" line. `measured` (empty, or one figure per cost kind) adds each kind's measurement,
// before rounding, as a comment.
[[nodiscard]] std::string cost_model_to_toml(const cost_model& model, std::string_view header,
                                             std::span<const double> measured = {},
                                             std::span<const std::string> notes = {});

// ---------------------------------------------------------------------------------------------
// The scenario.

enum class workload_kind : std::uint8_t { superpage_churn, sva_kernel, dma_storm };
[[nodiscard]] std::string_view workload_kind_name(workload_kind k) noexcept;  // "superpage-churn"

enum class access_pattern : std::uint8_t { random, sequential, hot_set };
[[nodiscard]] std::string_view access_pattern_name(access_pattern p) noexcept;  // "hot-set"

// Which IOVAs a device's translations aim at.
enum class access_target : std::uint8_t {
  window,    // uniformly over the device's window, mapped or not (faults are counted, not errors)
  live,      // pages its domain currently maps
  replaced,  // ranges whose tables were most recently released (hammers freed-table paths)
  unmapped,  // dma-storm: buffers the caller unmapped most recently (a device that keeps using a
             // buffer after its unmap: what lazy DMA's stale IOTLB entries expose, `exposure`)
};
[[nodiscard]] std::string_view access_target_name(access_target t) noexcept;

// When the mapping caller itself invalidates after unmapping (before any deferred free).
enum class caller_flush : std::uint8_t {
  each_op,  // after every map/unmap that released something (Xen's iommu_iotlb_flush, strict DMA)
  batched,  // after every `flush_batch` operations of the CPU (lazy unmap batching)
  none,     // never: only the reclamation policy invalidates
  lazy,     // dma-storm: lazy DMA (dma-iommu's deferred flush): an unmap does not invalidate; it
            // hands the IOVA (and released tables) to the policy (retire_deferred), and the IOVA
            // goes back to the allocator only when the policy says its invalidation completed
};
[[nodiscard]] std::string_view caller_flush_name(caller_flush f) noexcept;

// What range the caller's own invalidation covers.
enum class caller_range : std::uint8_t {
  gather,   // everything the operation changed (pt::gather: a split superpage, a coalesced
            // range, released tables), with the smallest covering PSI: Linux's gather
  request,  // only the pages the operation asked to map or unmap (Xen's page_count): too small a
            // PSI for a superpage a shatter split, which the IOMMU then keeps (VT-d needs AM >= 9
            // for 2 MiB) and the model reports (stale superpage, S1)
  xen,      // Xen's drivers: dfn/page_count of the request; a freed table (IOMMU_FLUSHF_all)
            // makes it domain-wide (VT-d DSI; AMD all pages, PDE=1) except for batched callers;
            // else a PSI of order log2(page_count) (DSI if not a power of two or unaligned) with
            // IH=0 on VT-d, PDE=0 for an AMD order-0 flush and PDE=1 otherwise
};
[[nodiscard]] std::string_view caller_range_name(caller_range r) noexcept;

// Where a softirq point (process_pending_softirqs) sits in the caller's unmap path.
enum class softirq_point : std::uint8_t {
  none,                 // no softirq point in the unmap path
  before_caller_flush,  // between queueing released tables and the caller's own invalidation:
                        // a softirq tasklet may free them before any invalidation (canary)
  after_caller_flush,   // after the caller's invalidation completed (harmless)
};
[[nodiscard]] std::string_view softirq_point_name(softirq_point p) noexcept;

struct duration_params {
  std::uint64_t ops_per_cpu = 20000;  // operations each CPU performs; 0 = until the time limit
  std::uint64_t time_limit_ns = 0;    // virtual (deterministic) or real (threaded) ns; 0 = none
  std::uint64_t drain_timeout_ns = 1'000'000'000;  // L1: after the workload stops, every retired
                                                   // frame must be freed within this (1 .. 1e12)
  std::uint64_t sample_interval_ns = 100'000;      // pending-frames time-series period (>= 1000)
  // The watchdog: a run in which no operation completes and no frame is retired or freed for
  // this many executor steps (deterministic) or this much real time (threaded) ends with an L1
  // failure naming what is stuck.
  std::uint64_t watchdog_steps = std::uint64_t{1} << 25;  // 1000 .. 1e12
  std::uint64_t watchdog_real_ns = 30'000'000'000;        // 1e6 .. 1e13
};

struct memory_params {
  std::uint32_t frames = 1u << 16;  // frame-pool capacity (64 .. limits::max_frames)
  unsigned cache_frames = 64;       // per-CPU free-frame cache (2 .. limits::pool_cache_frames)
  bool poison = true;               // poison freed frames (a stale walk then reads garbage)
};

struct iommu_params {
  unsigned count = 1;  // IOMMUs (1 .. limits::max_iommus)
  // Everything below applies to every unit (homogeneous units).
  iommu::unit_config unit{};  // IOTLB, PSC, page sizes, AM, queue, caching mode, latencies
};

struct domain_group {
  unsigned count = 1;  // domains in this group (1 .. limits::max_domains in total)
  pt::format_kind format = pt::format_kind::vtd_ss_4;  // "vtd-ss-4" .. (pt::parse_format_kind)
  pt::concurrency_mode mode = pt::concurrency_mode::locked;  // "locked" | "lock-free"
  bool coalesce = true;          // Xen-style coalescing (locked mode only)
  std::vector<unsigned> iommus;  // units every domain of the group is attached to;
                                 // empty = all units ("all" in the file)
};

struct device_group {
  unsigned count = 1;            // devices (1 .. limits::max_devices in total)
  unsigned domain_group = 0;     // index into scenario::domains; devices are spread
                                 // round-robin over that group's domains
  std::vector<unsigned> iommus;  // units the devices sit behind (round-robin); each must be
                                 // one the domain is attached to; empty = the domain's units
  access_pattern pattern = access_pattern::random;
  access_target target = access_target::live;
  std::uint64_t window_bytes = 0;      // IOVA window each device touches; 0 = the workload's region
  std::uint64_t hot_set_pages = 64;    // hot-set pattern: pages in the hot set (1 .. 1<<20)
  unsigned translations_per_step = 4;  // translations per device step (1 .. 4096)
  std::uint64_t step_interval_ns = 1000;  // virtual ns between a device's steps (1 .. 1e9)
};

// Knobs every workload shares: how the mapping caller flushes and softirq points.
struct caller_params {
  caller_flush flush = caller_flush::each_op;
  unsigned flush_batch = 32;  // batched: operations per caller flush (1 .. 65536)
  caller_range flush_range = caller_range::gather;
  softirq_point softirq = softirq_point::none;
};

struct superpage_churn_params {
  std::uint64_t region_bytes =
      1ull << 31;  // IOVA region each domain churns (2 MiB .. 1 TiB, 2M-aligned)
  double superpage_probability = 0.3;  // an op fills a whole 2 MiB range with 4K maps (coalesces)
  double gigabyte_probability = 0.02;  // an op fills a whole 1 GiB range (coalesces into 1G)
  double shatter_probability = 0.3;    // an op partially unmaps inside a superpage (splits it)
  double unmap_probability = 0.2;      // an op unmaps a whole 2 MiB range (frees tables)
  std::uint64_t partial_unmap_pages = 1;  // 4K pages a shatter unmaps (1 .. 511)
};

struct sva_kernel_params {
  std::uint64_t region_bytes = 1ull << 34;  // the vmalloc area (2 MiB .. 1 TiB)
  std::uint64_t vmalloc_min_bytes = 4096;   // allocation size range (4 KiB .. region)
  std::uint64_t vmalloc_max_bytes = 4ull << 20;
  unsigned live_per_cpu = 64;     // live allocations a CPU keeps before freeing (1 .. 65536)
  double free_probability = 0.5;  // an op frees (vfree) rather than allocates, once any is live
  // PASIDs bound to the kernel address space (1 .. iommu::max_pasid), spread round-robin over
  // the SVA devices: PASID p goes to device (p - 1) mod devices. Each needs its own P_IOTLB.
  unsigned pasids = 4;
  bool ats = true;               // the SVA devices have device TLBs (ATS)
  unsigned devtlb_entries = 64;  // per device, 8-way (8 .. 4096, a multiple of 8)
};

struct dma_storm_params {
  unsigned buffers_per_cpu = 64;      // receive buffers each CPU cycles through (1 .. 65536)
  std::uint64_t buffer_bytes = 4096;  // bytes per buffer (4 KiB .. 2 MiB, 4K multiple)
  std::uint64_t iova_space_bytes = 1ull << 32;  // IOVA allocator space (>= cpus*buffers*buffer)
  unsigned packets_per_op = 1;  // packets handled (map+DMA+unmap) per operation (1 .. 1024)
};

struct reclaim_params {
  std::uint64_t max_pending_frames = 4096;  // S5 bound: producers flush themselves at this
                                            // (1 .. memory.frames)
  std::uint64_t flush_age_ns =
      10'000'000;                         // age after which pending frames are flushed (0 = never)
  std::uint64_t watermark_frames = 1024;  // pending count that wakes the worker early (<= max)
  // flush-epoch: at most one hardware poll of a domain's completions per this many ns across
  // CPUs (0, the default: every timer run polls).
  std::uint64_t poll_spacing_ns = 0;
  // linux-dma-fq: per-CPU flush queues (Linux's default), or the one large queue Linux uses for
  // IOMMUs whose flushes are shadowed (vIOMMUs in caching mode): 32768 entries, a 1 s timer.
  bool fq_single_queue = false;
};

struct hotplug_params {
  bool enabled = false;
  std::uint64_t mean_interval_ns = 2'000'000;  // mean virtual ns between events (1000 .. 1e12)
  std::uint64_t offline_ns = 500'000;          // mean time a CPU stays offline (0 .. 1e12)
  double fail_probability = 0.2;               // a down-prepare fails (CPU_DOWN_FAILED path)
  unsigned min_online = 1;                     // never fewer online CPUs (1 .. cpus)
};

// Injected faults (a [faults] section; docs/scenarios.md). All off by default: a scenario
// without the section runs exactly as before. Every fault is drawn from a schedule seeded from
// the run's seed, so the deterministic executor replays it.
struct faults_params {
  // ITE, IQE, queue stalls and slow waits of every IOMMU unit (iommu/faults.hpp); its seed is
  // forked from the run's.
  iommu::fault_config queue{};
  double alloc_fail_probability = 0.0;    // a page-table frame allocation fails (0 .. 1)
  bool devices_through_teardown = false;  // devices keep translating while the machine is torn
                                          // down: teardown detaches them and invalidates first
  [[nodiscard]] bool any() const noexcept {
    return queue.enabled() || alloc_fail_probability > 0 || devices_through_teardown;
  }
};

// The simulator's bound on one invalidation's completion: the policies' wait_timeout_ns and the
// callers' flushes. validate() rejects queue faults that could hold an invalidation longer.
inline constexpr std::uint64_t invalidation_timeout_ns = 10'000'000'000ULL;

struct scenario {
  std::string name = "unnamed";
  std::string description;
  // Where the scenario came from: "builtin:NAME" or the file path as given. Used in replay
  // commands.
  std::string source;
  workload_kind kind = workload_kind::superpage_churn;
  unsigned cpus = 4;                  // simulated CPUs (1 .. limits::max_cpus)
  std::optional<std::uint64_t> seed;  // default: a fresh seed per run (printed)
  duration_params duration{};
  memory_params memory{};
  iommu_params iommu{};
  std::vector<domain_group> domains{domain_group{}};
  std::vector<device_group> devices{device_group{}};
  caller_params caller{};
  superpage_churn_params superpage_churn{};  // used when kind == superpage_churn
  sva_kernel_params sva_kernel{};            // used when kind == sva_kernel
  dma_storm_params dma_storm{};              // used when kind == dma_storm
  reclaim_params reclaim{};
  hotplug_params hotplug{};
  faults_params faults{};
  std::optional<std::string> cost_file;     // [cost] file, resolved against the scenario's folder
  cost_model costs = default_cost_model();  // read from cost_file, else the embedded default

  // The cost model's origin for reports: cost_file, else default_cost_source.
  [[nodiscard]] std::string cost_source() const {
    return cost_file ? *cost_file : std::string(default_cost_source);
  }

  // Derived views (after validation): total domains and devices over all groups.
  [[nodiscard]] unsigned domain_count() const noexcept;
  [[nodiscard]] unsigned device_count() const noexcept;
  // The units a domain group is attached to (expands "all").
  [[nodiscard]] std::vector<unsigned> group_iommus(unsigned domain_group) const;
};

// Checks cross-field rules (units exist, a device's units serve its domain, bounds relate, sizes
// fit the format's address space, ...). Field ranges are checked while parsing; validate() is also
// run by parse_scenario() and may be called on a scenario built in code. Reason in the message.
[[nodiscard]] Status validate(const scenario& s);

// The scenario a run actually uses: `cpus` (0 = keep) and `ops_per_cpu` (0 = keep) applied, then
// validated again (e.g. dma-storm's IOVA space must hold every CPU's buffers). hotplug.min_online
// is lowered to fit, and hotplug is switched off for a single CPU. invalid_argument with the
// reason.
[[nodiscard]] Result<scenario> with_overrides(const scenario& s, unsigned cpus,
                                              std::uint64_t ops_per_cpu);

// Parses TOML text. `source_name` is used in messages ("superpage-churn.toml:12:3: ...") and to
// resolve relative paths (`base`, [cost] file). Errors: parse_error (syntax, unknown key, wrong
// type, value out of range, failed validation), each naming file:line:column and the reason.
[[nodiscard]] Result<scenario> parse_scenario(std::string_view toml_text,
                                              const std::string& source_name);
// Reads and parses a file (errc::invalid_argument if it cannot be read).
[[nodiscard]] Result<scenario> load_scenario_file(const std::string& path);
// A built-in name ("dma-storm") or a path (anything with a '/' or ending in ".toml", or an
// existing file). Unknown names list the built-ins.
[[nodiscard]] Result<scenario> load_scenario(const std::string& name_or_path);
// The same, then the cost file (when not empty) replaces the scenario's [cost] file and the
// built-in costs, as the tool's --costs does; its errors start with "--costs: ".
[[nodiscard]] Result<scenario> load_scenario(const std::string& name_or_path,
                                             const std::string& cost_file);

// The built-in scenario files, embedded at build time from scenarios/*.toml.
struct builtin_scenario {
  std::string_view name;     // file stem: "superpage-churn"
  std::string_view summary;  // the scenario's description
  std::string_view toml;     // the file text
};
[[nodiscard]] const std::vector<builtin_scenario>& builtin_scenarios();
[[nodiscard]] const builtin_scenario* find_builtin(std::string_view name) noexcept;
// The scenario `ptreclaim` runs with no arguments.
inline constexpr std::string_view default_scenario_name = "superpage-churn";

}  // namespace ptreclaim::sim
