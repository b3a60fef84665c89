// When and where a measurement ran, for the header of a cost file written by `calibrate`:
// "2026-12-02 00:55 UTC, host NAME, 2 CPUs (AMD EPYC)". Best effort: what cannot be read is
// left out.
#pragma once

#include <ctime>
#include <istream>
#include <optional>
#include <string>

namespace ptreclaim::sim {

struct machine_facts {
  std::optional<std::time_t> when;   // none: no time in the description
  std::string host;                  // "": none
  unsigned cpus = 0;                 // always given
  std::optional<std::string> model;  // the CPU model name, when /proc/cpuinfo gives one
};

// The value of the first "model name" line of /proc/cpuinfo-style text; nullopt when there is
// no such line or it has no ": ".
[[nodiscard]] std::optional<std::string> cpu_model_name(std::istream& cpuinfo);
// This machine: the clock, gethostname(), hardware_concurrency() and /proc/cpuinfo.
[[nodiscard]] machine_facts this_machine();
// "WHEN UTC, host HOST, N CPUs (MODEL)", leaving out what is missing.
[[nodiscard]] std::string describe_machine(const machine_facts& m);
// describe_machine(this_machine()).
[[nodiscard]] std::string machine_description();

}  // namespace ptreclaim::sim
