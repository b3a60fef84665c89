// Number formatting and the comparison-table rows, shared by the text and HTML reports.
// Private to the report library.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/sim/metrics.hpp"

namespace ptreclaim::sim::detail {

// 1234567 -> "1.23M"; 950 -> "950"; three significant digits.
[[nodiscard]] std::string human_count(double v);
// Nanoseconds with a unit: "850 ns", "12.4 us", "3.10 ms", "2.00 s".
[[nodiscard]] std::string human_ns(double ns);
// "%.*f".
[[nodiscard]] std::string fixed(double v, int decimals);
// " S1 S3": the invariants any of `runs` (null entries skipped) checked and broke, each once, in
// the invariants' order; empty if none.
[[nodiscard]] std::string failed_invariants(std::initializer_list<const run_result*> runs);
// "ok", "ok (5/6 checked)", "FAIL S1 S3".
[[nodiscard]] std::string invariants_cell(const run_result& r);

// The cells of one comparison row, in column order (see column_names()).
[[nodiscard]] std::vector<std::string> row_cells(const run_result& r, const run_result* baseline);
[[nodiscard]] const std::vector<std::string>& column_names();

// How to run a failed run again: "replay: CMD" when the deterministic executor reproduces it
// exactly; for a threaded run "rerun: CMD", saying it is not reproducible, and the
// deterministic command that likely shows the same logical failure. "" if there is no command.
[[nodiscard]] std::string replay_text(const violation_summary& v);
// The `ptreclaim replay SEED ...` command of a deterministic run's replay command (it tells the
// first violation's story); "" when there is none.
[[nodiscard]] std::string story_command(const run_result& r);

// Renders rows as an aligned text table (first column left-aligned, the rest right-aligned).
// Lazy DMA's figures (inv/1000 packets, peak deferred IOVAs, exposure), or "" if no run has any.
[[nodiscard]] std::string dma_table(const std::vector<run_result>& runs);
// The scale command's findings (report_scale.cpp): invalidations per 1,000 packets, parallel
// efficiency and where each curve bends, where CPU time went at the largest count; "" for a
// single CPU count.
[[nodiscard]] std::string scale_findings(const scale_result& r);
[[nodiscard]] std::string text_table(const std::vector<std::string>& header,
                                     const std::vector<std::vector<std::string>>& rows);

}  // namespace ptreclaim::sim::detail
