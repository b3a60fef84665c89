// Building the machine of one run on a testbed (domains, hotplug guard, policy, workload, devices,
// engine actors, sampler) and the hotplug plan.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "sim/engine_internal.hpp"
#include "sim/recorder.hpp"

namespace ptreclaim::sim::detail {

using runtime::step_result;

// ---- range_ring ----------------------------------------------------------------------------

void range_ring::push(std::uint64_t first, std::uint64_t bytes) noexcept {
  unsigned lg = 12;
  while (lg < 52 && (std::uint64_t{1} << lg) < bytes)
    ++lg;
  const std::uint32_t i = next_.fetch_add(1, std::memory_order_relaxed) % size;
  e_[i].store((first & ~std::uint64_t{0xfff}) | lg, std::memory_order_relaxed);
}

bool range_ring::get(unsigned i, std::uint64_t& first, std::uint64_t& bytes) const noexcept {
  const std::uint32_t n = next_.load(std::memory_order_relaxed);
  if (n == 0) return false;
  const std::uint32_t filled_now = std::min<std::uint32_t>(n, size);
  const std::uint64_t v = e_[(n - 1 - (i % filled_now)) % size].load(std::memory_order_relaxed);
  if (v == 0) return false;
  first = v & ~std::uint64_t{0xfff};
  bytes = std::uint64_t{1} << (v & 0x3f);
  return true;
}

unsigned range_ring::filled() const noexcept {
  return std::min<std::uint32_t>(next_.load(std::memory_order_relaxed), size);
}

// ---- build -----------------------------------------------------------------------------------

machine::machine(const scenario& s, const run_options& o, std::uint64_t seed_in)
    : sc(s), opt(o), seed(seed_in), cpus(s.cpus), root_(seed_in) {}

machine::~machine() {
  // The engine's own parts first (they name the testbed's); the testbed then goes in its order
  // (pending work discarded, policy, tables, monitor, units, executor, pool).
  devices_.clear();
  wl_.reset();
  domains.clear();
  drivers_.reset();
  tb_.reset();
  iovas_.reset();     // after the monitor that forwards to it
  recorder_.reset();  // after the testbed, whose taps and sink name it
}

namespace {
// "4K, 2M" for a leaf-level mask (bit 1 = 4K, 2 = 2M, 3 = 1G); "nothing" when empty.
std::string page_sizes_text(std::uint32_t levels) {
  static constexpr const char* names[] = {"", "4K", "2M", "1G"};
  std::string out;
  for (unsigned l = 1; l <= 3; ++l)
    if (levels & (1u << l)) out += (out.empty() ? "" : ", ") + std::string(names[l]);
  return out.empty() ? "nothing" : out;
}
}  // namespace

Status machine::build() {
  deterministic_ = opt.executor == executor_kind::deterministic;
  ops_target_ = sc.duration.ops_per_cpu;
  time_limit_ns_ = sc.duration.time_limit_ns;
  flush_timeout_ns_ = invalidation_timeout_ns;

  if (opt.record != nullptr) {
    if (!deterministic_)
      return Status(errc::invalid_argument,
                    "a trace or a frame's story needs the deterministic executor");
    recorder_ = std::make_unique<recorder>(
        *opt.record,
        recorder::context{sc.name, std::string(reclaim::policy_name(opt.policy)), seed, cpus});
  }
  PTR_TRY(build_testbed());
  PTR_TRY(build_domains());
  // Hotplug guard first, so it sees down_prepare before any policy does.
  drivers_ = std::make_unique<runtime::per_cpu<cpu_driver>>(cpus);
  for (unsigned c = 0; c < cpus; ++c)
    (*drivers_)[c].batch.resize(domains.size());
  ex_->register_cpu_notifier(
      [this](runtime::cpu_event e, unsigned c) { return hotplug_guard(e, c); });

  PTR_TRY(install_policy());

  switch (sc.kind) {
    case workload_kind::superpage_churn:
      wl_ = make_superpage_churn(*this);
      break;
    case workload_kind::sva_kernel:
      wl_ = make_sva_kernel(*this);
      break;
    case workload_kind::dma_storm:
      wl_ = make_dma_storm(*this);
      break;
  }
  if (!wl_) return Status(errc::invalid_argument, "unknown workload kind");

  prng dev_rng = root_.fork(2);
  PTR_TRY(build_devices(dev_rng));

  for (unsigned c = 0; c < cpus; ++c)
    ex_->set_program(c, [this](unsigned cpu) { return program_step(cpu); });

  // Deterministic: an engine actor per unit completes invalidations on time. Without it a CPU
  // waiting for a completion would only see it when some device happened to step (the queue
  // advances lazily to whoever polls), so waits would be quantised to device step intervals.
  if (deterministic_) {
    for (unsigned u = 0; u < sys_->unit_count(); ++u)
      ex_->add_actor({"iommu" + std::to_string(u), [this, u] { return engine_step(u); }, true});
  }

  sample_every_ns_ = std::max<std::uint64_t>(1000, sc.duration.sample_interval_ns);
  ex_->add_actor({"sampler", [this] { return sampler_step(); }, true});
  ++actors_total_;

  if (sc.hotplug.enabled && cpus > 1) plan_hotplug(root_.fork(3));
  arm_alloc_faults();  // after the roots: only the workload's allocations may fail
  if (recorder_) {
    recorder_->attach(*ex_, *pool_, *sys_, [this](unsigned cpu) {
      workload::op_label l = wl_->describe_op(cpu);
      return std::make_pair(std::move(l.name), std::move(l.where));
    });
    // Heard from now on: the roots and the idle attachments are not part of any story.
    pool_->set_observer(recorder_.get());
    observer_->set_extra(recorder_.get());
    if (recorder_->tracing() || recorder_->telling()) {
      static_cast<runtime::deterministic_executor*>(ex_)->set_trace_sink(
          [r = recorder_.get()](const runtime::trace_event& ev) { r->on_step(ev); });
    }
  }
  return {};
}

Status machine::build_testbed() {
  testbed::config tc;
  runtime::run_config& rc = tc.run;
  rc.cpus = cpus;
  rc.seed = root_.fork(1).next();
  rc.costs = sc.costs;
  rc.max_actors =
      std::min<unsigned>(runtime::max_actors_limit, sc.device_count() + sc.iommu.count + 1);
  rc.max_notifiers = 16;
  rc.on_cpu_dead = runtime::dead_cpu_work::park;
  rc.real_time_limit_ns = std::uint64_t{900} * 1'000'000'000ULL + time_limit_ns_;
  rc.progress = [this] { return progress_probe(); };
  rc.stall_steps = sc.duration.watchdog_steps;
  rc.stall_real_ns = sc.duration.watchdog_real_ns;
  if (sc.device_count() + sc.iommu.count + 1 > runtime::max_actors_limit)
    return Status(errc::invalid_argument,
                  "more devices than the executor has actor slots (" +
                      std::to_string(runtime::max_actors_limit - 1 - sc.iommu.count) + ")");
  tc.executor =
      deterministic_ ? testbed::executor_kind::deterministic : testbed::executor_kind::threaded;
  tc.pool.capacity_frames = sc.memory.frames;
  tc.pool.caches = cpus;
  tc.pool.cache_frames = sc.memory.cache_frames;
  tc.pool.poison = sc.memory.poison;
  tc.system.violations_kept =
      recorder_ && recorder_->telling() ? recorder::violations_kept : std::size_t{16};
  tc.units.assign(sc.iommu.count, unit_config_with_faults());
  tc.max_pending = sc.reclaim.max_pending_frames;
  tc.unlink_tap = recorder_.get();
  tc.inv_tap = recorder_.get();
  auto tb = testbed::testbed::create(tc);
  if (!tb.ok()) return tb.status();
  tb_ = std::move(*tb);
  ex_ = &tb_->ex();
  pool_ = &tb_->pool();
  sys_ = &tb_->sys();
  monitor_ = &tb_->monitor();
  observer_ = &tb_->obs();

  return {};
}

Status machine::build_domains() {
  // Domains: the testbed builds each table (its root) and the model's view of it.
  std::uint16_t next_id = 1;
  for (unsigned gi = 0; gi < sc.domains.size(); ++gi) {
    const domain_group& grp = sc.domains[gi];
    // The page sizes a group's tables may use: what the format allows AND what every IOMMU
    // the domains are attached to supports (iommu::system narrows a domain the same way on
    // attach; building the table with more would let it form superpages a unit cannot walk).
    std::uint32_t levels = pt::domain_config{}.leaf_levels & pt::describe(grp.format).leaf_levels;
    for (unsigned u : sc.group_iommus(gi))
      levels &= sys_->get_unit(u).config().leaf_levels;
    if ((levels & 0b10) == 0) {  // validate() requires 4K of the units; formats all have it
      return Status(errc::invalid_argument,
                    "domains[" + std::to_string(gi) + "]: no common page size with 4K: format " +
                        std::string(pt::describe(grp.format).name) + " and its IOMMUs " +
                        "(iommu.page_sizes) share " + page_sizes_text(levels) +
                        "; every workload maps 4K pages");
    }
    for (unsigned k = 0; k < grp.count; ++k) {
      testbed::domain_spec spec;
      spec.id = next_id++;
      spec.format = grp.format;
      spec.mode = grp.mode;
      spec.coalesce = grp.coalesce && grp.mode == pt::concurrency_mode::locked;
      spec.leaf_levels = levels;
      auto d = tb_->add_domain(spec);
      if (!d.ok()) return d.status();
      auto slot = std::make_unique<domain_slot>();
      slot->id = spec.id;
      slot->group = gi;
      slot->table = (*d)->table.get();
      slot->dom = (*d)->dom;
      domains.push_back(std::move(slot));
    }
  }
  return {};
}

Status machine::install_policy() {
  reclaim::reclaim_config cfg;
  cfg.max_pending = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(sc.reclaim.max_pending_frames, 0xffffffffULL));
  cfg.flush_age_ns = sc.reclaim.flush_age_ns;  // 0 = never, in both layers
  cfg.poll_spacing_ns = sc.reclaim.poll_spacing_ns;
  cfg.watermark = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(sc.reclaim.watermark_frames, 0xffffffffULL));
  cfg.wait_timeout_ns = flush_timeout_ns_;
  cfg.fq_single_queue = sc.reclaim.fq_single_queue;
  PTR_TRY(tb_->install_policy(opt.policy, cfg));
  rec_ = &tb_->policy();
  return {};
}

// ---- hotplug -------------------------------------------------------------------------------

runtime::notify_result machine::hotplug_guard(runtime::cpu_event e, unsigned cpu) {
  cpu_driver& d = (*drivers_)[cpu];
  switch (e) {
    case runtime::cpu_event::down_prepare:
      d.going_down.store(true, std::memory_order_seq_cst);
      if (d.mid_op.load(std::memory_order_seq_cst)) {
        // going_down stays set while deferred: the CPU stops at its next operation boundary.
        if (ex_->hotplug_may_defer()) return runtime::notify_result::defer;
        d.going_down.store(false, std::memory_order_seq_cst);
        return runtime::notify_result::veto;
      }
      break;
    case runtime::cpu_event::down_failed:
    case runtime::cpu_event::dead:
    case runtime::cpu_event::up_prepare:
      d.going_down.store(false, std::memory_order_seq_cst);
      break;
    default:
      break;
  }
  return runtime::notify_result::done;
}

// Offline/online pairs at seeded random times over an estimated horizon (events after the
// workload stops run during the drain, which is worth checking too). CPU 0 never goes offline:
// it is the boot CPU and runs the finisher.
void machine::plan_hotplug(prng rng) {
  const hotplug_params& h = sc.hotplug;
  std::uint64_t horizon = time_limit_ns_;
  if (horizon == 0) {
    // Rough virtual cost of one operation per workload (deterministic defaults), so that events
    // spread over the run rather than far beyond it.
    const std::uint64_t per_op = sc.kind == workload_kind::superpage_churn ? 20'000
                                 : sc.kind == workload_kind::sva_kernel    ? 15'000
                                                                           : 4'000;
    horizon = std::max<std::uint64_t>(ops_target_, 1) * per_op;
  }
  std::vector<std::uint64_t> back_at(cpus, 0);  // planned online again at
  auto exp_sample = [&](std::uint64_t mean) -> std::uint64_t {
    if (mean == 0) return 0;
    const double u =
        (static_cast<double>(rng.below(1u << 30)) + 1.0) / static_cast<double>(1u << 30);
    return static_cast<std::uint64_t>(-std::log(u) * static_cast<double>(mean));
  };
  std::uint64_t t = 0;
  for (unsigned n = 0; n < 100000; ++n) {
    t += std::max<std::uint64_t>(1000, exp_sample(h.mean_interval_ns));
    if (t > horizon) break;
    unsigned online = 0;
    std::vector<unsigned> candidates;
    for (unsigned c = 0; c < cpus; ++c) {
      if (back_at[c] <= t) {
        ++online;
        if (c != 0) candidates.push_back(c);
      }
    }
    if (candidates.empty() || online <= h.min_online) continue;
    const unsigned c = candidates[rng.below(candidates.size())];
    const bool fail =
        rng.below(1u << 20) < static_cast<std::uint64_t>(h.fail_probability * (1u << 20));
    if (fail) {
      ex_->schedule_hotplug({t, runtime::hotplug_op::down_fail, c});
      continue;
    }
    const std::uint64_t up = t + std::max<std::uint64_t>(1000, exp_sample(h.offline_ns));
    ex_->schedule_hotplug({t, runtime::hotplug_op::down, c});
    ex_->schedule_hotplug({up, runtime::hotplug_op::up, c});
    back_at[c] = up + 1;
  }
}

}  // namespace ptreclaim::sim::detail
