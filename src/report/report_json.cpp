// JSON and CSV of every result type, and writing text files.
#include "report/report_json.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>

#include "ptreclaim/report/output.hpp"
#include "ptreclaim/report/report.hpp"
#include "report/report_faults.hpp"
#include "report/report_format.hpp"

namespace ptreclaim::sim {
namespace {

using nlohmann::json;

json histogram_json(const log_histogram& h) {
  json buckets = json::array();
  for (unsigned b = 0; b < log_histogram::bucket_count; ++b) {
    if (h.bucket(b) == 0) continue;
    buckets.push_back(
        {log_histogram::bucket_lower(b), log_histogram::bucket_upper(b), h.bucket(b)});
  }
  return {{"count", h.count()},
          {"sum", h.sum()},
          {"min", h.min()},
          {"mean", h.mean()},
          {"p50", h.percentile(0.5)},
          {"p90", h.percentile(0.9)},
          {"p99", h.percentile(0.99)},
          {"p999", h.percentile(0.999)},
          {"max", h.max()},
          {"buckets", buckets}};
}

json story_json(const frame_story& s) {
  json events = json::array();
  for (const frame_event& e : s.events) {
    json j = {{"time_ns", e.time_ns}, {"kind", e.kind}, {"text", e.text}};
    if (e.cpu >= 0) j["cpu"] = e.cpu;
    if (e.iommu >= 0) j["iommu"] = e.iommu;
    if (e.device >= 0) j["device"] = e.device;
    if (e.covers) j["covers"] = *e.covers;
    events.push_back(std::move(j));
  }
  return {{"frame", s.frame},         {"focus", s.focus},
          {"lifetimes", s.lifetimes}, {"lifetimes_shown", s.lifetimes_shown},
          {"events", events},         {"conclusion", s.conclusion}};
}

// Where virtual time went: the CPU time spent in waits, and each named shared object's delay.
json contention_json(const run_result& r) {
  json objects = json::array();
  for (const contention_figure& c : r.contention)
    objects.push_back({{"name", c.name},
                       {"kind", c.lock ? "lock" : "line"},
                       {"accesses", c.accesses},
                       {"waits", c.waits},
                       {"delay_ns", c.delay_ns},
                       {"hold_ns", c.hold_ns},
                       {"cpu_share", r.cpu_share(c.delay_ns)}});
  return {{"measured", r.executor == "deterministic"},
          {"cpu_wait_ns", r.cpu_wait_ns},
          {"cpu_wait_share", r.cpu_share(r.cpu_wait_ns)},
          {"objects", std::move(objects)}};
}

json run_json(const run_result& r) {
  json series = json::array();
  for (const auto& s : r.reclaim.pending_series)
    series.push_back({s.time_ns, s.frames});
  json j = {
      {"scenario", r.scenario},
      {"scenario_source", r.scenario_source},
      {"cost_source", r.cost_source},
      {"policy", r.policy},
      {"policy_safe", r.policy_safe},
      {"contract_broken", r.contract_broken},
      {"executor", r.executor},
      {"cpus", r.cpus},
      {"seed", r.seed},
      {"time_base", r.time_base},
      {"complete", r.complete},
      {"interrupted_by", r.interrupted_by},
      {"operations", r.operations},
      {"elapsed_ns", r.elapsed_ns},
      {"ops_per_s", r.ops_per_s()},
      {"wall_time_s", r.wall_time_s},
      {"devices",
       {{"translations", r.devices.translations},
        {"faults", r.devices.faults},
        {"iotlb_hits", r.devices.iotlb_hits},
        {"iotlb_misses", r.devices.iotlb_misses},
        {"iotlb_hit_rate", r.devices.iotlb_hit_rate()},
        {"psc_hits", r.devices.psc_hits},
        {"psc_misses", r.devices.psc_misses},
        {"psc_hit_rate", r.devices.psc_hit_rate()},
        {"pte_reads", r.devices.pte_reads}}},
      {"invalidations",
       {{"flushes", r.invalidations.flushes},
        {"caller_flushes", r.invalidations.caller_flushes},
        {"descriptors", r.invalidations.descriptors},
        {"waits", r.invalidations.waits},
        {"backpressure_flushes", r.invalidations.backpressure_flushes},
        {"busiest_queue", r.invalidations.busiest_queue},
        {"busiest_queue_lock", r.invalidations.busiest_queue_lock},
        {"queue_lock_acquisitions", r.invalidations.queue_lock_acquisitions},
        {"queue_lock_wait_ns", r.invalidations.queue_lock_wait_ns},
        {"queue_lock_max_wait_ns", r.invalidations.queue_lock_max_wait_ns},
        {"per_freed_table", r.invalidations_per_freed_table()}}},
      {"reclaim",
       {{"tables_released", r.reclaim.tables_released},
        {"tables_freed", r.reclaim.tables_freed},
        {"peak_pending", r.reclaim.peak_pending},
        {"pending_bound", r.reclaim.pending_bound},
        {"pending_at_end", r.reclaim.pending_at_end},
        {"drain_ns", r.reclaim.drain_ns},
        {"pending_series", series},
        {"retire_to_free_ns", histogram_json(r.reclaim.retire_to_free_ns)}}},
      {"hotplug",
       {{"offlines", r.hotplug.offlines},
        {"onlines", r.hotplug.onlines},
        {"failed_offlines", r.hotplug.failed_offlines},
        {"deferred_offlines", r.hotplug.deferred_offlines},
        {"frames_migrated", r.hotplug.frames_migrated}}},
      {"superpages",
       {{"coalesced_2m", r.superpages.coalesced_2m},
        {"coalesced_1g", r.superpages.coalesced_1g},
        {"tables_coalesced", r.superpages.tables_coalesced},
        {"splits", r.superpages.splits}}},
      {"faults", detail::fault_json(r.faults)},
      {"dma",
       {{"measured", r.dma.measured},
        {"lazy", r.dma.lazy},
        {"packets", r.dma.packets},
        {"iovas_deferred", r.dma.iovas_deferred},
        {"iovas_returned", r.dma.iovas_returned},
        {"returned_early", r.dma.returned_early},
        {"peak_deferred_iovas", r.dma.peak_deferred},
        {"iova_exhausted", r.dma.iova_exhausted},
        {"exposures", r.dma.exposures},
        {"longest_exposure_ns", r.dma.longest_exposure_ns},
        {"invalidations_per_1000_packets",
         r.dma.invalidations_per_kpacket(r.invalidations.flushes)}}},
      {"contention", contention_json(r)},
      {"violations",
       {{"count", r.violations.count},
        {"first", r.violations.first},
        {"replay_command", r.violations.replay_command},
        {"replay_exact", r.violations.replay_exact},
        {"deterministic_command", r.violations.deterministic_command}}},
      {"leaks",
       {{"checked", r.leaks.checked},
        {"leaked_frames", r.leaks.leaked_frames},
        {"ledger_violations", r.leaks.ledger_violations},
        {"report", r.leaks.report}}},
      {"invariants", detail::invariants_json(r.invariants)},
      {"all_held", r.all_held()},
      {"trace_hash", r.trace_hash},
      {"notes", r.notes},
  };
  if (r.violations.first_frame) j["violations"]["first_frame"] = *r.violations.first_frame;
  if (r.story) j["frame_story"] = story_json(*r.story);
  return j;
}

// CSV: quote a cell when it holds a separator, a quote or a line break.
std::string csv_cell(const std::string& v) {
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"')
      q += "\"\"";
    else
      q += c;
  }
  return q + "\"";
}

const char* const csv_header =
    "scenario,policy,policy_safe,executor,cpus,seed,time_base,operations,elapsed_ns,ops_per_s,"
    "wall_time_s,translations,faults,iotlb_hit_rate,psc_hit_rate,flushes,caller_flushes,"
    "descriptors,backpressure_flushes,tables_released,tables_freed,inv_per_freed_table,"
    "peak_pending,pending_bound,pending_at_end,drain_ns,latency_p50_ns,latency_p99_ns,"
    "latency_max_ns,violations,leaked_frames,S1,S2,S3,S4,S5,S6,L1,all_held,trace_hash,complete\n";

std::string csv_row(const run_result& r) {
  using detail::fixed;
  const auto& h = r.reclaim.retire_to_free_ns;
  std::vector<std::string> cells{r.scenario,
                                 r.policy,
                                 r.policy_safe ? "true" : "false",
                                 r.executor,
                                 std::to_string(r.cpus),
                                 std::to_string(r.seed),
                                 r.time_base,
                                 std::to_string(r.operations),
                                 std::to_string(r.elapsed_ns),
                                 fixed(r.ops_per_s(), 1),
                                 fixed(r.wall_time_s, 3),
                                 std::to_string(r.devices.translations),
                                 std::to_string(r.devices.faults),
                                 fixed(r.devices.iotlb_hit_rate(), 4),
                                 fixed(r.devices.psc_hit_rate(), 4),
                                 std::to_string(r.invalidations.flushes),
                                 std::to_string(r.invalidations.caller_flushes),
                                 std::to_string(r.invalidations.descriptors),
                                 std::to_string(r.invalidations.backpressure_flushes),
                                 std::to_string(r.reclaim.tables_released),
                                 std::to_string(r.reclaim.tables_freed),
                                 fixed(r.invalidations_per_freed_table(), 4),
                                 std::to_string(r.reclaim.peak_pending),
                                 std::to_string(r.reclaim.pending_bound),
                                 std::to_string(r.reclaim.pending_at_end),
                                 std::to_string(r.reclaim.drain_ns),
                                 std::to_string(h.percentile(0.5)),
                                 std::to_string(h.percentile(0.99)),
                                 std::to_string(h.max()),
                                 std::to_string(r.violations.count),
                                 std::to_string(r.leaks.leaked_frames)};
  for (const auto& v : r.invariants)
    cells.emplace_back(!v.checked ? "n/a" : (v.held ? "held" : "FAILED"));
  cells.emplace_back(r.all_held() ? "true" : "false");
  cells.push_back(std::to_string(r.trace_hash));
  cells.emplace_back(r.complete ? "true" : "false");
  std::string out;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (i) out += ',';
    out += csv_cell(cells[i]);
  }
  return out + "\n";
}

}  // namespace

namespace detail {
json invariants_json(const std::array<invariant_result, invariant_count>& invariants) {
  json inv = json::object();
  for (std::size_t i = 0; i < invariant_count; ++i) {
    const auto& v = invariants[i];
    inv[std::string(invariant_name(static_cast<invariant>(i)))] = {
        {"checked", v.checked}, {"held", v.held}, {"reason", v.reason}};
  }
  return inv;
}

std::array<invariant_result, invariant_count> invariants_from_json(const json& j) {
  std::array<invariant_result, invariant_count> out{};
  for (std::size_t i = 0; i < invariant_count; ++i) {
    const json& v = j.at(std::string(invariant_name(static_cast<invariant>(i))));
    out[i].checked = v.at("checked").get<bool>();
    out[i].held = v.at("held").get<bool>();
    out[i].reason = v.at("reason").get<std::string>();
  }
  return out;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent < 0 ? -1 : indent) + "\n";
}
}  // namespace detail

std::string to_json(const run_result& r, int indent) {
  return detail::dump_json(run_json(r), indent);
}

namespace {
// What compare and scale documents share: kind, completeness, scenario, executor, seed, runs.
template <class R>
json sweep_json(const char* kind, const R& r) {
  json runs = json::array();
  for (const auto& run : r.runs)
    runs.push_back(run_json(run));
  return {{"kind", kind},
          {"complete", r.complete},
          {"interrupted_by", r.interrupted_by},
          {"scenario", r.scenario},
          {"executor", r.executor},
          {"seed", r.seed},
          {"runs", runs}};
}
}  // namespace

std::string to_json(const compare_result& r, int indent) {
  json j = sweep_json("compare", r);
  j["cpus"] = r.cpus;
  return detail::dump_json(j, indent);
}

namespace detail {
json scale_json(const scale_result& r) {
  json j = sweep_json("scale", r);
  j["policies"] = r.policies;
  j["cpu_counts"] = r.cpu_counts;
  return j;
}
}  // namespace detail

std::string to_json(const scale_result& r, int indent) {
  return detail::dump_json(detail::scale_json(r), indent);
}

std::string to_csv(const run_result& r) {
  return std::string(csv_header) + csv_row(r);
}

std::string to_csv(const compare_result& r) {
  std::string out = csv_header;
  for (const auto& run : r.runs)
    out += csv_row(run);
  return out;
}

std::string to_csv(const scale_result& r) {
  std::string out = csv_header;
  for (const auto& run : r.runs)
    out += csv_row(run);
  return out;
}

Status write_text_file(const std::string& path, std::string_view text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (p.has_parent_path()) {
    fs::create_directories(p.parent_path(), ec);
    if (ec) {
      return Status(errc::invalid_argument,
                    "cannot create folder '" + p.parent_path().string() + "': " + ec.message());
    }
  }
  return write_file_atomic(path, text);
}

}  // namespace ptreclaim::sim
