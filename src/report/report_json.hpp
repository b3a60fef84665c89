// JSON pieces shared by the result documents (report_json.cpp) and campaign results
// (campaign_json.cpp). Private to the report library.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>

#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim::detail {

// {"S1": {"checked": .., "held": .., "reason": ..}, ...}
[[nodiscard]] nlohmann::json invariants_json(
    const std::array<invariant_result, invariant_count>& invariants);
// The inverse; throws nlohmann::json::exception on a malformed object.
[[nodiscard]] std::array<invariant_result, invariant_count> invariants_from_json(
    const nlohmann::json& j);
// A scale result's document (to_json(scale_result)) as an object, for documents that hold one.
[[nodiscard]] nlohmann::json scale_json(const scale_result& r);
// The text of a document: indented by `indent` (< 0: one line), with a final newline.
[[nodiscard]] std::string dump_json(const nlohmann::json& j, int indent);

}  // namespace ptreclaim::sim::detail
