#include "policy_base.hpp"

#include <algorithm>
#include <set>
#include <string>

namespace ptreclaim::reclaim::detail {

policy_base::policy_base(const reclaim_env& env, const reclaim_config& config, bound_scope scope)
    : env_(env),
      config_(config),
      per_cpu_budget_(std::max<std::uint64_t>(1, config.max_pending / env.rt.cpu_count())),
      global_bound_(scope == bound_scope::global || config.max_pending < env.rt.cpu_count()),
      counters_(env.rt.cpu_count()),
      holders_(env.rt.cpu_count()) {
  PTR_ASSERT_MSG(config.max_pending >= 1, "reclaim_config::max_pending must be >= 1");
  env.rt.name_shared(&admitted_, "policy: the global pending count (max_pending)");
  PTR_ASSERT_MSG(config.xen_yield_every >= 1, "reclaim_config::xen_yield_every must be >= 1");
}

bool policy_base::try_admit(unsigned cpu, std::uint64_t n) {
  PTR_DASSERT(n <= admission_limit());
  if (!global_bound_)
    return holder(cpu).held.load(std::memory_order_relaxed) + n <= per_cpu_budget_;
  env_.rt.touch_line(&admitted_, true);  // one line all CPUs write: charged, so it contends
  std::uint64_t a = admitted_.load(std::memory_order_relaxed);
  do {
    if (a + n > config_.max_pending) return false;
  } while (!admitted_.compare_exchange_weak(a, a + n, std::memory_order_relaxed));
  return true;
}

std::uint64_t policy_base::account_frames(domain_number d, const invalidation_range& need,
                                          std::span<const mem::frame_id> frames, unsigned h) {
  const auto n = static_cast<std::uint64_t>(frames.size());
  if (env_.observer != nullptr) {
    for (mem::frame_id f : frames)
      env_.observer->on_retire(d, f, need);
  }
  counters().retired += n;
  if (n != 0) add_held(h, n);
  return n;
}

void policy_base::add_held(unsigned h, std::uint64_t n) {
  holder_count& c = holder(h);
  const std::uint64_t now = c.held.fetch_add(n, std::memory_order_relaxed) + n;
  std::uint64_t peak = c.peak.load(std::memory_order_relaxed);
  while (now > peak && !c.peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void policy_base::move_held(unsigned from, unsigned to, std::uint64_t n) {
  if (n == 0 || from == to) return;
  counters().adopted += n;
  const std::uint64_t was = holder(from).held.fetch_sub(n, std::memory_order_relaxed);
  PTR_ASSERT_MSG(was >= n, "move_held: more frames than the holder has");
  add_held(to, n);
}

std::uint64_t policy_base::pending() const noexcept {
  std::uint64_t sum = global_.held.load(std::memory_order_relaxed);
  for (unsigned c = 0; c < holders_.size(); ++c)
    sum += holders_[c].held.load(std::memory_order_relaxed);
  return sum;
}

bool policy_base::release_frame(mem::frame_id f, const char* path, unsigned h, std::uint64_t now) {
  cpu_counters& c = counters();
  const std::uint64_t retired_ns = env_.pool.meta(f).retired_ns.load(std::memory_order_relaxed);
  if (env_.observer != nullptr) env_.observer->on_free(f, path);
  if (Status s = env_.pool.free(f, path); !s.ok()) {
    ++c.free_errors;  // the ledger recorded it; a run reports it as an S2 failure
    return false;     // and it stays counted: its room is not given back
  }
  c.latency.record(now >= retired_ns ? now - retired_ns : 0);
  ++c.freed;
  // After the observer saw the free, so it never counts more than the holders do.
  const std::uint64_t was = holder(h).held.fetch_sub(1, std::memory_order_relaxed);
  PTR_DASSERT(was >= 1);
  (void)was;
  return true;
}

void policy_base::unadmit(std::uint64_t n) {
  if (!global_bound_ || n == 0) return;
  env_.rt.touch_line(&admitted_, true);
  admitted_.fetch_sub(n, std::memory_order_relaxed);
}

void policy_base::free_frame(mem::frame_id f, const char* path, unsigned h, std::uint64_t now) {
  if (release_frame(f, path, h, now)) unadmit(1);
}

void policy_base::free_list(frame_list& list, const char* path, unsigned h) {
  if (list.empty()) return;
  const std::uint64_t now = env_.rt.now_ns();
  std::uint64_t freed = 0;
  while (!list.empty())
    freed += release_frame(list.pop_front(env_.pool), path, h, now) ? 1 : 0;
  unadmit(freed);  // once for the list: the shared count is one line
}

void policy_base::free_frames(std::span<const mem::frame_id> frames, const char* path, unsigned h) {
  if (frames.empty()) return;
  const std::uint64_t now = env_.rt.now_ns();
  std::uint64_t freed = 0;
  for (mem::frame_id f : frames)
    freed += release_frame(f, path, h, now) ? 1 : 0;
  unadmit(freed);
}

epoch_t policy_base::invalidate_and_wait(domain_number d, const invalidation_range& range) {
  Result<epoch_t> e = env_.backend.invalidate_sync(d, range, config_.wait_timeout_ns);
  PTR_ASSERT_MSG(e.ok() || e.status().code() == errc::busy,
                 "invalidation could not be submitted; freeing would be unsafe");
  ++counters().invalidations;
  PTR_ASSERT_MSG(e.ok(), "invalidation did not complete within wait_timeout_ns");
  return *e;
}

void policy_base::invalidate_owners_and_free(frame_list& list, const char* path, unsigned h) {
  if (list.empty()) return;
  std::set<domain_number> domains;
  list.for_each(env_.pool, [&](mem::frame_id f) { domains.insert(env_.pool.ident(f).domain); });
  for (domain_number d : domains)
    invalidate_and_wait(d, invalidation_range::whole_domain());
  free_list(list, path, h);
}

invalidation_range policy_base::covering(const pt::gather& g, const iova_range& iova) {
  invalidation_range r{~pt::iova_t{0}, 0, true};
  if (!g.empty()) {
    r.first = g.first();
    r.last = g.last();
  }
  if (!iova.empty()) {
    r.first = std::min(r.first, iova.first);
    r.last = std::max(r.last, iova.last);
  }
  if (r.first > r.last) return invalidation_range::whole_domain();
  return r;
}

void policy_base::retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) {
  note_deferred_iova(iova);
  const invalidation_range inv = covering(g, iova);
  if (!g.released().empty()) {
    if (retire_inline(d, g, env_.rt.current_cpu(), "deferred-sync", inv, [] {}))
      ++counters().backpressure;
  } else if (!g.empty() || !iova.empty()) {
    invalidate_and_wait(d, inv);
  }
  return_iova(d, iova);
}

void policy_base::return_iova(domain_number d, const iova_range& r) {
  if (r.empty()) return;
  ++counters().iovas_out;
  if (env_.iovas != nullptr) env_.iovas->iova_free(d, r);
}

void policy_base::report_wrong_cpu(unsigned owner, const char* who) {
  ++counters().wrong_cpu_runs;
  if (env_.observer != nullptr) {
    env_.observer->on_invariant_violation(std::string(who) + " for CPU " + std::to_string(owner) +
                                          "'s list ran on CPU " +
                                          std::to_string(env_.rt.current_cpu()));
  }
}

std::string policy_base::describe_pending() const {
  std::string out;
  auto line = [&](const std::string& who, std::uint64_t n) {
    if (n != 0) out += who + " holds " + std::to_string(n) + " frames\n";
  };
  line("the shared list", global_.held.load(std::memory_order_relaxed));
  for (unsigned c = 0; c < holders_.size(); ++c)
    line("CPU " + std::to_string(c), holders_[c].held.load(std::memory_order_relaxed));
  return out;
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
    s.adopted += k.adopted;
    s.timer_rearms += k.timer_rearms;
    s.iovas_deferred += k.iovas_in;
    s.iovas_returned += k.iovas_out;
    s.retire_to_free_ns.merge(k.latency);
  }
  s.pending = pending();
  s.peak_pending = global_.peak.load(std::memory_order_relaxed);
  for (unsigned c = 0; c < holders_.size(); ++c)
    s.peak_pending += holders_[c].peak.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ptreclaim::reclaim::detail
