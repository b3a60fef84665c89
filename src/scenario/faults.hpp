// The [faults] section of a scenario: reading and cross-field validation. Private to the scenario
// component.
#pragma once

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "scenario/reader.hpp"

namespace ptreclaim::sim::detail {

void read_faults(table_reader t, faults_params& f);
// The worst time one invalidation can take under the queue faults, times (domains + 1) for the
// back-pressure paths that invalidate every domain in turn, must stay below
// invalidation_timeout_ns. invalid_argument "faults...: reason" otherwise.
[[nodiscard]] Status validate_faults(const scenario& s);
// That worst time for one invalidation, in ns (0 without queue faults).
[[nodiscard]] std::uint64_t worst_invalidation_ns(const scenario& s);

}  // namespace ptreclaim::sim::detail
