// Building the machine of one run, the CPU programs (the operation driver) and the finisher.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/runtime/threaded_executor.hpp"
#include "sim/engine_internal.hpp"

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
  // Policies and notifiers go before the executor; the executor before the pool it charges.
  if (ex_) ex_->discard_pending();
  rec_.reset();
  observer_.reset();
  devices_.clear();
  wl_.reset();
  domains.clear();  // tables report unlinks to the monitor: they go first
  monitor_.reset();
  backend_.reset();
  sys_.reset();
  drivers_.reset();
  ex_.reset();
  pool_.reset();
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

  runtime::run_config rc;
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
  if (deterministic_)
    ex_ = std::make_unique<runtime::deterministic_executor>(rc);
  else
    ex_ = std::make_unique<runtime::threaded_executor>(rc);

  mem::pool_config pc;
  pc.capacity_frames = sc.memory.frames;
  pc.caches = cpus;
  pc.cache_frames = sc.memory.cache_frames;
  pc.poison = sc.memory.poison;
  pool_ = std::make_unique<mem::frame_pool>(pc, *ex_);

  iommu::system_config syc;
  syc.violations_kept = 16;
  sys_ = std::make_unique<iommu::system>(*pool_, syc, *ex_);
  const iommu::unit_config unit_cfg = unit_config_with_faults();
  for (unsigned u = 0; u < sc.iommu.count; ++u)
    sys_->add_unit(unit_cfg);
  // The checker before the tables: it hears of every table they unlink.
  backend_ = std::make_unique<reclaim::iommu_backend>(*sys_);
  monitor_ =
      std::make_unique<reclaim::safety_monitor>(*sys_, *backend_, sc.reclaim.max_pending_frames);

  // Domains: tables first (their roots), then the model's view of them.
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
      auto slot = std::make_unique<domain_slot>();
      slot->id = next_id++;
      slot->group = gi;
      pt::domain_config dc;
      dc.domain = slot->id;
      dc.mode = grp.mode;
      dc.coalesce = grp.coalesce && grp.mode == pt::concurrency_mode::locked;
      dc.leaf_levels = levels;
      dc.on_unlink = monitor_.get();
      auto t = pt::make_table(grp.format, dc, *pool_);
      if (!t.ok()) return t.status();
      slot->table = std::move(*t);
      iommu::domain_desc dd;
      dd.id = slot->id;
      dd.format = &slot->table->format();
      dd.root = slot->table->root();
      dd.leaf_levels = dc.leaf_levels;
      auto d = sys_->create_domain(dd);
      if (!d.ok()) return d.status();
      slot->dom = *d;
      domains.push_back(std::move(slot));
    }
  }

  // Hotplug guard first, so it sees down_prepare before any policy does.
  drivers_ = std::make_unique<runtime::per_cpu<cpu_driver>>(cpus);
  for (unsigned c = 0; c < cpus; ++c)
    (*drivers_)[c].batch.resize(domains.size());
  ex_->register_cpu_notifier(
      [this](runtime::cpu_event e, unsigned c) { return hotplug_guard(e, c); });

  observer_ = std::make_unique<observer>(*monitor_, *ex_, *pool_);
  reclaim::reclaim_config cfg;
  cfg.max_pending = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(sc.reclaim.max_pending_frames, 0xffffffffULL));
  cfg.flush_age_ns = sc.reclaim.flush_age_ns;  // 0 = never, in both layers
  cfg.watermark = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(sc.reclaim.watermark_frames, 0xffffffffULL));
  cfg.wait_timeout_ns = flush_timeout_ns_;
  reclaim::reclaim_env env{*ex_, *monitor_, *pool_, observer_.get()};
  auto r = reclaim::make_reclaimer(opt.policy, env, cfg);
  if (!r.ok()) return r.status();
  rec_ = std::move(*r);

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

// ---- the CPU program: the operation driver --------------------------------------------------

namespace {
inline void mix(std::uint64_t& h, std::uint64_t v) noexcept {
  std::uint64_t x = h ^ v;
  h = prng::splitmix64(x);
}
}  // namespace

bool machine::workload_over(const cpu_driver& d) {
  if (ops_target_ != 0 && d.ops >= ops_target_) return true;
  if (time_limit_ns_ != 0 && ex_->now_ns() - run_start_ns_ >= time_limit_ns_) return true;
  // A stop request ends the workload here, between operations, as if its end had come: the
  // drain, the L1 wait and teardown still run, so what ran is checked.
  if (opt.stop != nullptr && opt.stop->requested()) {
    stopped_early_.store(true, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void machine::finish_workload(unsigned /*cpu*/, cpu_driver& d) {
  d.finish_ns = ex_->now_ns();
  d.ph = cpu_driver::phase::done;
  d.finished.store(true, std::memory_order_release);  // [en-7] pairs with [en-8]
  // The last CPU to finish records the pending count at the stop.
  if (cpus_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == cpus)  // [en-1] pairs with [en-2]
    pending_at_end_.store(rec_->pending(), std::memory_order_relaxed);
}

step_result machine::program_step(unsigned cpu) {
  cpu_driver& d = (*drivers_)[cpu];
  switch (d.ph) {
    case cpu_driver::phase::between_ops: {
      if (deterministic_ && cpu == 0) report_progress();
      if (workload_over(d)) {
        finish_workload(cpu, d);
        if (cpu != 0) return step_result::finished();
        d.ph = cpu_driver::phase::finisher;
        return step_result::yield();
      }
      // Inside a batch of caller flushes mid_op stays set (no scheduler point until the
      // batch's flush): the CPU goes on even when an offline waits for it.
      if (!d.mid_op.load(std::memory_order_relaxed)) {  // only this CPU writes it
        if (d.going_down.load(std::memory_order_seq_cst)) {
          // Wait for the deferred offline; if it was dropped (refused before the guard ran
          // again, e.g. too few CPUs online by then), nobody else clears the flag.
          if (ex_->hotplug_down_waiting(cpu)) return step_result::yield();
          d.going_down.store(false, std::memory_order_seq_cst);
        }
        d.mid_op.store(true, std::memory_order_seq_cst);
        if (d.going_down.load(std::memory_order_seq_cst)) {
          d.mid_op.store(false, std::memory_order_seq_cst);
          return step_result::yield();
        }
      }
      d.dom = &wl_->begin_op(cpu);
      d.ph = cpu_driver::phase::mutate;
      [[fallthrough]];
    }
    case cpu_driver::phase::mutate: {
      ex_->charge(cost_kind::op_overhead);
      d.g.clear();
      d.last_chunk = wl_->mutate(cpu, d.g);
      mix(d.trace, wl_->last_trace(cpu));
      if (!d.g.released().empty()) {
        rec_->retire(d.dom->id, d.g);
        d.dom->replaced.push(d.g.first(), d.g.last() - d.g.first() + 1);
      }
      if (d.g.empty()) {
        if (d.last_chunk) return complete_op(d);
        return step_result::busy();
      }
      d.ph = sc.caller.softirq == softirq_point::before_caller_flush ? cpu_driver::phase::softirq
                                                                     : cpu_driver::phase::flush;
      return step_result::busy();
    }
    case cpu_driver::phase::softirq:
      ex_->process_pending_softirqs();
      d.ph = cpu_driver::phase::flush;
      return step_result::busy();
    case cpu_driver::phase::flush:
      caller_flush(d);
      if (sc.caller.softirq == softirq_point::after_caller_flush) ex_->process_pending_softirqs();
      if (d.last_chunk) return complete_op(d);
      d.ph = cpu_driver::phase::mutate;
      return step_result::busy();
    case cpu_driver::phase::done:
      return step_result::finished();
    case cpu_driver::phase::finisher:
      return finisher_step();
  }
  return step_result::finished();
}

void machine::caller_flush(cpu_driver& d) {
  switch (sc.caller.flush) {
    case caller_flush::each_op: {
      auto e =
          reclaim::invalidate_after_retire(*rec_, *monitor_, d.dom->id, d.g, flush_timeout_ns_);
      PTR_ASSERT_MSG(e.ok(), "the caller's invalidation did not complete (a hung IOMMU model)");
      ++d.caller_flushes;
      break;
    }
    case caller_flush::batched: {
      const std::size_t i = static_cast<std::size_t>(d.dom->id - 1);
      cpu_driver::owed& o = d.batch[i];
      o.any = true;
      o.g.add_range(d.g.first(), d.g.last());
      if (d.g.nonleaf_changed()) o.g.set_nonleaf_changed();
      break;
    }
    case caller_flush::none:
      break;
  }
}

void machine::flush_batch(cpu_driver& d) {
  for (std::size_t i = 0; i < d.batch.size(); ++i) {
    cpu_driver::owed& o = d.batch[i];
    if (!o.any) continue;
    auto e =
        reclaim::invalidate_after_retire(*rec_, *monitor_, domains[i]->id, o.g, flush_timeout_ns_);
    PTR_ASSERT_MSG(e.ok(), "the caller's invalidation did not complete (a hung IOMMU model)");
    ++d.caller_flushes;
    o.any = false;
    o.g.clear();
  }
  d.batch_ops = 0;
}

step_result machine::complete_op(cpu_driver& d) {
  ++d.ops;
  if (!deterministic_) d.ops_seen.store(d.ops, std::memory_order_relaxed);
  d.ph = cpu_driver::phase::between_ops;
  if (sc.caller.flush == caller_flush::batched) {
    ++d.batch_ops;
    // Within a batch there is no scheduler point: the owed flush must come before one, as the
    // retire contract (and Xen) require. The last operation of the run flushes too.
    if (d.batch_ops < sc.caller.flush_batch && !workload_over(d)) return step_result::busy();
    flush_batch(d);
  }
  d.mid_op.store(false, std::memory_order_seq_cst);
  return step_result::yield();
}

void machine::report_progress() {
  if (!opt.progress) return;
  const auto wall =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  if (wall - last_progress_wall_ns_ < 50'000'000) return;
  last_progress_wall_ns_ = wall;
  double f = 0.0;
  if (ops_target_ != 0) {
    std::uint64_t done = 0;
    for (unsigned c = 0; c < cpus; ++c)
      done += (*drivers_)[c].ops;
    f = static_cast<double>(done) / (static_cast<double>(ops_target_) * cpus);
  } else if (time_limit_ns_ != 0) {
    f = static_cast<double>(ex_->now_ns() - run_start_ns_) / static_cast<double>(time_limit_ns_);
  }
  opt.progress(std::min(1.0, f));
}

// ---- the finisher (CPU 0 after its workload) --------------------------------------------------
//   wait_workload  until every CPU finished its operations; the stop time is the latest finish;
//   wait_l1        until every retired frame was freed WITHOUT drain() (L1), or the timeout;
//   stop_actors    devices and the sampler stop and acknowledge;
//   teardown       snapshot the metrics, drain() (a safety net), destroy every table, flush,
//                  free, check the pool.
step_result machine::finisher_step() {
  constexpr std::uint64_t poll_ns = 1000;
  switch (fin_) {
    case finish_phase::wait_workload: {
      if (cpus_done_.load(std::memory_order_acquire) < cpus) {  // [en-2] pairs with [en-1]
        // A CPU left offline with operations to do (its online event was refused) would keep
        // the run from ever ending: bring it back once every online CPU is done.
        unsigned online_done = 0, online = 0;
        for (unsigned c = 0; c < cpus; ++c) {
          if (!ex_->cpu_online(c)) continue;
          ++online;
          if (c == 0 || (*drivers_)[c].finished.load(std::memory_order_acquire))
            ++online_done;  // [en-8]
        }
        if (online == online_done) {
          for (unsigned c = 1; c < cpus; ++c) {
            if (!ex_->cpu_online(c)) {
              const Status up = ex_->cpu_up(c);
              if (up.ok())
                notes_.push_back("CPU " + std::to_string(c) +
                                 " was brought back online to finish its operations");
            }
          }
        }
        return step_result::sleep_for(poll_ns);
      }
      for (unsigned c = 0; c < cpus; ++c)
        stop_ns_ = std::max(stop_ns_, (*drivers_)[c].finish_ns);
      fin_ = finish_phase::wait_l1;
      [[fallthrough]];
    }
    case finish_phase::wait_l1: {
      const std::uint64_t now = ex_->now_ns();
      const std::uint64_t left = monitor_->pending();
      if (left == 0) {
        l1_held_ = true;
        drain_ns_ = now > stop_ns_ ? now - stop_ns_ : 0;
        l1_reason_ = "every retired frame freed " + std::to_string(drain_ns_) +
                     " ns after the workload stopped (bound " +
                     std::to_string(sc.duration.drain_timeout_ns) + " ns), without drain()";
      } else if (now - std::min(now, stop_ns_) > sc.duration.drain_timeout_ns) {
        l1_held_ = false;
        drain_ns_ = now - std::min(now, stop_ns_);
        l1_reason_ = std::to_string(left) + " retired frames still pending " +
                     std::to_string(drain_ns_) + " ns after the workload stopped (bound " +
                     std::to_string(sc.duration.drain_timeout_ns) +
                     " ns, duration.drain_timeout_ns): " + pending_report(deterministic_);
      } else {
        return step_result::sleep_for(poll_ns);
      }
      fin_ = finish_phase::stop_actors;
      if (sc.faults.devices_through_teardown) translations_at_stop_ = unit_translations();
      stop_actors_.store(true, std::memory_order_release);  // [en-3] pairs with [en-4]
      [[fallthrough]];
    }
    case finish_phase::stop_actors:
      if (actors_stopped_.load(std::memory_order_acquire) <
          actors_to_stop())  // [en-6] pairs with [en-5]
        return step_result::sleep_for(poll_ns);
      fin_ = finish_phase::teardown;
      return step_result::yield();
    case finish_phase::teardown:
      drain_status_ = rec_->drain();
      snapshot_metrics();
      teardown();
      teardown_done_.store(true, std::memory_order_release);
      fin_ = finish_phase::done;
      // The run is over: timers still armed (a policy's next poll, however far away) and the
      // daemon actors must not keep it going.
      ex_->request_stop();
      return step_result::finished();
    case finish_phase::done:
      return step_result::finished();
  }
  return step_result::finished();
}

void machine::snapshot_metrics() {
  snap_.taken = true;
  // reclaim_stats are read in run() after the executor stopped: the policy's per-CPU counters
  // are written by their CPUs' workers (timers may still fire now).
  snap_.mon = monitor_->result();
  snap_.units.clear();
  for (unsigned u = 0; u < sys_->unit_count(); ++u)
    snap_.units.push_back(sys_->get_unit(u).stats());
  snap_.s1_count = sys_->violations().count();
  snap_.tables_coalesced = snap_.splits = 0;
  for (const auto& d : domains) {
    const pt::table_stats ts = d->table->stats();
    snap_.tables_coalesced += ts.coalesced;
    snap_.splits += ts.split;
  }
  const auto first = sys_->violations().first();
  if (!first.empty()) snap_.s1_first = first.front().describe();
}

// Destroys every table (its gather releases every frame), invalidates each domain fully, frees
// the frames, then checks the pool is whole.
void machine::teardown() {
  // Devices still translating: off the domains and out of the caches before any table goes.
  if (sc.faults.devices_through_teardown) detach_and_invalidate();
  for (auto& d : domains) {
    pt::gather g;
    d->table->destroy(g);
    Status s = sys_->flush_sync(*d->dom, iommu::inv_range::all(), flush_timeout_ns_);
    if (!s.ok())
      notes_.push_back("teardown flush of domain " + std::to_string(d->id) +
                       " failed: " + s.message());
    for (mem::frame_id f : g.released()) {
      Status fs = pool_->free(f, "teardown");
      (void)fs;  // refusals are in the ledger, reported below
    }
  }
  leaks_.checked = true;
  const auto leaked = pool_->leaks();
  leaks_.leaked_frames = leaked.size();
  leaks_.ledger_violations = pool_->ledger_violation_count();
  leaks_.report = pool_->leak_report();
  for (const auto& r : pool_->ledger_reports()) {
    if (leaks_.report.size() > 4000) break;
    leaks_.report += (leaks_.report.empty() ? "" : "\n") + r.what;
  }
}

}  // namespace ptreclaim::sim::detail
