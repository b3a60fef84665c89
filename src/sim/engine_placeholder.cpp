// TEMPORARY: lets the tool link before the engine exists. The engine engineer deletes this file
// (and its line in src/sim/CMakeLists.txt) and implements run() from engine.hpp.
#include "ptreclaim/sim/engine.hpp"

namespace ptreclaim::sim {

Result<run_result> run(const scenario& /*s*/, const run_options& /*options*/) {
  return Status(errc::not_supported, "engine not built yet");
}

}  // namespace ptreclaim::sim
