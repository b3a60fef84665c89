// The injected faults of a run in the text report and in JSON. Private to the report library.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim::detail {

// (label, value) lines for the detailed run report; none when the run injected nothing.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> fault_lines(const fault_metrics& f);
[[nodiscard]] nlohmann::json fault_json(const fault_metrics& f);

}  // namespace ptreclaim::sim::detail
