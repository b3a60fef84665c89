// The factories of the policies (one file each under policies/), declared from the registry:
// each file defines detail::make_<id>(env, config) for its line in policies.def, and
// make_reclaimer() dispatches to them.
#pragma once

#include <memory>

#include "ptreclaim/reclaim/reclaimer.hpp"

namespace ptreclaim::reclaim::detail {

#define PTRECLAIM_POLICY(id, name, safe, needs_caller_flush, summary) \
  std::unique_ptr<reclaimer> make_##id(const reclaim_env& env, const reclaim_config& config);
#include "ptreclaim/reclaim/policies.def"
#undef PTRECLAIM_POLICY

}  // namespace ptreclaim::reclaim::detail
