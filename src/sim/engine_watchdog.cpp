// The run's watchdog and its reports: the progress count the executor's watchdog watches, and
// what a run that stopped without finishing (or whose frames stayed pending) was stuck on.
#include <string>

#include "sim/engine_internal.hpp"

namespace ptreclaim::sim::detail {

namespace {
const char* phase_name(cpu_driver::phase p) {
  switch (p) {
    case cpu_driver::phase::between_ops:
      return "between operations";
    case cpu_driver::phase::mutate:
      return "mutating a page table";
    case cpu_driver::phase::softirq:
      return "at a softirq point";
    case cpu_driver::phase::flush:
      return "in its caller flush";
    case cpu_driver::phase::done:
      return "done";
    case cpu_driver::phase::finisher:
      return "running the finisher";
  }
  return "?";
}
}  // namespace

const char* machine::finish_phase_name(finish_phase f) {
  switch (f) {
    case finish_phase::wait_workload:
      return "waiting for the workload to finish";
    case finish_phase::wait_l1:
      return "waiting for every retired frame to be freed (L1)";
    case finish_phase::stop_actors:
      return "stopping the devices";
    case finish_phase::teardown:
      return "tearing down";
    case finish_phase::done:
      return "done";
  }
  return "?";
}

std::uint64_t machine::progress_probe() const {
  std::uint64_t p = monitor_->progress();
  for (unsigned c = 0; c < cpus; ++c) {
    const cpu_driver& d = (*drivers_)[c];
    // Deterministic: the probe runs on the thread that runs every step. Threaded: ops_seen.
    p += deterministic_ ? d.ops : d.ops_seen.load(std::memory_order_relaxed);
  }
  return p;
}

std::string machine::pending_report(bool quiescent) const {
  if (!quiescent) {
    // Threaded and still running: other CPUs own their queues; only the count is safe to read.
    return std::to_string(rec_->pending()) +
           " frames held by the policy (replay the run with --executor deterministic for what "
           "each CPU's queue waits for)";
  }
  std::string s = rec_->describe_pending();
  while (!s.empty() && s.back() == '\n')
    s.pop_back();
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i)
    out += s[i] == '\n' ? std::string("; ") : std::string(1, s[i]);
  return out.empty() ? std::string("nothing held by the policy") : out;
}

std::string machine::stuck_report() const {
  std::string out;
  for (unsigned c = 0; c < cpus; ++c) {
    const cpu_driver& d = (*drivers_)[c];
    const runtime::pending_counts q = ex_->pending_on(c);
    out += "CPU " + std::to_string(c) + (ex_->cpu_online(c) ? "" : " (offline)") + " " +
           phase_name(d.ph) + ", " + std::to_string(d.ops) + " operations done";
    if (ops_target_ != 0) out += " of " + std::to_string(ops_target_);
    if (q.total() != 0)
      out += ", queued: " + std::to_string(q.plain_tasklets) + " tasklets, " +
             std::to_string(q.softirq_tasklets) + " softirq tasklets, " +
             std::to_string(q.work_items) + " work items, " + std::to_string(q.timers) + " timers";
    out += "; ";
  }
  out += "the finisher was " + std::string(finish_phase_name(fin_)) + "; " +
         std::to_string(monitor_->pending()) + " retired frames pending: " + pending_report(true);
  return out;
}

}  // namespace ptreclaim::sim::detail
