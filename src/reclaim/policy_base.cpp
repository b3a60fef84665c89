#include "policy_base.hpp"

#include <algorithm>
#include <set>
#include <string>

namespace ptreclaim::reclaim::detail {

policy_base::policy_base(const reclaim_env& env, const reclaim_config& config)
    : env_(env),
      config_(config),
      per_cpu_budget_(std::max<std::uint64_t>(1, config.max_pending / env.rt.cpu_count())),
      counters_(env.rt.cpu_count()) {
  PTR_ASSERT_MSG(config.max_pending >= 1, "reclaim_config::max_pending must be >= 1");
  PTR_ASSERT_MSG(config.xen_yield_every >= 1, "reclaim_config::xen_yield_every must be >= 1");
}

std::uint64_t policy_base::account_retire(domain_number d, const pt::gather& g) {
  const auto n = static_cast<std::uint64_t>(g.released().size());
  if (env_.observer != nullptr) {
    const invalidation_range need = invalidation_range::of(g);
    for (mem::frame_id f : g.released())
      env_.observer->on_retire(d, f, need);
  }
  counters().retired += n;
  const std::uint64_t now = pending_.fetch_add(n, std::memory_order_relaxed) + n;
  std::uint64_t peak = peak_pending_.load(std::memory_order_relaxed);
  while (now > peak && !peak_pending_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  return n;
}

void policy_base::free_frame(mem::frame_id f, const char* path) {
  cpu_counters& c = counters();
  const std::uint64_t retired_ns = env_.pool.meta(f).retired_ns.load(std::memory_order_relaxed);
  if (env_.observer != nullptr) env_.observer->on_free(f, path);
  if (Status s = env_.pool.free(f, path); !s.ok()) {
    ++c.free_errors;  // the ledger recorded it; a run reports it as an S2 failure
    return;
  }
  const std::uint64_t now = env_.rt.now_ns();
  c.latency.record(now >= retired_ns ? now - retired_ns : 0);
  ++c.freed;
  pending_.fetch_sub(1, std::memory_order_relaxed);
}

void policy_base::free_list(frame_list& list, const char* path) {
  while (!list.empty())
    free_frame(list.pop_front(env_.pool), path);
}

void policy_base::free_gather(const pt::gather& g, const char* path) {
  for (mem::frame_id f : g.released())
    free_frame(f, path);
}

epoch_t policy_base::invalidate_and_wait(domain_number d, const invalidation_range& range) {
  Result<epoch_t> e = env_.backend.invalidate(d, range);
  PTR_ASSERT_MSG(e.ok(), "invalidation could not be submitted; freeing would be unsafe");
  ++counters().invalidations;
  const bool done = env_.backend.wait(d, *e, config_.wait_timeout_ns);
  PTR_ASSERT_MSG(done, "invalidation did not complete within wait_timeout_ns");
  return *e;
}

void policy_base::invalidate_owners_and_free(frame_list& list, const char* path) {
  if (list.empty()) return;
  std::set<domain_number> domains;
  list.for_each(env_.pool, [&](mem::frame_id f) { domains.insert(env_.pool.ident(f).domain); });
  for (domain_number d : domains)
    invalidate_and_wait(d, invalidation_range::whole_domain());
  free_list(list, path);
}

void policy_base::report_wrong_cpu(unsigned owner, const char* who) {
  ++counters().wrong_cpu_runs;
  if (env_.observer != nullptr) {
    env_.observer->on_invariant_violation(std::string(who) + " for CPU " + std::to_string(owner) +
                                          "'s list ran on CPU " +
                                          std::to_string(env_.rt.current_cpu()));
  }
}

reclaim_stats policy_base::stats() const {
  reclaim_stats s;
  for (unsigned c = 0; c < counters_.size(); ++c) {
    const cpu_counters& k = counters_[c];
    s.retired += k.retired;
    s.freed += k.freed;
    s.invalidations += k.invalidations;
    s.rides += k.rides;
    s.backpressure += k.backpressure;
    s.worker_runs += k.worker_runs;
    s.free_errors += k.free_errors;
    s.wrong_cpu_runs += k.wrong_cpu_runs;
    s.retire_to_free_ns.merge(k.latency);
  }
  s.pending = pending_.load(std::memory_order_relaxed);
  s.peak_pending = peak_pending_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ptreclaim::reclaim::detail
