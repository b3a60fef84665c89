// The testbed builds one machine a policy stands on; misuse is an error, not a crash.
#include "ptreclaim/testbed/testbed.hpp"

#include <gtest/gtest.h>

namespace ptreclaim::testbed {
namespace {

config small(executor_kind k) {
  config c;
  c.executor = k;
  c.run.cpus = 2;
  c.run.seed = 5;
  c.pool.capacity_frames = 512;
  c.pool.caches = 2;
  c.units = {iommu::unit_config{}};
  c.max_pending = 16;
  return c;
}

TEST(testbed, refuses_a_machine_without_an_iommu) {
  config c = small(executor_kind::deterministic);
  c.units.clear();
  auto tb = testbed::create(c);
  ASSERT_FALSE(tb.ok());
  EXPECT_EQ(tb.status().code(), errc::invalid_argument);
  EXPECT_NE(tb.status().message().find("no IOMMU unit"), std::string::npos);
}

TEST(testbed, a_duplicate_domain_id_is_an_error) {
  auto tb = testbed::create(small(executor_kind::deterministic));
  ASSERT_TRUE(tb.ok());
  ASSERT_TRUE((*tb)->add_domain({.id = 1}).ok());
  EXPECT_FALSE((*tb)->add_domain({.id = 1}).ok());
}

// A table the testbed built reports its unlinks to the monitor; a policy it installed frees
// them only after a covering invalidation, with the monitor watching (S3) and the observer
// timing the free.
TEST(testbed, wires_tables_monitor_and_policy_together) {
  for (executor_kind k : {executor_kind::deterministic, executor_kind::threaded}) {
    SCOPED_TRACE(k == executor_kind::deterministic ? "deterministic" : "threaded");
    auto tbr = testbed::create(small(k));
    ASSERT_TRUE(tbr.ok());
    testbed& tb = **tbr;
    auto d = tb.add_domain({.id = 1});
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE(tb.sys().attach(1, 0, *(*d)->dom, 1).ok());
    ASSERT_TRUE(tb.install_policy(reclaim::policy_kind::sync, {}).ok());
    ASSERT_TRUE(tb.has_policy());
    pt::table& t = *(*d)->table;
    tb.ex().set_program(0, [&](unsigned) {
      pt::gather g;
      for (unsigned i = 0; i < 512; ++i)  // the last map coalesces: the leaf table goes
        EXPECT_TRUE(t.map(i * 4096ull, (1ull << 32) + i * 4096ull, 4096, pt::perm_rw, g).ok());
      tb.policy().retire(1, g);
      return runtime::step_result::finished();
    });
    tb.ex().add_actor({"iommu",
                       [&] {
                         tb.sys().get_unit(0).advance();
                         return runtime::step_result::sleep_for(100);
                       },
                       true});
    (void)tb.ex().run();
    const reclaim::safety_monitor::report rep = tb.monitor().result();
    EXPECT_GE(rep.unlinked, 1u);
    EXPECT_EQ(rep.retired, rep.unlinked);
    EXPECT_EQ(rep.freed, rep.retired);
    EXPECT_EQ(rep.s2_violations + rep.s3_violations, 0u);
    EXPECT_EQ(tb.obs().merged().count(), rep.freed);
  }
}

}  // namespace
}  // namespace ptreclaim::testbed
