// Shared helpers for the runtime tests: executor factories for typed tests and small program
// builders.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

#include "ptreclaim/runtime/deterministic_executor.hpp"
#include "ptreclaim/runtime/threaded_executor.hpp"

namespace ptreclaim::runtime::test {

// Scales iteration counts down under sanitizers (TSan is ~10x slower).
inline unsigned scaled(unsigned n) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  return n / 4 > 0 ? n / 4 : 1;
#else
  return n;
#endif
}

struct deterministic_kind {
  static constexpr bool deterministic = true;
  static std::unique_ptr<executor> make(run_config cfg) {
    return std::make_unique<deterministic_executor>(std::move(cfg));
  }
};
struct threaded_kind {
  static constexpr bool deterministic = false;
  static std::unique_ptr<executor> make(run_config cfg) {
    cfg.real_time_limit_ns = std::uint64_t{20} * 1000 * 1000 * 1000;
    return std::make_unique<threaded_executor>(std::move(cfg));
  }
};
using executor_kinds = ::testing::Types<deterministic_kind, threaded_kind>;

class kind_names {
 public:
  template <class T>
  static std::string GetName(int) {
    return T::deterministic ? "deterministic" : "threaded";
  }
};

template <class Kind>
class executor_fixture : public ::testing::Test {
 protected:
  std::unique_ptr<executor> make(unsigned cpus, std::uint64_t seed = 1) {
    run_config cfg;
    cfg.cpus = cpus;
    cfg.seed = seed;
    return Kind::make(cfg);
  }
  std::unique_ptr<executor> make(run_config cfg) { return Kind::make(std::move(cfg)); }
};

// Where and how a callback ran.
struct sighting {
  unsigned cpu = no_cpu;
  exec_context ctx = exec_context::none;
};

// A program made of a list of step functions run in order, each once; a step returning
// false is repeated after a short sleep (a poll), which both executors honour.
inline program sequence(std::vector<std::function<bool()>> steps) {
  auto state = std::make_shared<std::size_t>(0);
  auto list = std::make_shared<std::vector<std::function<bool()>>>(std::move(steps));
  return [state, list](unsigned) {
    if (*state >= list->size()) return step_result::finished();
    if (!(*list)[*state]()) return step_result::sleep_for(2000);
    ++*state;
    return *state >= list->size() ? step_result::finished() : step_result::yield();
  };
}

}  // namespace ptreclaim::runtime::test
