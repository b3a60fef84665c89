// calibrate: every cost kind is measured, the charged model is the measurements rounded, and
// the budget is checked.
#include "ptreclaim/calibrate/calibrate.hpp"

#include <gtest/gtest.h>

#include <cstddef>

namespace ptreclaim::sim {
namespace {

TEST(CostModel, CalibrateMeasuresEveryKind) {
  calibrate_options o;
  o.budget_ms = 200;
  double last = -1;
  o.progress = [&last](double f) {
    EXPECT_GE(f, last);
    last = f;
  };
  auto m = calibrate(o);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  for (std::size_t i = 0; i < cost_kind_count; ++i) {
    EXPECT_GT(m->measured_ns[i], 0.0) << cost_kind_name(static_cast<cost_kind>(i));
    EXPECT_EQ(m->costs.charge_ns[i], whole_ns(m->measured_ns[i]));
  }
  // pte_write is timed through the page-table code (a descent from the root and checks per
  // entry), not as a bare store, which would cost about what one load does.
  const auto ns_of = [&](cost_kind k) { return m->measured_ns[static_cast<std::size_t>(k)]; };
  EXPECT_GT(ns_of(cost_kind::pte_write), 2 * ns_of(cost_kind::pte_read));
  EXPECT_DOUBLE_EQ(last, 1.0);
  o.budget_ms = 5;
  EXPECT_FALSE(calibrate(o).ok());
}

}  // namespace
}  // namespace ptreclaim::sim
