// What a finished run measured, from the snapshots the finisher took: devices, invalidations,
// reclamation, superpages, hotplug, how the run stopped, and the evidence the verdicts
// (invariants.cpp) are judged from.
#include <algorithm>

#include "sim/engine_internal.hpp"
#include "sim/invariants.hpp"

namespace ptreclaim::sim::detail {

std::string machine::note_how_it_stopped(const runtime::run_stats& st, run_result& out) {
  if (stopped_early_.load(std::memory_order_relaxed)) {
    out.complete = false;
    out.interrupted_by = signal_label(opt.stop->signal_number());
    notes_.push_back("stopped early by " + out.interrupted_by + " after " +
                     std::to_string(out.operations) +
                     " operations: the workload did not finish; the invariants were checked on "
                     "what ran");
  }
  std::string stuck;
  if (st.reason == runtime::stop_reason::no_progress) {
    stuck = "the watchdog stopped the run: no operation completed and no frame was unlinked, " +
            std::string("retired or freed for ") +
            (deterministic_ ? std::to_string(sc.duration.watchdog_steps) +
                                  " executor steps (duration.watchdog_steps)"
                            : std::to_string(sc.duration.watchdog_real_ns) +
                                  " ns of real time (duration.watchdog_real_ns)") +
            "; " + stuck_report();
    notes_.push_back(stuck);
  } else if (fin_ != finish_phase::done) {
    notes_.push_back(
        std::string("the executor stopped early: ") + runtime::stop_reason_name(st.reason) +
        " (the finisher did not complete; invariants checked on what ran); " + stuck_report());
  }
  return stuck;
}

void machine::collect_devices(run_result& out) const {
  for (std::size_t i = 0; i < snap_.units.size(); ++i) {
    const iommu::unit_stats& u = snap_.units[i];
    // The queue's processing time: each descriptor's latency, stalls and slow waits included.
    const iommu::latency_config& l = sys_->get_unit(static_cast<unsigned>(i)).config().latency;
    using iommu::inv_type;
    const auto n = [&u](inv_type t) { return u.descriptors[static_cast<std::size_t>(t)]; };
    const std::uint64_t busy =
        n(inv_type::global) * l.inv_global_ns + n(inv_type::domain) * l.inv_domain_ns +
        n(inv_type::page) * l.inv_page_ns + n(inv_type::wait) * l.inv_wait_ns +
        n(inv_type::devtlb) * l.inv_devtlb_ns + u.stall_ns + u.slow_wait_ns;
    if (out.elapsed_ns != 0) {
      out.invalidations.busiest_queue =
          std::max(out.invalidations.busiest_queue,
                   std::min(1.0, static_cast<double>(busy) / static_cast<double>(out.elapsed_ns)));
    }
    const iommu::queue_lock_stats q = sys_->queue_lock_stats_of(static_cast<unsigned>(i));
    if (out.elapsed_ns != 0) {
      out.invalidations.busiest_queue_lock = std::max(
          out.invalidations.busiest_queue_lock,
          std::min(1.0, static_cast<double>(q.hold_ns) / static_cast<double>(out.elapsed_ns)));
    }
    out.invalidations.queue_lock_acquisitions += q.acquisitions;
    out.invalidations.queue_lock_wait_ns += q.wait_ns;
    out.invalidations.queue_lock_max_wait_ns =
        std::max(out.invalidations.queue_lock_max_wait_ns, q.max_wait_ns);
    out.devices.translations += u.translations;
    out.devices.faults += u.faults;
    out.devices.iotlb_hits += u.iotlb_hits;
    out.devices.iotlb_misses += u.iotlb_misses;
    std::uint64_t psc = 0;
    for (std::uint64_t h : u.psc_hits)
      psc += h;
    out.devices.psc_hits += psc;
    out.devices.psc_misses += u.walks > psc ? u.walks - psc : 0;
    out.devices.pte_reads += u.pte_reads;
    for (std::size_t k = 0; k < u.descriptors.size(); ++k) {
      out.invalidations.descriptors += u.descriptors[k];
      if (k == static_cast<std::size_t>(iommu::inv_type::wait))
        out.invalidations.waits += u.descriptors[k];
    }
  }
}

void machine::collect_reclaim(run_result& out, std::uint64_t caller_flushes) const {
  const reclaim::reclaim_stats& rs = snap_.stats;
  const reclaim::safety_monitor::report& mon = snap_.mon;
  out.invalidations.flushes = mon.invalidations;
  out.invalidations.caller_flushes = caller_flushes;
  out.invalidations.backpressure_flushes = rs.backpressure;
  out.reclaim.tables_released = rs.retired;
  out.reclaim.tables_freed = rs.freed;
  out.reclaim.peak_pending =
      mon.peak_pending;  // exact (the policy's own is a sum of per-holder peaks)
  out.reclaim.pending_bound = sc.reclaim.max_pending_frames;
  out.reclaim.pending_at_end = pending_at_end_.load(std::memory_order_relaxed);
  out.reclaim.drain_ns = drain_ns_;
  out.reclaim.pending_series = series_;
  out.reclaim.retire_to_free_ns = observer_->merged();

  out.superpages.coalesced_2m = wl_->coalesced_2m();
  out.superpages.coalesced_1g = wl_->coalesced_1g();
  out.superpages.tables_coalesced = snap_.tables_coalesced;
  out.superpages.splits = snap_.splits;
}

void machine::collect_dma(run_result& out) {
  if (sc.kind != workload_kind::dma_storm) return;
  dma_metrics& m = out.dma;
  const reclaim::safety_monitor::report& mon = snap_.mon;
  m.measured = true;
  m.lazy = lazy_dma();
  m.packets = out.operations * sc.dma_storm.packets_per_op;
  m.iovas_deferred = mon.iovas_unmapped;
  m.iovas_returned = mon.iovas_returned;
  m.returned_early = mon.iovas_returned_early;
  m.peak_deferred = mon.peak_deferred_iovas;
  m.iova_exhausted = wl_->iova_exhausted();
  if (iovas_) {
    m.exposures = iovas_->exposures();
    m.longest_exposure_ns = iovas_->longest_exposure_ns();
  }
  if (m.iova_exhausted != 0)
    notes_.push_back(std::to_string(m.iova_exhausted) +
                     " packets dropped: no free IOVA in the CPU's slice (the policy held them)");
}

void machine::collect_hotplug(const runtime::run_stats& st, run_result& out) {
  out.hotplug.offlines = st.cpu_downs;
  out.hotplug.onlines = st.cpu_ups;
  out.hotplug.failed_offlines = st.cpu_down_failures;
  out.hotplug.deferred_offlines = st.hotplug_defers;
  out.hotplug.frames_migrated = snap_.stats.adopted;
  if (sc.hotplug.enabled) {
    notes_.push_back("hotplug: " + std::to_string(st.cpu_downs) + " offline, " +
                     std::to_string(st.cpu_ups) + " online, " +
                     std::to_string(st.cpu_down_failures) + " failed offline, " +
                     std::to_string(st.hotplug_defers) +
                     " offline tries deferred (the CPU was inside an operation, which "
                     "stop_machine does not interrupt), " +
                     std::to_string(st.hotplug_rejected) + " events rejected");
  }
}

invariant_evidence machine::evidence(const runtime::run_stats& st, const run_result& out,
                                     const std::string& stuck) const {
  invariant_evidence ev;
  ev.s1_count = snap_.s1_count;
  ev.s1_first = snap_.s1_first;
  ev.ledger = leaks_.checked ? leaks_.ledger_violations : pool_->ledger_violation_count();
  if (!pool_->ledger_reports().empty()) ev.ledger_first = pool_->ledger_reports().front().what;
  ev.mon = snap_.mon;
  ev.policy = snap_.stats;
  ev.leaks = leaks_;
  ev.translations = out.devices.translations;
  ev.pte_reads = out.devices.pte_reads;
  ev.pending_bound = out.reclaim.pending_bound;
  ev.peak_pending = out.reclaim.peak_pending;
  ev.hotplug = sc.hotplug.enabled;
  ev.run = st;
  ev.reached_drain = fin_ != finish_phase::wait_workload && fin_ != finish_phase::wait_l1;
  ev.l1_held = l1_held_;
  ev.l1_reason = l1_reason_;
  ev.stuck = stuck;
  ev.lazy = lazy_dma();
  ev.caller = std::string(caller_flush_name(sc.caller.flush));
  return ev;
}

}  // namespace ptreclaim::sim::detail
