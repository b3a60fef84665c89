// The machine description in a calibrated cost file's header (machine.hpp).
#include "ptreclaim/report/machine.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace ptreclaim::sim {
namespace {

TEST(machine, ModelNameIsTheFirstModelNameLine) {
  std::istringstream cpuinfo(
      "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n"
      "processor\t: 1\nmodel name\t: Other\n");
  EXPECT_EQ(cpu_model_name(cpuinfo), "AMD EPYC 7B13");
  std::istringstream none("processor\t: 0\nmodel\t\t: 1\n");
  EXPECT_FALSE(cpu_model_name(none).has_value());
  std::istringstream no_colon("model name\n");
  EXPECT_FALSE(cpu_model_name(no_colon).has_value());
}

TEST(machine, DescriptionLeavesOutWhatIsMissing) {
  machine_facts m;
  m.when = std::time_t{86400 + 3600 + 120};  // 1970-01-02 01:02 UTC
  m.host = "box";
  m.cpus = 4;
  m.model = "AMD EPYC";
  EXPECT_EQ(describe_machine(m), "1970-01-02 01:02 UTC, host box, 4 CPUs (AMD EPYC)");
  m.when.reset();
  m.model.reset();
  EXPECT_EQ(describe_machine(m), "host box, 4 CPUs");
  m.host.clear();
  EXPECT_EQ(describe_machine(m), "4 CPUs");
}

TEST(machine, ThisMachineHasAtLeastItsCpuCount) {
  const std::string d = machine_description();
  EXPECT_NE(d.find(" CPUs"), std::string::npos) << d;
  EXPECT_NE(d.find(" UTC"), std::string::npos) << d;
}

}  // namespace
}  // namespace ptreclaim::sim
