#include "ptreclaim/base/platform.hpp"

#include <chrono>
#include <thread>

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim {
namespace {

thread_local unsigned tls_cpu = 0;

std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

real_platform::real_platform(unsigned cpus) : cpus_(cpus), start_ns_(steady_ns()) {
  PTR_ASSERT(cpus >= 1);
}

std::uint64_t real_platform::now_ns() noexcept {
  return steady_ns() - start_ns_;
}

unsigned real_platform::current_cpu() const noexcept {
  return tls_cpu < cpus_ ? tls_cpu : 0;
}

void real_platform::set_current_cpu(unsigned cpu) noexcept {
  PTR_ASSERT(cpu < cpus_);
  tls_cpu = cpu;
}

bool real_platform::wait_until(const std::function<bool()>& done, std::uint64_t timeout_ns) {
  return spin_until(done, timeout_ns);
}

bool platform::spin_until(const std::function<bool()>& done, std::uint64_t timeout_ns) {
  const std::uint64_t now = now_ns();
  const std::uint64_t deadline = timeout_ns > ~now ? ~std::uint64_t{0} : now + timeout_ns;
  unsigned spins = 0;
  while (!done()) {
    if (now_ns() > deadline) return done();
    spin_round(spins++, 64);
  }
  return true;
}

real_platform& default_platform() {
  static real_platform p(256);
  return p;
}

}  // namespace ptreclaim
