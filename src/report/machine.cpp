// When and where a measurement ran (machine.hpp).
#include "ptreclaim/report/machine.hpp"

#include <unistd.h>

#include <fstream>
#include <thread>

namespace ptreclaim::sim {

std::optional<std::string> cpu_model_name(std::istream& cpuinfo) {
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(": ");
    if (colon == std::string::npos) return std::nullopt;
    return line.substr(colon + 2);
  }
  return std::nullopt;
}

machine_facts this_machine() {
  machine_facts m;
  m.when = std::time(nullptr);
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) m.host = host;
  m.cpus = std::thread::hardware_concurrency();
  std::ifstream cpuinfo("/proc/cpuinfo");
  m.model = cpu_model_name(cpuinfo);
  return m;
}

std::string describe_machine(const machine_facts& m) {
  std::string out;
  std::tm utc{};
  char when[32];
  if (m.when && gmtime_r(&*m.when, &utc) != nullptr &&
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &utc))
    out = when;
  if (!m.host.empty()) out += std::string(out.empty() ? "" : ", ") + "host " + m.host;
  out += (out.empty() ? "" : ", ") + std::to_string(m.cpus) + " CPUs";
  if (m.model) out += " (" + *m.model + ")";
  return out;
}

std::string machine_description() {
  return describe_machine(this_machine());
}

}  // namespace ptreclaim::sim
