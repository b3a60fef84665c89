// Seed campaign results for people and scripts: the verdict over every run, the table, JSON,
// and the merge of shard results into one campaign. Running a shard is the sim library's
// (ptreclaim/sim/campaign.hpp).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/report/report.hpp"
#include "ptreclaim/sim/campaign.hpp"

namespace ptreclaim::sim {

// Safe policies must hold every checked invariant; canaries are judged only with
// expect_violation (then each must catch a violation); a safe policy whose contract a scenario
// breaks is named, not judged, as compare does. The reason depends on the runs and the
// definition only, so the merge of a campaign's shards and an unsharded run agree.
[[nodiscard]] verdict judge(const campaign_result& r);
// Every failing run: "<reason>\n  replay: <command>", in canonical order.
[[nodiscard]] std::vector<std::string> campaign_failures(const campaign_result& r);
// A table per scenario and policy (runs, failed, violations, median ops/s), the failures, and
// the verdict.
[[nodiscard]] std::string format_campaign(const campaign_result& r);

[[nodiscard]] std::string to_json(const campaign_result& r, int indent = 2);
// Reads what to_json wrote; parse_error naming `source` and what is wrong.
[[nodiscard]] Result<campaign_result> parse_campaign_json(std::string_view text,
                                                          const std::string& source);
// Reads and parses a file (invalid_argument when it cannot be read).
[[nodiscard]] Result<campaign_result> load_campaign_json(const std::string& path);

struct campaign_merge {
  campaign_result merged;  // the whole campaign (shard 1/1), runs in canonical order
  // Shards missing or stopped early: the runs present are merged and judged, but the campaign
  // is incomplete (merged.complete = false). One line each.
  std::vector<std::string> gaps;
};
// Joins shard results (name = where each came from, for messages). invalid_argument listing
// every reason when they cannot form one campaign: different definitions or shard counts, a
// shard given twice, or a run that does not belong to its shard.
[[nodiscard]] Result<campaign_merge> merge_campaigns(
    const std::vector<std::pair<std::string, campaign_result>>& shards);

}  // namespace ptreclaim::sim
