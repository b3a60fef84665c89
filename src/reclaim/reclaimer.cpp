#include "ptreclaim/reclaim/reclaimer.hpp"

#include "policies.hpp"

namespace ptreclaim::reclaim {

Result<std::unique_ptr<reclaimer>> make_reclaimer(policy_kind kind, const reclaim_env& env,
                                                  const reclaim_config& config) {
  if (config.max_pending == 0)
    return Status(errc::invalid_argument, "reclaim max_pending must be at least 1");
  if (config.batches_per_cpu == 0)
    return Status(errc::invalid_argument, "reclaim batches_per_cpu must be at least 1");
  if (config.batch_frames == 0)
    return Status(errc::invalid_argument, "reclaim batch_frames must be at least 1");
  if (config.xen_yield_every == 0)
    return Status(errc::invalid_argument, "reclaim xen_yield_every must be at least 1");
  switch (kind) {
    case policy_kind::immediate:
      return detail::make_immediate(env, config);
    case policy_kind::sync:
      return detail::make_sync(env, config);
    case policy_kind::xen_tasklet:
      return detail::make_xen(env, config, runtime::tasklet_kind::plain);
    case policy_kind::xen_softirq_tasklet:
      return detail::make_xen(env, config, runtime::tasklet_kind::softirq);
    case policy_kind::linux_global_work:
      return detail::make_linux_global_work(env, config);
    case policy_kind::flush_epoch:
      return detail::make_flush_epoch(env, config);
  }
  return Status(errc::invalid_argument, "unknown policy");
}

Result<epoch_t> invalidate_after_retire(reclaimer& r, invalidation_backend& b, domain_number d,
                                        const pt::gather& g, std::uint64_t timeout_ns) {
  if (g.empty()) return epoch_t{0};
  const invalidation_range range = invalidation_range::of(g);
  r.before_caller_invalidation(d);
  Result<epoch_t> e = b.invalidate(d, range);
  if (!e.ok()) return e;
  if (!b.wait(d, *e, timeout_ns))
    return Status(errc::busy, "invalidation did not complete within the timeout");
  // After the wait, so a policy that rides on it can free at once.
  r.note_caller_invalidation(d, range, *e);
  return e;
}

}  // namespace ptreclaim::reclaim
