// Assertions in three tiers (as mimalloc does):
//   PTR_ASSERT     always on: cheap invariants whose failure means memory is already unsafe.
//   PTR_DASSERT    debug builds only (NDEBUG off): checks on hot paths.
//   PTR_EXPENSIVE  whole-structure validators (check_invariants() of a table, cache, queue);
//                  compiled in always, run only when expensive_checks_enabled() is true
//                  (tests and the simulator turn it on; PTRECLAIM_EXPENSIVE_CHECKS sets the
//                  default).
// A failed assertion is a programmer error: it prints file:line, the expression and the
// registered context (the seed and the command that replays it), then aborts.
// Operating errors (pool exhausted, queue full, address in use) are Status values instead.
#pragma once

#include <string>

namespace ptreclaim {

// file/line/function come from the macros: clang 14 cannot compile libstdc++'s
// std::source_location, and both compilers must build the project.
[[noreturn]] void assertion_failed(const char* expr, const char* message, const char* file,
                                   unsigned line, const char* function);

// Text printed with every assertion failure: simulators register "seed=N, replay with: ...".
// Thread-safe; the last registration wins.
void set_failure_context(std::string context);
[[nodiscard]] std::string failure_context();

[[nodiscard]] bool expensive_checks_enabled() noexcept;
void set_expensive_checks(bool on) noexcept;

}  // namespace ptreclaim

#define PTR_ASSERT(expr)                                                      \
  do {                                                                        \
    if (!(expr)) [[unlikely]]                                                 \
      ::ptreclaim::assertion_failed(#expr, "", __FILE__, __LINE__, __func__); \
  } while (0)

#define PTR_ASSERT_MSG(expr, msg)                                                \
  do {                                                                           \
    if (!(expr)) [[unlikely]]                                                    \
      ::ptreclaim::assertion_failed(#expr, (msg), __FILE__, __LINE__, __func__); \
  } while (0)

#ifdef NDEBUG
#define PTR_DASSERT(expr) \
  do {                    \
    (void)sizeof(expr);   \
  } while (0)
#else
#define PTR_DASSERT(expr) PTR_ASSERT(expr)
#endif

// Runs `stmt` (typically obj.check_invariants()) only when expensive checks are on.
#define PTR_EXPENSIVE(stmt)                        \
  do {                                             \
    if (::ptreclaim::expensive_checks_enabled()) { \
      stmt;                                        \
    }                                              \
  } while (0)
