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
#define PTRECLAIM_POLICY(id, name, safe, needs_caller_flush, summary) \
  case policy_kind::id:                                               \
    return detail::make_##id(env, config);
#include "ptreclaim/reclaim/policies.def"
#undef PTRECLAIM_POLICY
  }
  return Status(errc::invalid_argument, "unknown policy");
}

Result<epoch_t> invalidate_after_retire(reclaimer& r, invalidation_backend& b, domain_number d,
                                        const pt::gather& g, std::uint64_t timeout_ns) {
  if (g.empty()) return epoch_t{0};
  return invalidate_after_retire(r, b, d, invalidation_range::of(g), timeout_ns);
}

Result<epoch_t> invalidate_after_retire(reclaimer& r, invalidation_backend& b, domain_number d,
                                        const invalidation_range& range, std::uint64_t timeout_ns) {
  r.before_caller_invalidation(d);
  Result<epoch_t> e = b.invalidate_sync(d, range, timeout_ns);
  if (!e.ok()) return e;
  // After the wait, so a policy that rides on it can free at once.
  r.note_caller_invalidation(d, range, *e);
  return e;
}

Result<epoch_t> invalidate_after_map(invalidation_backend& b, domain_number d, const pt::gather& g,
                                     std::uint64_t timeout_ns) {
  if (!g.mapped_any()) return epoch_t{0};
  return b.invalidate_sync(d, {g.mapped_first(), g.mapped_last(), true}, timeout_ns);
}

}  // namespace ptreclaim::reclaim
