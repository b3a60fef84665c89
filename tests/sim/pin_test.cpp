// Behaviour pins: for every built-in scenario and policy, the deterministic run at seed 7 with
// 300 operations per CPU (`ptreclaim run --scenario S --policy P --seed 7 --ops 300`) gives the
// trace hash and the table row recorded in pins/seed7-ops300.txt. A refactoring must leave them
// as they are; a change of behaviour (a bug fixed, a cost charged) updates the file in its own
// commit, saying why: PTRECLAIM_UPDATE_PINS=1 rewrites it from the current build.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "engine_test_support.hpp"
#include "ptreclaim/report/report.hpp"
#include "ptreclaim/scenario/scenario.hpp"
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {
namespace {

std::string pins_file() {
  return std::string(PTRECLAIM_PINS_DIR) + "/seed7-ops300.txt";
}

// One line per run: scenario, policy, trace hash, then the run's table row as printed.
std::string current_pins() {
  std::string out;
  for (const auto& b : builtin_scenarios()) {
    auto s = load_scenario(std::string(b.name));
    EXPECT_TRUE(s.ok());
    for (const std::string& policy : policy_names()) {
      run_options o = testing::options(policy, 7, 300);
      auto r = run(*s, o);
      EXPECT_TRUE(r.ok()) << r.status().to_string();
      if (!r.ok()) continue;
      std::ostringstream hash;
      hash << std::hex << r->trace_hash;
      // The table's last line is the run's row.
      std::string table = format_run(*r);
      std::istringstream lines(table);
      std::string line, row;
      while (std::getline(lines, line))
        if (line.rfind(policy + " ", 0) == 0) row = line;
      out += std::string(b.name) + " " + policy + " " + hash.str() + " | " + row + "\n";
    }
  }
  return out;
}

TEST(BehaviourPins, EveryBuiltinScenarioAndPolicyAtSeed7IsUnchanged) {
  if (testing::sanitized) GTEST_SKIP() << "pins are checked in the plain builds";
  const std::string now = current_pins();
  if (std::getenv("PTRECLAIM_UPDATE_PINS") != nullptr) {
    std::ofstream(pins_file()) << now;
    GTEST_SKIP() << "rewrote " << pins_file();
  }
  std::ifstream in(pins_file());
  ASSERT_TRUE(in) << "no pins file " << pins_file() << " (PTRECLAIM_UPDATE_PINS=1 writes it)";
  std::stringstream want;
  want << in.rdbuf();
  std::istringstream a(want.str()), b(now);
  std::string la, lb;
  unsigned line = 0;
  for (;;) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) break;
    ++line;
    EXPECT_EQ(la, lb) << "pin line " << line << " changed (replay: ptreclaim run --scenario "
                      << lb.substr(0, lb.find(' ')) << " --policy ... --seed 7 --ops 300)";
    la.clear();
    lb.clear();
  }
}

}  // namespace
}  // namespace ptreclaim::sim
