// Calibration (the calibrate component, ptreclaim::calibrate; names in namespace ptreclaim::sim):
// `ptreclaim calibrate` measures the deterministic executor's cost model on this machine. The
// result is a runtime::cost_model, the one cost model, which cost_model_to_toml
// (ptreclaim/scenario/scenario.hpp) writes as a cost file a scenario can name.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/runtime/cost_model.hpp"
#include "ptreclaim/scenario/scenario.hpp"

namespace ptreclaim::sim {

// Measures the costs on this machine with short timing loops over the real code paths (frame
// pool alloc/free, atomic PTE stores and loads into pool frames, the spinlock, cache-line
// ping-pong between two threads, ...). Takes roughly `budget_ms` in total. Call from a normal
// thread (it starts one helper thread for the ping-pong). `progress` (may be empty) gets 0..1.
struct calibrate_options {
  unsigned budget_ms = 2000;  // 100 .. 60000
  std::function<void(double)> progress;
};
// What calibrate measured: the model a run is charged (measured_ns rounded by whole_ns over the
// defaults), the measurements themselves, and the kinds it could not measure, and why.
struct calibration {
  cost_model costs = default_cost_model();
  std::array<double, cost_kind_count> measured_ns{};
  std::vector<std::string> notes;
};
[[nodiscard]] Result<calibration> calibrate(const calibrate_options& options);

}  // namespace ptreclaim::sim
