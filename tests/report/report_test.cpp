// Metrics and reports: the histogram, the table, JSON, CSV, the HTML report (with and without
// gnuplot), verdicts and replay commands, all from synthetic results built here.
#include "ptreclaim/report/report.hpp"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

// A run as the engine would fill it; `violations` > 0 makes S1 and S3 fail.
run_result synthetic(const std::string& policy, double ops_per_s, std::uint64_t violations) {
  run_result r;
  r.scenario = "superpage-churn";
  r.scenario_source = "builtin:superpage-churn";
  r.policy = policy;
  r.policy_safe = policy_is_safe(policy);
  r.executor = "deterministic";
  r.cpus = 4;
  r.seed = 42;
  r.time_base = "virtual";
  r.elapsed_ns = 1'000'000'000;
  r.operations = static_cast<std::uint64_t>(ops_per_s);
  r.wall_time_s = 0.5;
  r.devices = {1000, 3, 900, 100, 50, 50, 400};
  r.invalidations = {200, 150, 600, 200, 2};
  r.reclaim.tables_released = 110;
  r.reclaim.tables_freed = 100;
  r.reclaim.peak_pending = 37;
  r.reclaim.pending_bound = 4096;
  r.reclaim.pending_at_end = 10;
  r.reclaim.drain_ns = 12'000;
  for (std::uint64_t t = 0; t < 20; ++t)
    r.reclaim.pending_series.push_back({t * 100'000, (t * 7) % 37});
  for (std::uint64_t v = 1; v <= 100; ++v)
    r.reclaim.retire_to_free_ns.record(v * 1000);
  r.leaks.checked = true;
  for (auto& inv : r.invariants)
    inv = {true, true, ""};
  if (violations > 0) {
    r.violations.count = violations;
    r.violations.first =
        "device 3 walked frame 812 (freed at 1200 ns by immediate)\n  iova 0x200000 level 2";
    r.violations.replay_command =
        "ptreclaim run --scenario superpage-churn --policy " + policy + " --seed 42";
    r.violations.replay_exact = true;  // a deterministic run
    r.at(invariant::s1) = {true, false, "frame 812 read by device 3 after its free"};
    r.at(invariant::s3) = {true, false, "frame 812 freed before any invalidation"};
  }
  r.cost_source = std::string(default_cost_source);
  r.superpages = {5, 2, 9, 4};
  r.trace_hash = 0x1234abcdULL;
  return r;
}

compare_result synthetic_compare() {
  compare_result c;
  c.scenario = "superpage-churn";
  c.executor = "deterministic";
  c.cpus = 4;
  c.seed = 42;
  double ops = 2e6;
  for (const auto& p : policy_names()) {
    c.runs.push_back(synthetic(p, ops, policy_is_safe(p) ? 0 : 7));
    ops *= 0.8;
  }
  return c;
}

TEST(Histogram, BucketsAreOrderedAndTight) {
  for (unsigned b = 0; b + 1 < log_histogram::bucket_count; ++b) {
    ASSERT_EQ(log_histogram::bucket_upper(b) + 1, log_histogram::bucket_lower(b + 1)) << b;
    ASSERT_EQ(log_histogram::bucket_of(log_histogram::bucket_lower(b)), b);
    ASSERT_EQ(log_histogram::bucket_of(log_histogram::bucket_upper(b)), b);
  }
  EXPECT_EQ(log_histogram::bucket_of(~std::uint64_t{0}), log_histogram::bucket_count - 1);
}

TEST(Histogram, PercentilesOfAKnownSet) {
  log_histogram h;
  EXPECT_EQ(h.percentile(0.5), 0u);
  for (std::uint64_t v = 1; v <= 1000; ++v)
    h.record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_EQ(h.percentile(1.0), 1000u);
  EXPECT_EQ(h.percentile(0.0), 1u);
  // Within one bucket (6.25 %) of the exact value, never below it.
  for (double q : {0.5, 0.9, 0.99}) {
    const double exact = q * 1000;
    const auto p = static_cast<double>(h.percentile(q));
    EXPECT_GE(p, exact) << q;
    EXPECT_LE(p, exact * 1.0625 + 1) << q;
  }
  log_histogram g;
  g.record(5000, 10);
  h.merge(g);
  EXPECT_EQ(h.count(), 1010u);
  EXPECT_EQ(h.max(), 5000u);
}

TEST(Histogram, PercentileBoundProperty) {
  ASSERT_TRUE(rc::check("percentile is within 1/16 above the exact order statistic", [] {
    auto values = *rc::gen::nonEmpty(rc::gen::container<std::vector<std::uint64_t>>(
        rc::gen::inRange<std::uint64_t>(0, 1ull << 40)));
    const double q = *rc::gen::inRange(1, 100) / 100.0;
    log_histogram h;
    for (auto v : values)
      h.record(v);
    std::sort(values.begin(), values.end());
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size())));
    if (rank == 0) rank = 1;
    const std::uint64_t exact = values[rank - 1];
    const std::uint64_t got = h.percentile(q);
    RC_ASSERT(got >= exact);
    RC_ASSERT(static_cast<double>(got) <= static_cast<double>(exact) * 1.0625 + 1.0);
  }));
}

TEST(Report, TableShowsEveryPolicyAndColumn) {
  const compare_result c = synthetic_compare();
  const std::string t = format_table(c);
  for (const auto& col : {"policy", "safe", "ops/s", "vs immediate", "inv/freed table",
                          "peak pending", "p99 retire->free", "violations", "invariants"}) {
    EXPECT_NE(t.find(col), std::string::npos) << col << "\n" << t;
  }
  for (const auto& p : policy_names())
    EXPECT_NE(t.find(p), std::string::npos) << p;
  EXPECT_NE(t.find("2.00M"), std::string::npos) << t;      // immediate's ops/s
  EXPECT_NE(t.find("1.00x"), std::string::npos) << t;      // immediate vs itself
  EXPECT_NE(t.find("0.80x"), std::string::npos) << t;      // sync
  EXPECT_NE(t.find("2.00"), std::string::npos) << t;       // 200 flushes / 100 freed
  EXPECT_NE(t.find("37 / 4096"), std::string::npos) << t;  // peak pending / bound
  EXPECT_NE(t.find("FAIL S1 S3"), std::string::npos) << t;
  EXPECT_NE(t.find("7 (canary)"), std::string::npos) << t;
  EXPECT_NE(t.find("replay immediate: ptreclaim run"), std::string::npos) << t;
}

TEST(Report, RunDetailShowsInvariantsAndViolation) {
  const run_result r = synthetic("immediate", 1e6, 3);
  const std::string t = format_run(r);
  EXPECT_NE(t.find("S1  FAIL  frame 812 read by device 3"), std::string::npos) << t;
  EXPECT_NE(t.find("S2  ok"), std::string::npos) << t;
  EXPECT_NE(t.find("first violation (of 3)"), std::string::npos) << t;
  EXPECT_NE(t.find("  iova 0x200000 level 2"), std::string::npos) << t;
  EXPECT_NE(t.find("replay: ptreclaim run"), std::string::npos) << t;
  EXPECT_NE(t.find("90.0 %"), std::string::npos) << t;  // IOTLB hit rate
  EXPECT_NE(t.find("000000001234abcd"), std::string::npos) << t;
  EXPECT_NE(t.find("cost model                builtin:costs/default.toml"), std::string::npos) << t;
  EXPECT_NE(t.find("5 2M and 2 1G coalesced by fills, 9 tables coalesced, 4 splits"),
            std::string::npos)
      << t;
}

TEST(Report, JsonHasEveryField) {
  const compare_result c = synthetic_compare();
  const auto j = nlohmann::json::parse(to_json(c));
  EXPECT_EQ(j["kind"], "compare");
  ASSERT_EQ(j["runs"].size(), policy_names().size());
  const auto& run = j["runs"][0];
  EXPECT_EQ(run["policy"], "immediate");
  EXPECT_EQ(run["policy_safe"], false);
  EXPECT_DOUBLE_EQ(run["ops_per_s"].get<double>(), 2e6);
  EXPECT_EQ(run["invariants"]["S1"]["held"], false);
  EXPECT_EQ(run["invariants"]["S2"]["held"], true);
  EXPECT_EQ(run["violations"]["count"], 7);
  EXPECT_EQ(run["violations"]["replay_exact"], true);
  EXPECT_EQ(run["violations"]["deterministic_command"], "");
  EXPECT_EQ(run["cost_source"], "builtin:costs/default.toml");
  EXPECT_EQ(run["superpages"]["coalesced_2m"], 5);
  EXPECT_EQ(run["superpages"]["coalesced_1g"], 2);
  EXPECT_EQ(run["superpages"]["tables_coalesced"], 9);
  EXPECT_EQ(run["superpages"]["splits"], 4);
  EXPECT_EQ(run["reclaim"]["pending_series"].size(), 20u);
  EXPECT_EQ(run["reclaim"]["retire_to_free_ns"]["count"], 100);
  EXPECT_EQ(run["reclaim"]["retire_to_free_ns"]["max"], 100000);
  EXPECT_DOUBLE_EQ(run["invalidations"]["per_freed_table"].get<double>(), 2.0);
  EXPECT_EQ(run["trace_hash"], 0x1234abcdULL);
  std::uint64_t bucket_total = 0;
  for (const auto& b : run["reclaim"]["retire_to_free_ns"]["buckets"])
    bucket_total += b[2].get<std::uint64_t>();
  EXPECT_EQ(bucket_total, 100u);

  scale_result s;
  s.scenario = "dma-storm";
  s.policies = {"sync", "flush-epoch"};
  s.cpu_counts = {1, 2};
  for (int i = 0; i < 4; ++i)
    s.runs.push_back(synthetic(s.policies[i / 2], 1000.0 * (i + 1), 0));
  const auto js = nlohmann::json::parse(to_json(s, -1));
  EXPECT_EQ(js["kind"], "scale");
  EXPECT_EQ(js["runs"].size(), 4u);
  EXPECT_EQ(nlohmann::json::parse(to_json(s.runs[0]))["policy"], "sync");
}

// scale's findings: efficiency per CPU count, the count where a curve first drops below 0.9 of
// linear, what the time went to at the largest count (contention figures), and DMA's
// invalidations per 1,000 packets.
TEST(Report, ScaleFindingsSayWhereEachCurveBendsAndWhy) {
  scale_result s;
  s.scenario = "dma-storm-lazy";
  s.executor = "deterministic";
  s.policies = {"linux-dma-fq", "flush-epoch"};
  s.cpu_counts = {1, 2, 4};
  // linux-dma-fq scales linearly; flush-epoch reaches 1.8x at 2 (0.90) and 2.8x at 4 (0.70).
  const double ops[2][3] = {{1000, 2000, 4000}, {1000, 1800, 2800}};
  for (int p = 0; p < 2; ++p)
    for (int c = 0; c < 3; ++c) {
      run_result r = synthetic(s.policies[p], ops[p][c], 0);
      r.cpus = s.cpu_counts[c];
      r.operations = static_cast<std::uint64_t>(ops[p][c]);  // over 1 s
      r.dma.measured = true;
      r.dma.packets = 1000 * r.cpus;
      r.invalidations.flushes = 4 * (p + 1);
      r.cpu_wait_ns = 10'000'000;
      if (p == 1) r.contention.push_back({"a hot lock", true, 100, 60, 400'000'000ull * r.cpus, 0});
      s.runs.push_back(std::move(r));
    }
  const std::string t = format_scale_table(s);
  EXPECT_NE(t.find("invalidate-and-wait rounds per 1,000 packets"), std::string::npos) << t;
  EXPECT_NE(t.find("parallel efficiency"), std::string::npos) << t;
  const auto row = [&](const std::string& policy) {
    const std::size_t at = t.find("\n" + policy + " ", t.find("parallel efficiency"));
    return at == std::string::npos ? std::string()
                                   : t.substr(at + 1, t.find('\n', at + 1) - at - 1);
  };
  EXPECT_NE(row("linux-dma-fq").find("1.00    1.00    1.00"), std::string::npos) << t;
  EXPECT_EQ(row("linux-dma-fq").back(), '-') << "a linear curve does not bend: " << t;
  EXPECT_NE(row("flush-epoch").find("0.90"), std::string::npos) << t;
  EXPECT_NE(row("flush-epoch").find("0.70"), std::string::npos) << t;
  EXPECT_TRUE(row("flush-epoch").ends_with(" 4 cpus")) << "0.90 is no bend yet: " << t;
  EXPECT_NE(t.find("flush-epoch: a hot lock 40.0% (40.0% at 1 cpu)"), std::string::npos) << t;
  EXPECT_NE(t.find("linux-dma-fq: spinning in waits (invalidations, flushes) 0.2%"),
            std::string::npos)
      << t;
  // One CPU count: nothing to say about scaling.
  s.cpu_counts = {1};
  s.runs.resize(2);
  EXPECT_EQ(format_scale_table(s).find("parallel efficiency"), std::string::npos);
}

TEST(Report, CsvHasOneRowPerRunAndAConstantColumnCount) {
  compare_result c = synthetic_compare();
  c.runs[1].notes.push_back("a note, with a comma");
  c.runs[1].scenario = "needs \"quotes\", really";
  const std::string csv = to_csv(c);
  std::istringstream in(csv);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line))
    lines.push_back(line);
  ASSERT_EQ(lines.size(), 1 + policy_names().size());
  auto columns = [](const std::string& l) {
    std::size_t n = 1;
    bool quoted = false;
    for (char ch : l) {
      if (ch == '"') quoted = !quoted;
      if (ch == ',' && !quoted) ++n;
    }
    return n;
  };
  for (const auto& l : lines)
    EXPECT_EQ(columns(l), columns(lines[0])) << l;
  EXPECT_EQ(lines[0].rfind("scenario,policy,policy_safe", 0), 0u);
  EXPECT_NE(lines[1].find("FAILED"), std::string::npos);
  EXPECT_NE(lines[2].find("\"needs \"\"quotes\"\", really\""), std::string::npos) << lines[2];
  EXPECT_EQ(to_csv(c.runs[0]).find('\n'), lines[0].size());
}

class report_dir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("ptreclaim_report_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(report_dir, HtmlWithoutGnuplotSaysSoAndKeepsTables) {
  report_input in;
  in.compare = synthetic_compare();
  in.command = "ptreclaim compare --report x";
  report_options o;
  o.gnuplot = "/nonexistent/gnuplot";
  auto out = write_html_report(dir_, in, o);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_FALSE(out->plotted);
  EXPECT_NE(out->plot_message.find("gnuplot was not found"), std::string::npos);
  const std::string html = slurp(out->html_path);
  EXPECT_NE(html.find("Plots are missing"), std::string::npos);
  EXPECT_NE(html.find("<td>flush-epoch</td>"), std::string::npos);
  EXPECT_NE(html.find("ptreclaim compare --report x"), std::string::npos);
  EXPECT_EQ(html.find("<svg"), std::string::npos);
  const auto j = nlohmann::json::parse(slurp(out->json_path));
  EXPECT_EQ(j["compare"]["runs"].size(), policy_names().size());
}

TEST_F(report_dir, HtmlEmbedsGnuplotSvgWhenAvailable) {
  if (!program_available("gnuplot")) GTEST_SKIP() << "gnuplot is not installed";
  report_input in;
  in.compare = synthetic_compare();
  scale_result s;
  s.scenario = "superpage-churn";
  s.policies = {"sync", "flush-epoch"};
  s.cpu_counts = {1, 2, 4};
  for (std::size_t i = 0; i < 6; ++i)
    s.runs.push_back(synthetic(s.policies[i / 3], 1e5 * static_cast<double>(i + 1), 0));
  in.scale = s;
  auto out = write_html_report(dir_, in);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(out->plotted) << out->plot_message;
  const std::string html = slurp(out->html_path);
  std::size_t svgs = 0;
  for (auto p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1))
    ++svgs;
  EXPECT_EQ(svgs, 4u);  // throughput, pending, latency, scale
  EXPECT_EQ(html.find("Plots are missing"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/plots/plots.gp"));
  // Frames pending: small multiples, one panel per policy, shared axes; the scale plot has the
  // linear-scaling reference; every plot says what to look at.
  const std::string gp = slurp(dir_ + "/plots/plots.gp");
  const std::size_t panels = policy_names().size();  // three per row
  const std::string layout =
      "set multiplot layout " + std::to_string((panels + 2) / 3) + "," + std::to_string(3);
  EXPECT_NE(gp.find(layout), std::string::npos) << gp;
  for (const auto& name : policy_names())
    EXPECT_NE(gp.find("set title '" + name + "' noenhanced"), std::string::npos) << name;
  EXPECT_NE(gp.find("set xrange [0:"), std::string::npos);
  EXPECT_NE(gp.find("title 'linear scaling'"), std::string::npos);
  for (const char* look : {"taller is faster", "one panel per policy on shared axes",
                           "the further left a curve rises", "the dashed line is linear scaling"})
    EXPECT_NE(html.find(look), std::string::npos) << look;
}

TEST(Progress, EtaFromTheTimeSoFar) {
  EXPECT_EQ(progress_line::eta_text(0.01, 10.0), "");  // too early
  EXPECT_EQ(progress_line::eta_text(0.5, 0.2), "");    // too soon
  EXPECT_EQ(progress_line::eta_text(0.5, 10.0), ", about 10 s left");
  EXPECT_EQ(progress_line::eta_text(0.1, 100.0), ", about 15 min left");
  EXPECT_EQ(progress_line::eta_text(0.1, 3600.0), ", about 9.0 h left");
  EXPECT_EQ(progress_line::eta_text(1.0, 10.0), "");
}

TEST(Progress, DrawsOnATerminalOnlyWhenEnabled) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    progress_line off(f, false, std::chrono::milliseconds(0));
    off.set_label("scale x");
    off.update(0.5);
  }
  EXPECT_EQ(std::ftell(f), 0L);
  {
    progress_line on(f, true, std::chrono::milliseconds(0));
    on.set_label("scale sva-kernel  [sync @ 2 cpus]");
    ::usleep(600'000);  // the estimate starts after half a second
    on.update(0.25);
  }
  std::rewind(f);
  char buf[256] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const std::string line(buf, n);
  EXPECT_NE(line.find("scale sva-kernel  [sync @ 2 cpus]   25%"), std::string::npos) << line;
  EXPECT_NE(line.find("s left"), std::string::npos) << line;
  EXPECT_NE(line.find("\r\033[K"), std::string::npos);  // erased by finish()
}

TEST(Report, StoryIsPrintedInOrderWithItsConclusion) {
  run_result r = synthetic("immediate", 1e6, 3);
  frame_story st;
  st.frame = 39;
  st.focus = "the first violation";
  st.lifetimes = 2;
  st.lifetimes_shown = 1;
  st.events.push_back({54100, "allocated", 1, -1, -1, std::nullopt,
                       "allocated as a level-2 table of domain 3 (generation 1)"});
  st.events.push_back({188604, "freed", 1, -1, -1, std::nullopt, "freed by immediate on CPU 1"});
  st.events.push_back({188976, "invalidation", -1, 0, -1, true,
                       "a page-selective invalidation (PSI) of [0xc0000000, 0xffffffff]"});
  st.events.push_back({185239, "walk", -1, 0, 2, std::nullopt, "device 2's walk read it"});
  st.conclusion = "frame 39 was freed before a covering invalidation had completed";
  r.story = st;
  const std::string text = format_run(r);
  const auto at = [&](const std::string& what) { return text.find(what); };
  ASSERT_NE(at("story of frame 39 (the first violation): 2 lifetimes in the run, 1 shown"),
            std::string::npos)
      << text;
  EXPECT_LT(at("allocated as a level-2"), at("freed by immediate"));
  EXPECT_LT(at("freed by immediate"), at("invalidation: a page-selective"));
  EXPECT_LT(at("invalidation: a page-selective"), at("device 2's walk"));
  EXPECT_NE(at("    54.100  CPU 1"), std::string::npos) << text;
  EXPECT_NE(at("   185.239  device 2"), std::string::npos) << text;
  EXPECT_NE(at("why: frame 39 was freed"), std::string::npos);
  const auto j = nlohmann::json::parse(to_json(r));
  EXPECT_EQ(j["frame_story"]["frame"], 39);
  EXPECT_EQ(j["frame_story"]["events"].size(), 4u);
  EXPECT_EQ(j["frame_story"]["events"][2]["covers"], true);
  EXPECT_EQ(j["frame_story"]["events"][3]["device"], 2);
  EXPECT_FALSE(j["frame_story"]["events"][0].contains("iommu"));
}

TEST_F(report_dir, UnwritableDirectoryIsAnError) {
  report_input in;
  in.run = synthetic("sync", 1e6, 0);
  auto out = write_html_report("/proc/ptreclaim-cannot-write-here", in);
  EXPECT_FALSE(out.ok());
}

TEST(Verdict, SingleRuns) {
  const run_result ok = synthetic("flush-epoch", 1e6, 0);
  EXPECT_EQ(judge(ok, false).code, exit_ok);
  const verdict missed = judge(ok, true);
  EXPECT_EQ(missed.code, exit_unsafe);
  EXPECT_NE(missed.reason.find("none was caught"), std::string::npos);

  const run_result bad = synthetic("immediate", 1e6, 3);
  const verdict v = judge(bad, false);
  EXPECT_EQ(v.code, exit_unsafe);
  EXPECT_NE(v.reason.find("S1 failed"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("replay: ptreclaim run"), std::string::npos) << v.reason;
  EXPECT_EQ(v.reason.find('\n'), std::string::npos);
  EXPECT_EQ(judge(bad, true).code, exit_ok);

  // A threaded run is not reproducible: its command is a rerun, and the deterministic command
  // is offered as the one that replays exactly.
  run_result threaded = bad;
  threaded.executor = "threaded";
  threaded.violations.replay_exact = false;
  threaded.violations.replay_command = "ptreclaim run --executor threaded --seed 42";
  threaded.violations.deterministic_command = "ptreclaim run --executor deterministic --seed 42";
  const verdict t = judge(threaded, false);
  EXPECT_EQ(t.reason.find("replay:"), std::string::npos) << t.reason;
  EXPECT_NE(t.reason.find("rerun: ptreclaim run --executor threaded"), std::string::npos)
      << t.reason;
  EXPECT_NE(t.reason.find("not reproducible"), std::string::npos) << t.reason;
  EXPECT_NE(t.reason.find("ptreclaim run --executor deterministic --seed 42"), std::string::npos)
      << t.reason;

  // A caught violation does not excuse a leak.
  run_result leaky = bad;
  leaky.at(invariant::s2) = {true, false, "3 frames leaked"};
  const verdict l = judge(leaky, true);
  EXPECT_EQ(l.code, exit_unsafe);
  EXPECT_NE(l.reason.find("S2 failed"), std::string::npos);

  // Unchecked invariants are not failures.
  run_result partial = ok;
  partial.at(invariant::s4) = {false, true, "no hotplug in this scenario"};
  EXPECT_EQ(judge(partial, false).code, exit_ok);
}

TEST(Verdict, Sweeps) {
  compare_result c = synthetic_compare();
  EXPECT_EQ(judge(c, false).code, exit_ok);  // canaries failing is expected
  EXPECT_EQ(judge(c, true).code, exit_ok);   // and each caught one
  c.runs[0].at(invariant::s1) = {true, true, ""};
  c.runs[0].at(invariant::s3) = {true, true, ""};
  EXPECT_EQ(judge(c, true).code, exit_unsafe);
  compare_result d = synthetic_compare();
  d.runs.back().at(invariant::s5) = {true, false, "peak 5000 > bound 4096"};
  const verdict v = judge(d, false);
  EXPECT_EQ(v.code, exit_unsafe);
  EXPECT_NE(v.reason.find("flush-epoch"), std::string::npos);
}

TEST(Names, PoliciesExecutorsReplay) {
  // The registry's names, in its order.
  ASSERT_EQ(policy_names().size(), reclaim::policy_registry.size());
  for (std::size_t i = 0; i < policy_names().size(); ++i)
    EXPECT_EQ(policy_names()[i], reclaim::policy_registry[i].name);
  EXPECT_FALSE(policy_is_safe("immediate"));
  EXPECT_FALSE(policy_is_safe("xen-softirq-tasklet"));
  EXPECT_TRUE(policy_is_safe("flush-epoch"));
  EXPECT_FALSE(is_policy("nope"));
  EXPECT_EQ(*parse_executor("threaded"), executor_kind::threaded);
  EXPECT_FALSE(parse_executor("fast").ok());
  EXPECT_EQ(invariant_name(invariant::l1), "L1");

  scenario s;
  s.name = "x";
  s.source = "builtin:dma-storm";
  s.cpus = 8;
  run_options o;
  o.policy = reclaim::policy_kind::sync;
  EXPECT_EQ(replay_command(s, o, 7),
            "ptreclaim run --scenario dma-storm --policy sync --executor deterministic --cpus 8 "
            "--seed 7");
  s.source = "/tmp/my scen.toml";
  o.cpus = 2;
  o.ops_per_cpu = 100;
  EXPECT_EQ(replay_command(s, o, 7),
            "ptreclaim run --scenario '/tmp/my scen.toml' --policy sync "
            "--executor deterministic --cpus 2 --seed 7 --ops 100");
  // A cost file other than the default travels with the command.
  s.cost_file = "/tmp/c.toml";
  EXPECT_EQ(replay_command(s, o, 7),
            "ptreclaim run --scenario '/tmp/my scen.toml' --policy sync "
            "--executor deterministic --cpus 2 --seed 7 --ops 100 --costs /tmp/c.toml");
}

}  // namespace
}  // namespace ptreclaim::sim
