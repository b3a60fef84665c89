// Stop requests (interrupt.hpp) in the engine and the sweeps: a run stopped between operations
// still drains, tears down and checks every invariant; a sweep returns the runs done so far,
// marked incomplete, and saves them as it goes.
#include "ptreclaim/sim/interrupt.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "ptreclaim/report/report.hpp"
#include "ptreclaim/sim/engine.hpp"
#include "sim/engine_test_support.hpp"

namespace ptreclaim::sim {
namespace {

void expect_clean_stop(const run_result& r, std::uint64_t planned_ops) {
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.interrupted_by, "a stop request");
  EXPECT_LT(r.operations, planned_ops);
  // Stopped early, the run still drained and tore down: nothing leaked, L1 held.
  EXPECT_TRUE(r.all_held()) << testing::describe(testing::builtin(r.scenario), {}, r);
  EXPECT_TRUE(r.leaks.checked);
  bool noted = false;
  for (const auto& n : r.notes)
    noted = noted || n.rfind("stopped early by a stop request", 0) == 0;
  EXPECT_TRUE(noted);
}

TEST(interrupt, DeterministicRunStopsBetweenOperations) {
  const scenario s = testing::builtin("superpage-churn");
  stop_flag stop;
  // Far more operations than a test can wait for: only the stop, asked at the first progress
  // report (some 50 ms in), ends it.
  run_options o = testing::options("flush-epoch", 3, 50'000'000);
  o.stop = &stop;
  o.progress = [&stop](double f) {
    if (f > 0) stop.request();
  };
  auto r = run(s, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_clean_stop(*r, 50'000'000ull * s.cpus);
  EXPECT_GT(r->operations, 0u);
  EXPECT_EQ(r->reclaim.tables_freed, r->reclaim.tables_released);
}

TEST(interrupt, ThreadedRunStopsWhenAskedFromAnotherThread) {
  const scenario s = testing::builtin("dma-storm");
  stop_flag stop;
  // Far more operations than the test waits for: only the stop can end it in time.
  run_options o = testing::options("sync", 5, 50'000'000, executor_kind::threaded, 2);
  o.stop = &stop;
  std::thread asker([&stop] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop.request();
  });
  auto r = run(s, o);
  asker.join();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_clean_stop(*r, 100'000'000);
}

TEST(interrupt, ScaleReturnsThePointsDoneAndSavesThemAsItGoes) {
  const scenario s = testing::builtin("dma-storm");
  stop_flag stop;
  run_options o = testing::options("", 2, 60);
  o.stop = &stop;
  std::size_t saved = 0;
  auto r = run_scale(
      s, o, {reclaim::policy_kind::sync, reclaim::policy_kind::flush_epoch}, {1, 2},
      [&stop](std::string_view label, double) {
        if (label == "sync @ 2 cpus") stop.request();  // as the second point starts
      },
      [&saved](const scale_result& so_far) {
        EXPECT_FALSE(so_far.complete);
        saved = so_far.runs.size();
      });
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->complete);
  EXPECT_EQ(r->interrupted_by, "a stop request");
  ASSERT_EQ(r->runs.size(), 2u);
  EXPECT_TRUE(r->runs[0].complete);
  EXPECT_EQ(r->runs[0].operations, 60u);
  EXPECT_FALSE(r->runs[1].complete);
  EXPECT_EQ(r->runs[1].operations, 0u);
  EXPECT_EQ(saved, 2u);
  const std::string json = to_json(*r);
  EXPECT_NE(json.find("\"complete\": false"), std::string::npos);
  EXPECT_NE(json.find("\"interrupted_by\": \"a stop request\""), std::string::npos);
  EXPECT_NE(format_scale_table(*r).find("stopped early by a stop request: 2 runs done, the last "
                                        "of them incomplete"),
            std::string::npos);
}

TEST(interrupt, CompareStoppedInItsFirstRunKeepsIt) {
  const scenario s = testing::builtin("sva-kernel");
  stop_flag stop;
  run_options o = testing::options("", 4, 50'000'000);
  o.stop = &stop;
  auto r = run_compare(s, o, {reclaim::policy_kind::sync, reclaim::policy_kind::flush_epoch},
                       [&stop](std::string_view, double f) {
                         if (f > 0) stop.request();  // the first report within the first run
                       });
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->complete);
  ASSERT_EQ(r->runs.size(), 1u);
  expect_clean_stop(r->runs[0], 50'000'000ull * s.cpus);
  // Nothing asked: complete.
  stop.clear();
  o.ops_per_cpu = 50;
  auto whole = run_compare(s, o, {reclaim::policy_kind::sync});
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(whole->complete);
  EXPECT_TRUE(whole->interrupted_by.empty());
}

}  // namespace
}  // namespace ptreclaim::sim
