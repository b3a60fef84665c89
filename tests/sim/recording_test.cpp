// What a run records on request (sim::recording): a Chrome trace and a frame's story. Recording
// must never change the run (the same trace hash, violations and figures), the trace must be a
// trace-event document with every kind of track, its size bound must hold, and the story must
// tell what happened to the frame in the order it happened.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "engine_test_support.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

using testing::builtin;
using testing::options;

// The index of the first event of `kind` in the story, or -1.
int first_of(const frame_story& s, const std::string& kind) {
  for (std::size_t i = 0; i < s.events.size(); ++i)
    if (s.events[i].kind == kind) return static_cast<int>(i);
  return -1;
}

TEST(recording, never_changes_the_run) {
  const scenario s = builtin("canary-immediate");
  for (const char* policy : {"immediate", "flush-epoch", "linux-global-work"}) {
    const run_options plain = options(policy, 11, 60);
    auto a = run(s, plain);
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    recording rec;
    rec.chrome_trace = true;
    rec.frame = a->violations.first_frame.value_or(40);
    run_options o = plain;
    o.record = &rec;
    auto b = run(s, o);
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    EXPECT_EQ(a->trace_hash, b->trace_hash) << policy;
    EXPECT_EQ(a->violations.count, b->violations.count) << policy;
    EXPECT_EQ(a->elapsed_ns, b->elapsed_ns) << policy;
    EXPECT_EQ(a->reclaim.tables_freed, b->reclaim.tables_freed) << policy;
    EXPECT_FALSE(a->story.has_value());
    EXPECT_TRUE(b->story.has_value()) << policy;
    EXPECT_FALSE(rec.trace_json.empty()) << policy;
  }
}

TEST(recording, the_trace_is_a_trace_event_document_with_every_track) {
  const scenario s = builtin("canary-immediate");
  recording rec;
  rec.chrome_trace = true;
  rec.command = "ptreclaim run (test)";
  run_options o = options("immediate", 11, 60);
  o.record = &rec;
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const nlohmann::json j = nlohmann::json::parse(rec.trace_json);
  ASSERT_TRUE(j.contains("traceEvents"));
  EXPECT_EQ(j["otherData"]["generator"], "ptreclaim");
  EXPECT_EQ(j["otherData"]["command"], "ptreclaim run (test)");
  EXPECT_EQ(j["otherData"]["dropped_events"], 0);
  std::set<std::string> seen, names, threads;
  std::uint64_t begins = 0, ends = 0;
  for (const auto& e : j["traceEvents"]) {
    const std::string ph = e["ph"];
    ASSERT_TRUE(e.contains("pid") && e.contains("tid") && e.contains("name")) << e.dump();
    if (ph != "M") {
      ASSERT_TRUE(e["ts"].is_number()) << e.dump();
    }
    if (ph == "X") {
      ASSERT_TRUE(e["dur"].is_number() && e["dur"].get<double>() >= 0) << e.dump();
    }
    if (ph == "b") ++begins;
    if (ph == "e") ++ends;
    if (ph == "M" && e["name"] == "thread_name")
      threads.insert(e["args"]["name"].get<std::string>());
    if (ph == "M" && e["name"] == "process_name")
      names.insert(e["args"]["name"].get<std::string>());
    seen.insert(ph + "/" + e.value("cat", ""));
  }
  // Operations on the CPUs, deferred work, retires and frees, the queues' descriptors and
  // flushes, DMA, violations, frames pending.
  for (const char* want :
       {"X/op", "X/iommu", "b/flush", "e/flush", "i/reclaim", "X/device", "i/violation", "C/"})
    EXPECT_TRUE(seen.count(want)) << want;
  EXPECT_EQ(begins, ends);
  EXPECT_GT(begins, 0u);
  EXPECT_TRUE(names.count("IOMMU 0 invalidation queue"));
  EXPECT_TRUE(names.count("IOMMU 1 invalidation queue"));
  EXPECT_TRUE(names.count("devices"));
  EXPECT_TRUE(threads.count("CPU 0"));
  EXPECT_TRUE(threads.count("CPU 1"));
  EXPECT_TRUE(threads.count("device 0"));
  EXPECT_EQ(rec.trace_events + 0, j["otherData"]["events"].get<std::uint64_t>());
}

TEST(recording, the_trace_stays_under_its_bound) {
  const scenario s = builtin("canary-immediate");
  recording rec;
  rec.chrome_trace = true;
  rec.trace_limit_bytes = min_trace_limit_bytes;
  run_options o = options("xen-tasklet", 3, 80);
  o.record = &rec;
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_LE(rec.trace_json.size(), rec.trace_limit_bytes);
  EXPECT_GT(rec.trace_dropped, 0u);
  const nlohmann::json j = nlohmann::json::parse(rec.trace_json);  // still a whole document
  EXPECT_EQ(j["otherData"]["dropped_events"].get<std::uint64_t>(), rec.trace_dropped);
}

TEST(recording, the_story_of_the_first_violation_tells_the_early_free) {
  const scenario s = builtin("canary-immediate");
  const run_options plain = options("immediate", 11, 60);
  auto a = run(s, plain);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->violations.first_frame.has_value()) << a->violations.first;
  recording rec;
  rec.frame = a->violations.first_frame;
  run_options o = plain;
  o.record = &rec;
  auto b = run(s, o);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->story.has_value());
  const frame_story& st = *b->story;
  EXPECT_EQ(st.frame, *a->violations.first_frame);
  EXPECT_EQ(st.focus, "the first violation");
  EXPECT_GE(st.lifetimes, 1u);
  // In the order it happened: allocated, linked, unlinked, retired, freed, then read.
  const int alloc = first_of(st, "allocated"), link = first_of(st, "linked"),
            unlink = first_of(st, "unlinked"), retire = first_of(st, "retired"),
            freed = first_of(st, "freed"), walk = first_of(st, "walk");
  ASSERT_GE(alloc, 0);
  EXPECT_LT(alloc, link);
  EXPECT_LT(link, unlink);
  EXPECT_LT(unlink, retire);
  EXPECT_LT(retire, freed);
  EXPECT_LT(freed, walk);
  EXPECT_GE(st.events[static_cast<std::size_t>(unlink)].cpu, 0);
  EXPECT_GE(st.events[static_cast<std::size_t>(walk)].device, 0);
  EXPECT_NE(st.events[static_cast<std::size_t>(freed)].text.find("NOT covered"), std::string::npos);
  EXPECT_NE(st.conclusion.find("before a covering invalidation had completed"), std::string::npos)
      << st.conclusion;
}

TEST(recording, the_story_of_a_safe_policys_frame_shows_covering_invalidations) {
  const scenario s = builtin("canary-immediate");
  // The frame immediate's first violation names is used by every policy at this seed.
  auto a = run(s, options("immediate", 11, 60));
  ASSERT_TRUE(a.ok() && a->violations.first_frame.has_value());
  recording rec;
  rec.frame = a->violations.first_frame;
  run_options o = options("flush-epoch", 11, 60);
  o.record = &rec;
  auto b = run(s, o);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(b->story.has_value());
  const frame_story& st = *b->story;
  EXPECT_EQ(st.focus, "--frame");
  const int freed = first_of(st, "freed");
  ASSERT_GE(freed, 0) << st.conclusion;
  // A covering invalidation on each IOMMU came (and was reported) before the free.
  unsigned covering = 0;
  for (int i = 0; i < freed; ++i) {
    const frame_event& e = st.events[static_cast<std::size_t>(i)];
    if (e.kind == "invalidation" && e.covers.value_or(false)) ++covering;
  }
  EXPECT_GE(covering, 2u);
  EXPECT_EQ(first_of(st, "walk"), -1);
  EXPECT_NE(st.conclusion.find("no device read it unsafely"), std::string::npos) << st.conclusion;
}

TEST(recording, a_frame_never_allocated_says_so) {
  const scenario s = builtin("dma-storm");
  recording rec;
  rec.frame = 8000;  // the test pool has 8192 frames; a short run uses the first few
  run_options o = options("sync", 1, 5);
  o.record = &rec;
  auto r = run(s, o);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->story.has_value());
  EXPECT_EQ(r->story->lifetimes, 0u);
  EXPECT_NE(r->story->conclusion.find("never allocated"), std::string::npos);
}

TEST(recording, needs_the_deterministic_executor) {
  const scenario s = builtin("dma-storm");
  recording rec;
  rec.chrome_trace = true;
  run_options o = options("sync", 1, 5, executor_kind::threaded);
  o.record = &rec;
  auto r = run(s, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), errc::invalid_argument);
  EXPECT_NE(r.status().message().find("deterministic executor"), std::string::npos);
}

}  // namespace
}  // namespace ptreclaim::sim
