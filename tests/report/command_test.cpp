// The tool's commands as library calls (command.hpp), without the binary: one skeleton for run,
// replay, compare, scale and campaign (prepare, run, print, write, finish), the replay check,
// which cost file wins, campaign merge, and how a stop request ends a command.
#include "ptreclaim/report/command.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ptreclaim/sim/interrupt.hpp"

namespace ptreclaim::sim {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream o;
  o << in.rdbuf();
  return o.str();
}

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  return text;
}

// A command with stdout and stderr captured, and a scratch folder for its files.
class command : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("ptreclaim-command-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  command_request request(command_kind kind, std::vector<reclaim::policy_kind> policies = {
                                                 reclaim::policy_kind::sync}) {
    command_request r;
    r.kind = kind;
    r.scenario = "dma-storm";
    r.policies = std::move(policies);
    r.options.ops_per_cpu = 20;
    r.options.seed = 1;
    r.options.quiet = true;
    return r;
  }
  // Runs `r` with captured output; returns the exit status.
  int call(command_request r) {
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    r.out = out;
    r.err = err;
    const int code = run_command(r);
    out_ = read_all(out);
    err_ = read_all(err);
    std::fclose(out);
    std::fclose(err);
    return code;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_, out_, err_;
};

TEST_F(command, RunPrintsTheRunAndItsVerdict) {
  EXPECT_EQ(call(request(command_kind::run)), exit_ok) << err_;
  EXPECT_NE(out_.find("sync"), std::string::npos) << out_;
  EXPECT_NE(out_.find("ok: "), std::string::npos) << out_;
  EXPECT_EQ(err_, "");
}

TEST_F(command, ExpectingAViolationOfASafePolicyIsUnsafe) {
  command_request r = request(command_kind::run);
  r.expect_violation = true;
  EXPECT_EQ(call(r), exit_unsafe);
  EXPECT_NE(err_.find("ptreclaim: expected a violation"), std::string::npos) << err_;
}

TEST_F(command, ACanaryThatCatchesItsViolationPasses) {
  command_request r = request(command_kind::run, {reclaim::policy_kind::immediate});
  r.scenario = "canary-immediate";
  r.options.ops_per_cpu = 200;
  EXPECT_EQ(call(r), exit_unsafe);
  EXPECT_NE(err_.find("replay: ptreclaim run --scenario canary-immediate"), std::string::npos)
      << err_;
  r.expect_violation = true;
  EXPECT_EQ(call(r), exit_ok) << err_;
}

TEST_F(command, QuietAndStdoutOutputsPrintNoTable) {
  command_request r = request(command_kind::compare);
  r.outputs.csv = "-";
  EXPECT_EQ(call(r), exit_ok) << err_;
  // stdout holds the CSV only (the writer writes it to the process's stdout, not to
  // request.out), so request.out gets neither the table nor the verdict.
  EXPECT_EQ(out_, "");
  r.outputs.csv.clear();
  r.quiet = true;
  EXPECT_EQ(call(r), exit_ok) << err_;
  EXPECT_EQ(out_, "");
}

TEST_F(command, BadInputIsAUsageErrorBeforeAnyWork) {
  command_request r = request(command_kind::compare);
  r.scenario = "warp-drive";
  r.outputs.json = path("never.json");
  EXPECT_EQ(call(r), exit_usage);
  EXPECT_NE(err_.find("ptreclaim: unknown scenario 'warp-drive'"), std::string::npos) << err_;
  r.scenario = "dma-storm";
  r.costs = path("no-such-costs.toml");
  EXPECT_EQ(call(r), exit_usage);
  EXPECT_NE(err_.find("--costs: "), std::string::npos) << err_;
  EXPECT_FALSE(fs::exists(path("never.json")));
}

TEST_F(command, OutputsAreCheckedBeforeTheWork) {
  for (command_kind kind :
       {command_kind::run, command_kind::replay, command_kind::compare, command_kind::scale}) {
    command_request r = request(kind);
    r.cpu_counts = {1, 2};
    r.seed_text = "1";
    r.outputs.json = path("no-such-folder/r.json");
    EXPECT_EQ(call(r), exit_error);
    EXPECT_NE(err_.find("--json"), std::string::npos) << err_;
    EXPECT_EQ(out_, "") << "no table: nothing ran";
  }
}

TEST_F(command, EachCommandWritesItsResult) {
  const std::vector<std::pair<command_kind, std::string>> kinds = {
      {command_kind::run, "\"policy\": \"sync\""},
      {command_kind::replay, "\"policy\": \"sync\""},
      {command_kind::compare, "\"kind\": \"compare\""},
      {command_kind::scale, "\"kind\": \"scale\""}};
  for (const auto& [kind, needle] : kinds) {
    command_request r = request(
        kind, kind == command_kind::run || kind == command_kind::replay
                  ? std::vector{reclaim::policy_kind::sync}
                  : std::vector{reclaim::policy_kind::sync, reclaim::policy_kind::flush_epoch});
    r.cpu_counts = {1, 2};
    r.seed_text = "1";
    r.outputs.json = path("r.json");
    r.outputs.csv = path("r.csv");
    ASSERT_EQ(call(r), exit_ok) << err_;
    EXPECT_NE(slurp(path("r.json")).find(needle), std::string::npos) << needle;
    EXPECT_NE(slurp(path("r.csv")).find("sync"), std::string::npos);
    fs::remove(path("r.json"));
    fs::remove(path("r.csv"));
  }
}

TEST_F(command, ScaleSweepsTheCpuCountsGiven) {
  command_request r = request(command_kind::scale);
  r.cpu_counts = {1, 3};
  r.quiet = false;
  ASSERT_EQ(call(r), exit_ok) << err_;
  EXPECT_NE(out_.find("policy  1 cpu  3 cpus  speed-up"), std::string::npos) << out_;
  EXPECT_NE(out_.find("(2 runs)"), std::string::npos) << "only the counts asked for: " << out_;
}

TEST_F(command, ReplayRunsTwiceAndComparesTraceHashes) {
  command_request r = request(command_kind::replay);
  r.quiet = false;
  r.seed_text = "1";
  ASSERT_EQ(call(r), exit_ok) << err_;
  EXPECT_NE(out_.find("replayed twice: same trace hash "), std::string::npos) << out_;
}

TEST_F(command, AFailingReplayTellsTheFirstViolationsStory) {
  command_request r = request(command_kind::replay, {reclaim::policy_kind::immediate});
  r.scenario = "canary-immediate";
  r.options.ops_per_cpu = 60;
  r.options.seed = 11;
  r.seed_text = "11";
  r.quiet = false;
  r.outputs.trace = path("trace.json");
  EXPECT_EQ(call(r), exit_unsafe) << err_;
  EXPECT_NE(out_.find("(the first violation)"), std::string::npos) << out_;
  EXPECT_NE(out_.find("why: frame "), std::string::npos) << out_;
  EXPECT_NE(out_.find("replayed twice: same trace hash "), std::string::npos) << out_;
  EXPECT_NE(err_.find("trace: " + path("trace.json")), std::string::npos) << err_;
  const std::string trace = slurp(path("trace.json"));
  EXPECT_EQ(trace.rfind("{\"displayTimeUnit\":\"ns\"", 0), 0u) << trace.substr(0, 200);
  EXPECT_NE(trace.find("\"traceEvents\":["), std::string::npos);
  // A run names the command that tells the story.
  r.kind = command_kind::run;
  r.outputs.trace.clear();
  EXPECT_EQ(call(r), exit_unsafe);
  EXPECT_NE(out_.find(": ptreclaim replay 11 --scenario canary-immediate --policy immediate"),
            std::string::npos)
      << out_;
}

TEST_F(command, TheTourRunsBothCasesAtTwoCountsAndSaysWhatTheyShow) {
  command_request r = request(command_kind::tour, {});
  r.options.ops_per_cpu = 15;
  r.quiet = false;
  r.outputs.json = path("tour.json");
  ASSERT_EQ(call(r), exit_ok) << err_;
  EXPECT_NE(out_.find("the Xen case: superpage-churn"), std::string::npos) << out_;
  EXPECT_NE(out_.find("the Linux case: sva-kernel"), std::string::npos) << out_;
  EXPECT_NE(out_.find("what the figures show"), std::string::npos) << out_;
  for (const auto& name : policy_names()) {
    std::size_t rows = 0;
    for (auto p = out_.find("\n" + name + " "); p != std::string::npos;
         p = out_.find("\n" + name + " ", p + 1))
      ++rows;
    EXPECT_EQ(rows, 2u) << name;
  }
  std::size_t findings = 0;
  for (auto p = out_.find("   $ ptreclaim "); p != std::string::npos;
       p = out_.find("   $ ptreclaim ", p + 1))
    ++findings;
  EXPECT_GE(findings, 3u) << out_;
  EXPECT_LE(findings, 5u) << out_;
  EXPECT_NE(out_.find("--ops 15 --seed 1"), std::string::npos) << "commands repeat the run";
  EXPECT_NE(slurp(path("tour.json")).find("\"kind\": \"tour\""), std::string::npos);
}

TEST(replay_check, SameHashesAgreeDifferentOnesDiverge) {
  run_result a, b;
  a.trace_hash = 0x1234;
  b.trace_hash = 0x1234;
  EXPECT_FALSE(replay_divergence(a, b, "7").has_value());
  b.trace_hash = 0xabcdef;
  const auto d = replay_divergence(a, b, "07");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d,
            "replay diverged: seed 07 gave trace hashes 0000000000001234 and 0000000000abcdef "
            "(nondeterminism)");
}

// --costs wins over a scenario's [cost] file, which wins over the built-in default.
TEST_F(command, TheCostFileThatWins) {
  runtime::cost_model cheap, dear;
  cheap.charge_ns.fill(1);
  dear.charge_ns.fill(50);
  std::ofstream(path("cheap.toml")) << cost_model_to_toml(cheap, "cheap");
  std::ofstream(path("dear.toml")) << cost_model_to_toml(dear, "dear");
  std::ofstream(path("s.toml")) << "base = \"dma-storm\"\n[cost]\nfile = \"" + path("dear.toml") +
                                       "\"\n";
  const auto source_of = [&](const std::string& scenario, const std::string& costs) {
    command_request r = request(command_kind::run);
    r.scenario = scenario;
    r.costs = costs;
    r.outputs.json = path("r.json");
    EXPECT_EQ(call(r), exit_ok) << err_;
    const std::string json = slurp(path("r.json"));
    const auto at = json.find("\"cost_source\": \"");
    EXPECT_NE(at, std::string::npos) << json;
    const auto start = at + 16;
    return json.substr(start, json.find('"', start) - start);
  };
  EXPECT_EQ(source_of("dma-storm", ""), default_cost_source);
  EXPECT_EQ(source_of(path("s.toml"), ""), path("dear.toml"));
  EXPECT_EQ(source_of(path("s.toml"), path("cheap.toml")), path("cheap.toml"));
  EXPECT_EQ(source_of("dma-storm", path("cheap.toml")), path("cheap.toml"));
}

TEST_F(command, AStopRequestEndsWithTheSignalsStatus) {
  stop_flag stop;
  stop.request(SIGINT);
  command_request r = request(command_kind::compare);
  r.options.stop = &stop;
  r.outputs.json = path("c.json");
  EXPECT_EQ(call(r), 130);
  EXPECT_NE(err_.find("ptreclaim: interrupted by SIGINT: stopped early; what finished is in " +
                      path("c.json") + " (\"complete\": false)"),
            std::string::npos)
      << err_;
  EXPECT_NE(slurp(path("c.json")).find("\"complete\": false"), std::string::npos);
}

TEST_F(command, FinishSaysTheVerdict) {
  command_request r = request(command_kind::run);
  r.quiet = false;
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  r.out = out;
  r.err = err;
  EXPECT_EQ(finish_command(r, {exit_ok, "ok: fine"}, true), exit_ok);
  EXPECT_EQ(finish_command(r, {exit_unsafe, "S1 failed: x"}, true), exit_unsafe);
  EXPECT_EQ(read_all(out), "ok: fine\n");
  EXPECT_EQ(read_all(err), "ptreclaim: S1 failed: x\n");
  std::fclose(out);
  std::fclose(err);
}

TEST_F(command, CampaignShardsMergeIntoOneVerdict) {
  command_request r = request(command_kind::campaign);
  r.campaign.scenarios = {"dma-storm"};
  r.campaign.policies = {"sync", "flush-epoch"};
  r.campaign.first_seed = 1;
  r.campaign.last_seed = 3;
  r.campaign.ops_per_cpu = 20;
  r.quiet = false;
  for (unsigned k = 1; k <= 2; ++k) {
    r.shard = {k, 2};
    r.outputs.json = path("shard" + std::to_string(k) + ".json");
    ASSERT_EQ(call(r), exit_ok) << err_;
    EXPECT_NE(out_.find("campaign 1 scenario x 2 policies x seeds 1..3  shard " +
                        std::to_string(k) + "/2"),
              std::string::npos)
        << out_;
  }
  command_request m;
  m.quiet = false;
  m.outputs.json = path("merged.json");
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  m.out = out;
  m.err = err;
  EXPECT_EQ(merge_command(m, {path("shard1.json"), path("shard2.json")}), exit_ok);
  EXPECT_NE(read_all(out).find("merged from 2 shard files"), std::string::npos);
  EXPECT_NE(slurp(path("merged.json")).find("\"kind\": \"campaign\""), std::string::npos);
  // One shard missing: no failure, but no verdict for the whole either.
  EXPECT_EQ(merge_command(m, {path("shard1.json")}), exit_error);
  EXPECT_NE(read_all(err).find("ptreclaim: incomplete campaign: "), std::string::npos);
  // A file that is not a shard result is bad input.
  EXPECT_EQ(merge_command(m, {path("nothing.json")}), exit_usage);
  std::fclose(out);
  std::fclose(err);
}

TEST_F(command, CampaignBadScenarioIsUsage) {
  command_request r = request(command_kind::campaign);
  r.campaign.scenarios = {"dma-storm", "warp-drive"};
  r.campaign.policies = {"sync"};
  EXPECT_EQ(call(r), exit_usage);
  EXPECT_NE(err_.find("unknown scenario 'warp-drive'"), std::string::npos) << err_;
}

}  // namespace
}  // namespace ptreclaim::sim

namespace ptreclaim::sim {
namespace {

// Runs `f(out, err)` with both captured: {code, out, err}.
template <class F>
std::tuple<int, std::string, std::string> captured(F f) {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  const int code = f(out, err);
  auto result = std::make_tuple(code, read_all(out), read_all(err));
  std::fclose(out);
  std::fclose(err);
  return result;
}

TEST(scenarios_command, ListsEveryBuiltinAndTheDefault) {
  const auto [code, out, err] =
      captured([](std::FILE* o, std::FILE* e) { return list_scenarios_command(false, o, e); });
  EXPECT_EQ(code, exit_ok) << err;
  for (const auto& b : builtin_scenarios())
    EXPECT_NE(out.find("  " + std::string(b.name)), std::string::npos) << b.name;
  EXPECT_NE(out.find("\ndefault: " + std::string(default_scenario_name) + "\n"), std::string::npos);
  EXPECT_NE(out.find("kind dma-storm"), std::string::npos) << out;
  const auto [quiet_code, quiet_out, quiet_err] =
      captured([](std::FILE* o, std::FILE* e) { return list_scenarios_command(true, o, e); });
  EXPECT_EQ(quiet_code, exit_ok);
  EXPECT_EQ(quiet_out, "");
}

TEST(scenarios_command, ShowsABuiltinOrAValidFileAsWritten) {
  const auto [code, out, err] = captured(
      [](std::FILE* o, std::FILE* e) { return show_scenario_command("sva-kernel", o, e); });
  EXPECT_EQ(code, exit_ok) << err;
  EXPECT_EQ(out, std::string(find_builtin("sva-kernel")->toml));

  const std::string file =
      (fs::temp_directory_path() / ("ptreclaim-show-" + std::to_string(::getpid()) + ".toml"))
          .string();
  const std::string text = "# mine\nbase = \"dma-storm\"\ncpus = 3\n";
  std::ofstream(file) << text;
  const auto [fcode, fout, ferr] =
      captured([&](std::FILE* o, std::FILE* e) { return show_scenario_command(file, o, e); });
  EXPECT_EQ(fcode, exit_ok) << ferr;
  EXPECT_EQ(fout, text);
  std::ofstream(file) << "base = \"dma-storm\"\ncpus = 300\n";
  const auto [bcode, bout, berr] =
      captured([&](std::FILE* o, std::FILE* e) { return show_scenario_command(file, o, e); });
  EXPECT_EQ(bcode, exit_usage);
  EXPECT_EQ(bout, "");
  EXPECT_NE(berr.find("'cpus' = 300 is out of range"), std::string::npos) << berr;
  fs::remove(file);
  const auto [ucode, uout, uerr] = captured(
      [](std::FILE* o, std::FILE* e) { return show_scenario_command("nothing-like-it", o, e); });
  EXPECT_EQ(ucode, exit_usage);
  EXPECT_NE(uerr.find("unknown scenario"), std::string::npos) << uerr;
}

}  // namespace
}  // namespace ptreclaim::sim
