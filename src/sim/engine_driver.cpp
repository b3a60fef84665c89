// The CPU programs (the operation driver: begin, mutate + retire, softirq points, the caller's
// flush), the finisher (CPU 0 after its workload: drain, L1, stop the actors, teardown), and the
// snapshots and teardown at the end of a run.
#include <algorithm>
#include <chrono>

#include "sim/engine_internal.hpp"
#include "sim/recorder.hpp"

namespace ptreclaim::sim::detail {

using runtime::step_result;

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
      if (recorder_) recorder_->op_begin(cpu);
      d.ph = cpu_driver::phase::mutate;
      [[fallthrough]];
    }
    case cpu_driver::phase::mutate: {
      ex_->charge(cost_kind::op_overhead);
      d.g.clear();
      d.last_chunk = wl_->mutate(cpu, d.g);
      mix(d.trace, wl_->last_trace(cpu));
      flush_mapped(d);
      if (!d.g.released().empty()) {
        // Lazy DMA: no caller flush will follow, so the frames go as a deferred unmap.
        if (lazy_dma())
          rec_->retire_deferred(d.dom->id, d.g, reclaim::iova_range{});
        else
          rec_->retire(d.dom->id, d.g);
        d.dom->replaced.push(d.g.first(), d.g.last() - d.g.first() + 1);
      }
      if (d.g.empty()) {
        if (d.last_chunk) return complete_op(cpu, d);
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
      caller_flush(cpu, d);
      if (sc.caller.softirq == softirq_point::after_caller_flush) ex_->process_pending_softirqs();
      if (d.last_chunk) return complete_op(cpu, d);
      d.ph = cpu_driver::phase::mutate;
      return step_result::busy();
    case cpu_driver::phase::done:
      return step_result::finished();
    case cpu_driver::phase::finisher:
      return finisher_step();
  }
  return step_result::finished();
}

// The range the caller invalidates for what gather g owes (scenario caller.flush_range).
reclaim::invalidation_range machine::caller_range_of(const domain_slot& dom, const pt::gather& g,
                                                     bool batched) const {
  reclaim::invalidation_range r = reclaim::invalidation_range::of(g);
  const bool asked = g.request_first() <= g.request_last();
  switch (sc.caller.flush_range) {
    case caller_range::gather:
      return r;
    case caller_range::request:
      if (asked) {
        r.first = g.request_first();
        r.last = g.request_last();
      }
      return r;
    case caller_range::xen:
      break;
  }
  // Xen's iommu_iotlb_flush(d, dfn, page_count, flags): dfn and page_count are what the caller
  // asked to map or unmap; IOMMU_FLUSHF_all is set when a table was freed (a coalesce, an
  // emptied table), except for batched callers (iommu_dont_flush_iotlb), whose one flush at the
  // end carries the accumulated range only.
  const bool flush_all = !batched && !g.released().empty();
  const std::uint64_t pages = asked ? (g.request_last() - g.request_first()) / 4096 + 1 : 0;
  const std::uint64_t dfn = asked ? g.request_first() / 4096 : 0;
  const bool pow2_aligned = pages != 0 && (pages & (pages - 1)) == 0 && dfn % pages == 0;
  const bool amd = sc.domains[dom.group].format == pt::format_kind::amd_v1_4;
  if (flush_all || !pow2_aligned) return reclaim::invalidation_range::whole_domain();
  r.first = g.request_first();
  r.last = g.request_last();
  // VT-d (iommu_flush_iotlb): a PSI of order log2(page_count) with IH = 0 always (the driver
  // "always flush[es] non-leaf"). AMD (amd_iommu_flush_iotlb_pages): INVALIDATE_IOMMU_PAGES of
  // that order, with PDE = 0 for an order-0 flush and 1 otherwise.
  r.nonleaf = amd ? pages != 1 : true;
  return r;
}

void machine::caller_flush(unsigned cpu, cpu_driver& d) {
  switch (sc.caller.flush) {
    case caller_flush::each_op: {
      auto e = reclaim::invalidate_after_retire(
          *rec_, *monitor_, d.dom->id, caller_range_of(*d.dom, d.g, false), flush_timeout_ns_);
      PTR_ASSERT_MSG(e.ok(), "the caller's invalidation did not complete (a hung IOMMU model)");
      ++d.caller_flushes;
      wl_->caller_flushed(cpu);
      break;
    }
    case caller_flush::batched: {
      const std::size_t i = static_cast<std::size_t>(d.dom->id - 1);
      cpu_driver::owed& o = d.batch[i];
      o.any = true;
      o.g.add_range(d.g.first(), d.g.last());
      if (d.g.request_first() <= d.g.request_last())
        o.g.add_request(d.g.request_first(), d.g.request_last());
      if (d.g.nonleaf_changed()) o.g.set_nonleaf_changed();
      break;
    }
    case caller_flush::none:
      wl_->caller_flushed(cpu);
      break;
    case caller_flush::lazy:  // the unmap went to the policy (workload -> lazy_unmap)
      break;
  }
}

// Units in caching mode may have cached "not present" for what the chunk just mapped: the
// mapping caller invalidates the mapped range at once (reclaim::invalidate_after_map), whatever
// caller.flush says, as Linux's map path does. Units without caching mode need nothing.
void machine::flush_mapped(cpu_driver& d) {
  if (!sc.iommu.unit.caching_mode || !d.g.mapped_any()) return;
  auto e = reclaim::invalidate_after_map(*monitor_, d.dom->id, d.g, flush_timeout_ns_);
  PTR_ASSERT_MSG(e.ok(), "the caller's invalidation did not complete (a hung IOMMU model)");
  ++d.caller_flushes;
  ++d.map_flushes;
}

void machine::flush_batch(unsigned cpu, cpu_driver& d) {
  for (std::size_t i = 0; i < d.batch.size(); ++i) {
    cpu_driver::owed& o = d.batch[i];
    if (!o.any) continue;
    auto e = reclaim::invalidate_after_retire(*rec_, *monitor_, domains[i]->id,
                                              caller_range_of(*domains[i], o.g, true),
                                              flush_timeout_ns_);
    PTR_ASSERT_MSG(e.ok(), "the caller's invalidation did not complete (a hung IOMMU model)");
    ++d.caller_flushes;
    o.any = false;
    o.g.clear();
  }
  wl_->caller_flushed(cpu);
  d.batch_ops = 0;
}

step_result machine::complete_op(unsigned cpu, cpu_driver& d) {
  ++d.ops;
  if (recorder_) recorder_->op_end(ex_->current_cpu());
  if (!deterministic_) d.ops_seen.store(d.ops, std::memory_order_relaxed);
  d.ph = cpu_driver::phase::between_ops;
  if (sc.caller.flush == caller_flush::batched) {
    ++d.batch_ops;
    // Within a batch there is no scheduler point: the owed flush must come before one, as the
    // retire contract (and Xen) require. The last operation of the run flushes too.
    if (d.batch_ops < sc.caller.flush_batch && !workload_over(d)) return step_result::busy();
    flush_batch(cpu, d);
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

// ---- lazy DMA ----------------------------------------------------------------------------------

iova_space* machine::make_iova_space(std::uint64_t slice_bytes, std::uint64_t buffer_bytes) {
  if (!iovas_) {
    iovas_ = std::make_unique<iova_space>(cpus, slice_bytes, buffer_bytes);
    monitor_->set_iova_sink(iovas_.get());
  }
  return iovas_.get();
}

void machine::lazy_unmap(domain_slot& dom, const pt::gather& g, const reclaim::iova_range& r) {
  // Before the policy sees it: it may give the IOVA back inside retire_deferred. The unmap
  // counts as returned (exposure) when retire_deferred returns (sync invalidates inside).
  iovas_->mark_deferred(r.first);
  monitor_->on_iova_unmapped(dom.id, r);
  if (!g.released().empty()) dom.replaced.push(g.first(), g.last() - g.first() + 1);
  rec_->retire_deferred(dom.id, g, r);
  iovas_->unmap_returned(r.first, ex_->now_ns());
  dom.unmapped.push(r.first, r.last - r.first + 1);
}

void machine::iova_allocated(domain_slot& dom, const reclaim::iova_range& r) {
  monitor_->on_iova_allocated(dom.id, r);
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
      // Lazy DMA: IOVAs the policy still holds wait like frames.
      const std::uint64_t left = monitor_->pending() + monitor_->deferred_iovas();
      if (left == 0) {
        l1_held_ = true;
        drain_ns_ = now > stop_ns_ ? now - stop_ns_ : 0;
        l1_reason_ = "every retired frame freed " + std::to_string(drain_ns_) +
                     " ns after the workload stopped (bound " +
                     std::to_string(sc.duration.drain_timeout_ns) + " ns), without drain()";
      } else if (now - std::min(now, stop_ns_) > sc.duration.drain_timeout_ns) {
        l1_held_ = false;
        drain_ns_ = now - std::min(now, stop_ns_);
        l1_reason_ = std::to_string(left) + " retired frames (and deferred IOVAs) still pending " +
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
      if (recorder_) recorder_->set_context(0, "teardown");
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
  if (!first.empty()) {
    snap_.s1_first = first.front().describe();
    if (first.front().frame.valid()) snap_.s1_first_frame = first.front().frame.value;
  }
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
