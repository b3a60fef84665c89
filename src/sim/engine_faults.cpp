// Injected faults in a run (the scenario's [faults] section): the IOMMU units' queue faults and
// the pool's allocation faults, seeded from the run's seed; devices that keep translating
// through teardown; and the figures a run reports about them.
//
// Teardown with devices still translating does what a driver does before it frees a domain's
// tables: every context entry is cleared (no walk can start after that), then every domain is
// invalidated fully on every unit and waited for (the wait rule holds the wait until the walks
// that started before the invalidation ended). Only then are tables destroyed and frames freed,
// so S1 holds with the devices running; walks after the detach fault with no context.
#include <limits>

#include "sim/engine_internal.hpp"

namespace ptreclaim::sim::detail {

namespace {
// Salts of the fault schedules' seeds (engine.md lists the others: 1, 2, 3, 0x1000 + cpu).
constexpr std::uint64_t queue_fault_salt = 4;
constexpr std::uint64_t alloc_fault_salt = 5;
}  // namespace

iommu::unit_config machine::unit_config_with_faults() const {
  iommu::unit_config c = sc.iommu.unit;
  c.faults = sc.faults.queue;
  if (c.faults.enabled()) c.faults.seed = root_.fork(queue_fault_salt).next();
  return c;
}

void machine::arm_alloc_faults() {
  if (sc.faults.alloc_fail_probability > 0)
    pool_->set_table_alloc_faults(sc.faults.alloc_fail_probability,
                                  root_.fork(alloc_fault_salt).next());
}

bool machine::device_keeps_running() const noexcept {
  return sc.faults.devices_through_teardown && !teardown_done_.load(std::memory_order_acquire);
}

unsigned machine::actors_to_stop() const noexcept {
  // Devices that keep translating never acknowledge before teardown; the sampler does.
  return sc.faults.devices_through_teardown ? actors_total_ - static_cast<unsigned>(devices_.size())
                                            : actors_total_;
}

std::uint64_t machine::unit_translations() const {
  std::uint64_t n = 0;
  for (unsigned u = 0; u < sys_->unit_count(); ++u)
    n += sys_->get_unit(u).stats().translations;
  return n;
}

void machine::detach_and_invalidate() {
  for (unsigned id = 0; id < limits::max_devices; ++id) {
    const auto dev = static_cast<iommu::device_id>(id);
    if (sys_->unit_of(dev) == nullptr) continue;
    if (sys_->detach(dev).ok()) ++detached_;
  }
  for (auto& d : domains) {
    const Status s = sys_->flush_sync(*d->dom, iommu::inv_range::all(), flush_timeout_ns_);
    if (!s.ok())
      notes_.push_back("teardown: the invalidation after detaching domain " +
                       std::to_string(d->id) + "'s devices failed: " + s.message());
  }
}

void machine::fault_results(run_result& out) {
  fault_metrics& f = out.faults;
  f.enabled = sc.faults.any();
  // The units' final counts: teardown's own invalidations may meet faults too.
  for (unsigned k = 0; k < sys_->unit_count(); ++k) {
    const iommu::unit_stats u = sys_->get_unit(k).stats();
    f.ite += u.ite_errors;
    f.iqe += u.iqe_errors;
    f.descriptors_aborted += u.descriptors_aborted;
    f.stalls += u.stalls;
    f.stall_ns += u.stall_ns;
    f.slow_waits += u.slow_waits;
    f.slow_wait_ns += u.slow_wait_ns;
  }
  f.resubmissions = sys_->resubmissions();
  f.alloc_failures = pool_->injected_table_failures();
  f.mutation_errors = wl_->errors();
  f.devices_through_teardown = sc.faults.devices_through_teardown;
  f.detached_contexts = detached_;
  if (f.devices_through_teardown && fin_ == finish_phase::done) {
    f.teardown_translations = unit_translations() - translations_at_stop_;
    // S1 must hold for every walk, the ones during and after teardown included: the
    // snapshot before teardown did not see those.
    snap_.s1_count = sys_->violations().count();
    const auto first = sys_->violations().first();
    if (!first.empty()) {
      snap_.s1_first = first.front().describe();
      if (first.front().frame.valid()) snap_.s1_first_frame = first.front().frame.value;
    }
  }
}

}  // namespace ptreclaim::sim::detail
