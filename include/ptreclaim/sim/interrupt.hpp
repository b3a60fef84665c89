// Stopping long work cleanly: a stop flag that SIGINT / SIGTERM (or a test) sets, read by the
// engine and the sweeps at safe points, so an interrupted command still writes what finished.
//   - the engine reads it between two operations of a CPU: the workload stops early, the run
//     drains and tears down as usual (every invariant is still checked on what ran) and the
//     result says complete = false;
//   - compare, scale and campaigns read it between runs and return the runs done so far.
// The first signal only sets the flag (and says so on stderr); a second one ends the process at
// once with the conventional status, removing the temporary file of a write in progress.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

namespace ptreclaim::sim {

class stop_flag {
 public:
  // Async-signal-safe. `signal_number` is SIGINT or SIGTERM, or 0 for a request from code.
  void request(int signal_number = 0) noexcept {
    int expected = none;
    state_.compare_exchange_strong(expected, signal_number, std::memory_order_relaxed);
  }
  [[nodiscard]] bool requested() const noexcept {
    return state_.load(std::memory_order_relaxed) != none;
  }
  // The signal that asked (0 when code asked); meaningful once requested().
  [[nodiscard]] int signal_number() const noexcept {
    const int s = state_.load(std::memory_order_relaxed);
    return s == none ? 0 : s;
  }
  void clear() noexcept { state_.store(none, std::memory_order_relaxed); }

 private:
  static constexpr int none = -1;
  std::atomic<int> state_{none};  // relaxed: a request is a hint read again at every safe point
};

// The flag the signal handlers set.
[[nodiscard]] stop_flag& process_stop_flag() noexcept;

// Installs SIGINT and SIGTERM handlers: the first signal requests process_stop_flag() and writes
// one line to stderr; any further one removes the temporary file of an atomic write in progress
// (ptreclaim/report/output.hpp) and calls _exit(exit_status_for_signal(sig)). Idempotent.
void install_stop_signals();

// 128 + signal: 130 for SIGINT, 143 for SIGTERM.
[[nodiscard]] int exit_status_for_signal(int signal_number) noexcept;
// "SIGINT", "SIGTERM"; "a stop request" for 0.
[[nodiscard]] std::string signal_label(int signal_number);

namespace detail {
// The temporary file an atomic write is filling (nullptr: none). The handler of a second signal
// unlinks it, so an immediate exit leaves no stray file behind. One write at a time.
void set_temp_file_in_progress(const char* path) noexcept;
}  // namespace detail

}  // namespace ptreclaim::sim
