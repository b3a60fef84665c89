// SIGINT / SIGTERM handling for long commands (interrupt.hpp).
#include "ptreclaim/sim/interrupt.hpp"

#include <unistd.h>

#include <array>
#include <csignal>
#include <cstring>

namespace ptreclaim::sim {
namespace {

// The temporary file of the write in progress, copied into static storage because a signal
// handler may read it at any moment: `temp_valid` is cleared before the buffer changes.
std::array<char, 4096> temp_path{};
std::atomic<bool> temp_valid{false};

// Constant-initialised, so the handler never runs a static's first-use initialisation.
constinit stop_flag the_flag;

void write_stderr(const char* text) noexcept {
  const std::size_t n = std::strlen(text);
  // Nothing useful can be done if stderr is gone.
  [[maybe_unused]] const ssize_t w = ::write(STDERR_FILENO, text, n);
}

extern "C" void on_stop_signal(int sig) {
  stop_flag& flag = the_flag;
  if (!flag.requested()) {
    flag.request(sig);
    write_stderr(sig == SIGTERM ? "\nptreclaim: SIGTERM: stopping at the next safe point\n"
                                : "\nptreclaim: interrupted: stopping at the next safe point and "
                                  "writing what finished (Ctrl-C again to quit at once)\n");
    return;
  }
  if (temp_valid.load(std::memory_order_acquire)) ::unlink(temp_path.data());
  write_stderr("\nptreclaim: stopped at once\n");
  ::_exit(exit_status_for_signal(sig));
}

}  // namespace

stop_flag& process_stop_flag() noexcept {
  return the_flag;
}

void install_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in flight carry on; the flag is polled
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int exit_status_for_signal(int signal_number) noexcept {
  return 128 + signal_number;
}

std::string signal_label(int signal_number) {
  switch (signal_number) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case 0:
      return "a stop request";
    default:
      return "signal " + std::to_string(signal_number);
  }
}

namespace detail {
void set_temp_file_in_progress(const char* path) noexcept {
  temp_valid.store(false, std::memory_order_release);
  if (path == nullptr || std::strlen(path) >= temp_path.size()) return;
  std::memcpy(temp_path.data(), path, std::strlen(path) + 1);
  temp_valid.store(true, std::memory_order_release);
}
}  // namespace detail

}  // namespace ptreclaim::sim
