// The flush-epoch core on the test platform, with its storage, and the tests' shared config:
// what every core test file drives.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/test_platform.hpp"
#include "ptreclaim/core/flush_epoch_core.hpp"

namespace ptreclaim::core::testing {

using frame = test_platform::frame;

inline constexpr iova_range low{0, 0xfff};
inline constexpr iova_range high{0x100000, 0x100fff};

inline core_config small_config() {
  core_config c;
  c.cpus = 4;
  c.max_domains = 4;
  c.frames_per_cpu = 64;
  c.batches_per_cpu = 16;
  c.batch_frames = 1;
  c.watermark = 1000;  // capped at 32
  c.flush_age_ns = 0;  // no age flushes unless a test asks
  return c;
}

// The core on the test platform, with its storage.
template <bool Latency = false>
struct rig {
  explicit rig(const core_config& c, std::uint32_t max_frames = 1 << 16)
      : p(c.max_domains, max_frames), core(p) {
    bytes.resize(flush_epoch_core<test_platform, Latency>::storage_bytes(c) + 64);
    void* at = bytes.data();
    std::size_t space = bytes.size();
    at = std::align(64, space - 64, at, space);
    EXPECT_EQ(core.init(c, at, space), init_status::ok);
  }
  ~rig() { test_platform::set_cpu(0); }

  // CPU `cpu` unlinks n frames of d (range r) and retires them.
  retire_status retire(unsigned cpu, domain_id d, iova_range r, std::uint32_t n = 1) {
    test_platform::set_cpu(cpu);
    std::vector<frame> fs(n);
    for (std::uint32_t i = 0; i < n; ++i)
      fs[i] = next + i;
    p.unlink(d, r, next, n);
    const retire_status s = core.retire(d, r, fs.data(), n);
    if (s == retire_status::refused) p.unretire(next, n);
    next += n;
    return s;
  }
  // Lazy DMA: CPU `cpu` unmaps the IOVA ranges `iovas` of d (releasing n table frames) and
  // retires them together; the batch's range spans them.
  retire_status retire_lazy(unsigned cpu, domain_id d, const std::vector<iova_range>& iovas,
                            std::uint32_t n = 0) {
    test_platform::set_cpu(cpu);
    iova_range need{~iova_t{0}, 0};
    for (const iova_range& v : iovas) {
      p.unmap(d, v);
      need.first = v.first < need.first ? v.first : need.first;
      need.last = v.last > need.last ? v.last : need.last;
    }
    std::vector<frame> fs(n);
    for (std::uint32_t i = 0; i < n; ++i)
      fs[i] = next + i;
    p.unlink(d, need, next, n);
    const retire_status s = core.retire(d, need, fs.data(), n, iovas.data(), iovas.size());
    if (s == retire_status::refused) p.unretire(next, n);
    next += n;
    return s;
  }
  // The caller's side of the contract: close, invalidate r of d, report the epoch (not waited).
  epoch_t caller_flush(unsigned cpu, domain_id d, iova_range r) {
    test_platform::set_cpu(cpu);
    core.before_caller_invalidation(d);
    const epoch_t e = p.invalidate(d, r);
    core.note_caller_invalidation(d, r, e);
    return e;
  }
  // Runs CPU cpu's timer now, armed or not.
  void fire(unsigned cpu) {
    test_platform::set_cpu(cpu);
    p.kill_timer(cpu);
    core.on_timer(cpu);
  }
  // Runs CPU cpu's timer if it is armed and due.
  bool tick(unsigned cpu) {
    test_platform::set_cpu(cpu);
    if (!p.take_due_timer(cpu)) return false;
    core.on_timer(cpu);
    return true;
  }

  std::vector<unsigned char> bytes;
  test_platform p;
  flush_epoch_core<test_platform, Latency> core;
  frame next = 0;
};

}  // namespace ptreclaim::core::testing
