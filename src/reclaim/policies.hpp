// Factories of the individual policies (one .cpp each); make_reclaimer() dispatches to them.
#pragma once

#include <memory>

#include "ptreclaim/reclaim/reclaimer.hpp"
#include "ptreclaim/runtime/deferred.hpp"

namespace ptreclaim::reclaim::detail {

std::unique_ptr<reclaimer> make_immediate(const reclaim_env& env, const reclaim_config& config);
std::unique_ptr<reclaimer> make_sync(const reclaim_env& env, const reclaim_config& config);
std::unique_ptr<reclaimer> make_xen(const reclaim_env& env, const reclaim_config& config,
                                    runtime::tasklet_kind kind);
std::unique_ptr<reclaimer> make_linux_global_work(const reclaim_env& env,
                                                  const reclaim_config& config);
std::unique_ptr<reclaimer> make_flush_epoch(const reclaim_env& env, const reclaim_config& config);

}  // namespace ptreclaim::reclaim::detail
