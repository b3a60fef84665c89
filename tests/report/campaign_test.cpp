// Seed campaigns (campaign.hpp): shards partition every campaign, results survive JSON, a
// merge of the shards judges as the unsharded campaign does, and every way shards can fail to
// form one campaign is named. Also: a campaign and the sweeps stopped by a stop request.
#include "ptreclaim/report/campaign.hpp"

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

campaign_definition small_definition() {
  campaign_definition d;
  d.scenarios = {"canary-softirq", "dma-storm"};
  d.policies = {"xen-softirq-tasklet", "sync"};
  d.first_seed = 1;
  d.last_seed = 2;
  d.ops_per_cpu = 20;
  d.expect_violation = true;  // dma-storm has no softirq point: the canary misses there
  return d;
}

// Smaller frame pools, as engine_test_support.hpp's builtin() (the pool is zeroed per run).
std::vector<scenario> shrunk(std::vector<scenario> v) {
  for (auto& s : v) {
    s.memory.frames = 8192;
    s.reclaim.max_pending_frames = std::min<std::uint64_t>(s.reclaim.max_pending_frames, 2048);
    s.reclaim.watermark_frames = std::min(s.reclaim.watermark_frames, s.reclaim.max_pending_frames);
  }
  return v;
}

TEST(campaign, ParsesShardsAndSeedRanges) {
  auto s = parse_shard("3/8");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, (shard_spec{3, 8}));
  for (const char* bad : {"0/2", "3/2", "1/0", "1/", "/2", "a/b", "1/2/3", "", "1/100001"})
    EXPECT_FALSE(parse_shard(bad).ok()) << bad;
  auto r = parse_seed_range("5..9");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, std::make_pair(std::uint64_t{5}, std::uint64_t{9}));
  EXPECT_EQ(*parse_seed_range("7"), std::make_pair(std::uint64_t{7}, std::uint64_t{7}));
  for (const char* bad : {"9..5", "1..", "..3", "x", "1...3", "-1..2"})
    EXPECT_FALSE(parse_seed_range(bad).ok()) << bad;
  // Definitions that cannot be a campaign are refused before anything loads.
  campaign_definition d = small_definition();
  d.last_seed = ~std::uint64_t{0};  // 2^64 seeds: item numbers would overflow
  EXPECT_FALSE(load_campaign_scenarios(d).ok());
  d = small_definition();
  d.policies = {"sync", "sync"};
  auto twice = load_campaign_scenarios(d);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(), "--policies lists 'sync' twice");
}

TEST(campaign, ShardsPartitionEveryCampaign) {
  ASSERT_TRUE(rc::check("shards 1..N hold every item exactly once, in balanced sizes", [] {
    campaign_definition d;
    d.scenarios.resize(*rc::gen::inRange<std::size_t>(1, 5));
    d.policies.resize(*rc::gen::inRange<std::size_t>(1, 7));
    d.first_seed = *rc::gen::inRange<std::uint64_t>(0, 1000);
    d.last_seed = d.first_seed + *rc::gen::inRange<std::uint64_t>(0, 40);
    const unsigned n = *rc::gen::inRange(1u, 50u);
    std::vector<unsigned> owner(d.size(), 0);
    std::uint64_t total = 0, smallest = d.size(), largest = 0;
    for (unsigned k = 1; k <= n; ++k) {
      std::uint64_t mine = 0;
      for (std::uint64_t i = 0; i < d.size(); ++i) {
        if (!in_shard(i, {k, n})) continue;
        RC_ASSERT(owner[i] == 0u);
        owner[i] = k;
        ++mine;
      }
      RC_ASSERT(mine == shard_size(d, {k, n}));
      total += mine;
      smallest = std::min(smallest, mine);
      largest = std::max(largest, mine);
    }
    RC_ASSERT(total == d.size());
    RC_ASSERT(largest - smallest <= 1);
    // The canonical order visits every (scenario, policy, seed) once.
    std::set<std::tuple<std::size_t, std::size_t, std::uint64_t>> seen;
    for (std::uint64_t i = 0; i < d.size(); ++i) {
      const campaign_item it = campaign_item_at(d, i);
      RC_ASSERT(it.scenario < d.scenarios.size());
      RC_ASSERT(it.policy < d.policies.size());
      RC_ASSERT(it.seed >= d.first_seed && it.seed <= d.last_seed);
      seen.insert({it.scenario, it.policy, it.seed});
    }
    RC_ASSERT(seen.size() == d.size());
  }));
}

// The campaign run whole and in shards, once for the whole file (the runs take seconds).
class campaign_runs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    def_ = small_definition();
    auto s = load_campaign_scenarios(def_);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    scenarios_ = shrunk(*s);
    run_options base;
    base.quiet = true;
    auto whole = run_campaign(def_, scenarios_, {1, 1}, base);
    ASSERT_TRUE(whole.ok()) << whole.status().to_string();
    whole_ = *whole;
    for (unsigned k = 1; k <= 3; ++k) {
      auto part = run_campaign(def_, scenarios_, {k, 3}, base);
      ASSERT_TRUE(part.ok()) << part.status().to_string();
      shards_.emplace_back("shard" + std::to_string(k) + ".json", *part);
    }
  }
  static inline campaign_definition def_;
  static inline std::vector<scenario> scenarios_;
  static inline campaign_result whole_;
  static inline std::vector<std::pair<std::string, campaign_result>> shards_;
};

TEST_F(campaign_runs, MergedShardsJudgeAsTheWholeCampaign) {
  ASSERT_EQ(whole_.runs.size(), 8u);
  EXPECT_TRUE(whole_.complete);
  EXPECT_EQ(def_.scenario_hashes.size(), 2u);
  const verdict v = judge(whole_);
  EXPECT_EQ(v.code, exit_unsafe);
  EXPECT_EQ(v.reason.rfind("unsafe: 2 of 8 judged runs failed", 0), 0u) << v.reason;
  const auto failures = campaign_failures(whole_);
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_NE(failures[0].find("replay: ptreclaim run --scenario dma-storm --policy "
                             "xen-softirq-tasklet --executor deterministic --cpus 4 --seed 1 "
                             "--ops 20"),
            std::string::npos)
      << failures[0];

  // Through JSON, as the tool merges files.
  std::vector<std::pair<std::string, campaign_result>> read;
  for (const auto& [name, r] : shards_) {
    auto back = parse_campaign_json(to_json(r), name);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    read.emplace_back(name, *back);
  }
  auto m = merge_campaigns(read);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_TRUE(m->gaps.empty());
  EXPECT_TRUE(m->merged.complete);
  EXPECT_EQ(judge(m->merged).code, v.code);
  EXPECT_EQ(judge(m->merged).reason, v.reason);
  EXPECT_EQ(campaign_failures(m->merged), failures);
  ASSERT_EQ(m->merged.runs.size(), whole_.runs.size());
  for (std::size_t i = 0; i < whole_.runs.size(); ++i) {
    EXPECT_EQ(m->merged.runs[i].trace_hash, whole_.runs[i].trace_hash) << i;
    EXPECT_EQ(m->merged.runs[i].seed, whole_.runs[i].seed) << i;
  }
  // The shards' order on the command line does not matter.
  std::swap(read[0], read[2]);
  auto again = merge_campaigns(read);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(judge(again->merged).reason, v.reason);
}

TEST_F(campaign_runs, MissingAndInterruptedShardsAreGaps) {
  auto m = merge_campaigns({shards_[0], shards_[2]});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->gaps.size(), 1u);
  EXPECT_EQ(m->gaps[0], "1 of 3 shards missing: 2/3");
  EXPECT_FALSE(m->merged.complete);

  auto cut = shards_[1];
  cut.second.runs.pop_back();
  cut.second.complete = false;
  cut.second.interrupted_by = "SIGTERM";
  m = merge_campaigns({shards_[0], cut, shards_[2]});
  ASSERT_TRUE(m.ok());
  ASSERT_EQ(m->gaps.size(), 1u);
  EXPECT_EQ(m->gaps[0], "shard 2/3 (shard2.json) was stopped early by SIGTERM: 2 of 3 runs");
}

TEST_F(campaign_runs, ShardsThatAreNotOneCampaignAreRefused) {
  const auto refused = [](const std::vector<std::pair<std::string, campaign_result>>& v,
                          const std::string& why) {
    auto m = merge_campaigns(v);
    ASSERT_FALSE(m.ok()) << why;
    EXPECT_NE(m.status().message().find(why), std::string::npos) << m.status().message();
  };
  refused({shards_[0], shards_[0]},
          "shard 1/3 is given twice: shard1.json and shard1.json overlap");
  refused({shards_[0], {"whole.json", whole_}}, "the shard counts differ");
  auto other = shards_[1];
  other.second.definition.last_seed = 3;
  refused({shards_[0], other}, "is from a different campaign than shard1.json: the seeds differ");
  other = shards_[1];
  other.second.definition.scenario_hashes[1] = "0000000000000000";
  refused({shards_[0], other}, "a scenario file's text differs");
  other = shards_[1];
  std::swap(other.second.runs[0], other.second.runs[1]);
  refused({shards_[0], other}, "does not belong there in shard 2/3");
  EXPECT_FALSE(merge_campaigns({}).ok());
}

TEST_F(campaign_runs, MalformedResultsAreParseErrors) {
  EXPECT_FALSE(parse_campaign_json("{", "x.json").ok());
  EXPECT_FALSE(parse_campaign_json("{\"kind\": \"scale\"}", "x.json").ok());
  std::string text = to_json(shards_[0].second);
  text.replace(text.find("\"expected_runs\": 3"), 18, "\"expected_runs\": 4");
  auto r = parse_campaign_json(text, "x.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("x.json: inconsistent campaign result"), std::string::npos);
}

TEST(campaign, BrokenContractsAreNamedNotJudged) {
  // xen-tasklet relies on the caller's flush; a scenario without one breaks its contract.
  const std::string file = ::testing::TempDir() + "ptreclaim_campaign_no_flush.toml";
  std::ofstream(file) << "base = \"dma-storm\"\n[caller]\nflush = \"none\"\n";
  campaign_definition d;
  d.scenarios = {file};
  d.policies = {"xen-tasklet", "sync"};
  d.first_seed = d.last_seed = 1;
  d.ops_per_cpu = 20;
  auto s = load_campaign_scenarios(d);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  run_options base;
  base.quiet = true;
  auto r = run_campaign(d, shrunk(*s), {1, 1}, base);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->runs.size(), 2u);
  EXPECT_FALSE(r->runs[0].contract_broken.empty());
  const verdict v = judge(*r);
  EXPECT_EQ(v.code, exit_ok) << v.reason;
  EXPECT_NE(v.reason.find("in 1 runs"), std::string::npos) << v.reason;  // sync only
  EXPECT_NE(v.reason.find("xen-tasklet is unsafe on " + file +
                          " by contract (it needs caller "
                          "flushes"),
            std::string::npos)
      << v.reason;
  EXPECT_NE(format_campaign(*r).find("contract"), std::string::npos);
  auto back = parse_campaign_json(to_json(*r), "x.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->runs[0].contract_broken, r->runs[0].contract_broken);
  std::remove(file.c_str());
}

TEST(campaign, StopRequestEndsItEarlyWithWhatFinished) {
  campaign_definition d = small_definition();
  auto loaded = load_campaign_scenarios(d);
  ASSERT_TRUE(loaded.ok());
  const auto s = shrunk(*loaded);
  stop_flag stop;
  run_options base;
  base.quiet = true;
  base.stop = &stop;
  std::size_t checkpoints = 0;
  // Asked to stop as the third run starts: it stops before its first operation.
  auto r = run_campaign(
      d, s, {1, 1}, base,
      [&stop](std::string_view label, double) {
        if (label == "canary-softirq sync seed 1") stop.request();
      },
      [&checkpoints](const campaign_result& so_far) {
        ++checkpoints;
        EXPECT_FALSE(so_far.complete);
      });
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->complete);
  EXPECT_EQ(r->interrupted_by, "a stop request");
  ASSERT_EQ(r->runs.size(), 3u);
  EXPECT_TRUE(r->runs[1].complete);
  EXPECT_FALSE(r->runs[2].complete);
  EXPECT_EQ(r->runs[2].operations, 0u);
  EXPECT_EQ(checkpoints, 3u);
  const std::string json = to_json(*r);
  EXPECT_NE(json.find("\"complete\": false"), std::string::npos);
}

}  // namespace
}  // namespace ptreclaim::sim
