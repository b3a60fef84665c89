#include "ptreclaim/base/assert.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace ptreclaim {
namespace {

std::mutex& context_mutex() {
  static std::mutex m;
  return m;
}
std::string& context_text() {
  static std::string s;
  return s;
}
#ifdef PTRECLAIM_EXPENSIVE_DEFAULT
constexpr bool expensive_default = true;
#else
constexpr bool expensive_default = false;
#endif
std::atomic<bool> expensive{expensive_default};

}  // namespace

void assertion_failed(const char* expr, const char* message, const char* file, unsigned line,
                      const char* function) {
  std::string ctx = failure_context();
  std::fprintf(stderr, "ptreclaim: assertion failed at %s:%u in %s: %s%s%s\n", file, line, function,
               expr, (message != nullptr && *message != '\0') ? " -- " : "",
               message != nullptr ? message : "");
  if (!ctx.empty()) std::fprintf(stderr, "ptreclaim: context: %s\n", ctx.c_str());
  std::fflush(stderr);
  std::abort();
}

void set_failure_context(std::string context) {
  std::lock_guard g(context_mutex());
  context_text() = std::move(context);
}

std::string failure_context() {
  std::lock_guard g(context_mutex());
  return context_text();
}

bool expensive_checks_enabled() noexcept {
  return expensive.load(std::memory_order_relaxed);
}
void set_expensive_checks(bool on) noexcept {
  expensive.store(on, std::memory_order_relaxed);
}

}  // namespace ptreclaim
