// dma-storm: a NIC maps and unmaps a receive buffer per packet on every CPU, as the Linux DMA
// API does in strict mode. Each CPU owns a slice of the IOVA space (iova_space / cpus, 2 MiB
// granular when it can be) and a ring of buffers_per_cpu buffers; the IOVA allocator hands out
// addresses in order (a bump pointer that wraps), so buffers march through the slice. Packet k
// (one mutate step) recycles ring slot k mod buffers: it unmaps the buffer the slot held (the
// packet was received) and maps a fresh buffer at the next IOVA (the slot is refilled).
// When the unmapped buffer was the last live one of its 2 MiB block and the allocator has
// moved on, the unmap covers the whole block instead, so the now-empty leaf table is released
// (a lock-free table goes only when one unmap covers its whole range): one table per 2 MiB of
// IOVA, 512 packets with 4K buffers. The domain of CPU c is domain c mod domains.
//
// Lazy DMA (caller.flush = "lazy"): the unmap goes into its own gather and is handed, with the
// buffer's IOVA, to the policy (machine::lazy_unmap: retire_deferred) without any invalidation;
// the refill allocates next-fit from the slice's free buffers (iova_space), so an IOVA comes back
// only after the policy gave it back. A slice with no free buffer drops the packet (counted, as
// a DMA mapping error). Strict callers keep the bump cursor; the buffer counts as unmapped (for
// `exposure`) once the caller's invalidation completed (caller_flushed).
#include <algorithm>
#include <optional>
#include <vector>

#include "sim/engine_internal.hpp"

namespace ptreclaim::sim::detail {
namespace {

class dma_storm final : public workload {
 public:
  explicit dma_storm(machine& m) : m_(m), p_(m.sc.dma_storm), lazy_(m.lazy_dma()) {
    region_ = p_.iova_space_bytes;
    const std::uint64_t per_cpu = region_ / m.cpus;
    blocky_ = per_cpu >= two_mib;
    slice_ = blocky_ ? per_cpu / two_mib * two_mib
                     : std::max(p_.buffer_bytes, per_cpu / p_.buffer_bytes * p_.buffer_bytes);
    cpu_.reserve(m.cpus);
    for (unsigned c = 0; c < m.cpus; ++c) {
      cpu_.emplace_back();
      cpu_state& s = cpu_.back();
      s.base = static_cast<std::uint64_t>(c) * slice_;  // cpus * slice_ <= iova_space (validated)
      s.dom = m.domains[c % m.domains.size()].get();
      s.ring.assign(p_.buffers_per_cpu, ~std::uint64_t{0});
      if (blocky_) s.block_live.assign(slice_ / two_mib, 0);
      s.owed.reserve(std::max<std::uint64_t>(1, m.sc.caller.flush_batch) * p_.packets_per_op);
    }
    space_ = m.make_iova_space(slice_, p_.buffer_bytes);
  }

  domain_slot& begin_op(unsigned cpu) override {
    cpu_state& s = cpu_[cpu];
    s.packets_left = p_.packets_per_op;
    return *s.dom;
  }

  bool mutate(unsigned cpu, pt::gather& g) override {
    cpu_state& s = cpu_[cpu];
    pt::table& t = *s.dom->table;
    const std::size_t slot = s.packet % s.ring.size();
    ++s.packet;
    std::uint64_t trace = s.packet;
    // The slot's old buffer was received: unmap it.
    if (s.ring[slot] != ~std::uint64_t{0}) {
      const std::uint64_t off = s.ring[slot];
      s.ring[slot] = ~std::uint64_t{0};
      std::uint64_t first = s.base + off, bytes = p_.buffer_bytes;
      if (blocky_) {
        const std::uint64_t b = off / two_mib;
        --s.block_live[b];
        if (s.block_live[b] == 0 && s.cursor / two_mib != b) {
          first = s.base + b * two_mib;
          bytes = two_mib;
        }
      }
      const std::uint64_t buffer = s.base + off;
      if (lazy_) {
        s.gu.clear();
        const Status st = t.unmap(first, bytes, s.gu);
        if (!st.ok()) ++s.errors;
        trace = trace * 31 + first + bytes + static_cast<std::uint64_t>(st.code());
        m_.lazy_unmap(*s.dom, s.gu, {buffer, buffer + p_.buffer_bytes - 1});
      } else {
        const Status st = t.unmap(first, bytes, g);
        if (!st.ok()) ++s.errors;
        trace = trace * 31 + first + bytes + static_cast<std::uint64_t>(st.code());
        s.owed.push_back(buffer);
      }
    }
    // Refill the slot at the allocator's next IOVA.
    std::uint64_t off = 0;
    if (lazy_) {
      const std::optional<std::uint64_t> got = space_->alloc(cpu, s.cursor);
      if (!got) {  // every buffer of the slice mapped or still held by the policy
        ++s.errors;
        ++s.exhausted;
        s.trace = trace * 31 + 1;
        return --s.packets_left == 0;
      }
      off = *got;
      m_.iova_allocated(*s.dom, {s.base + off, s.base + off + p_.buffer_bytes - 1});
    } else {
      if (s.cursor + p_.buffer_bytes > slice_) s.cursor = 0;
      off = s.cursor;
      s.cursor += p_.buffer_bytes;
    }
    const std::uint64_t iova = s.base + off;
    const Status st = t.map(iova, iova, p_.buffer_bytes, pt::perm_rw, g);
    trace = trace * 31 + iova + static_cast<std::uint64_t>(st.code());
    if (st.ok()) {
      space_->mark_mapped(iova);
      s.ring[slot] = off;
      if (blocky_) ++s.block_live[off / two_mib];
      s.dom->live.push(iova, p_.buffer_bytes);
    } else {
      ++s.errors;
      const Status undo = t.unmap(iova, p_.buffer_bytes, g);  // whatever part got mapped
      (void)undo;
    }
    s.trace = trace;
    return --s.packets_left == 0;
  }

  // Strict callers: the unmaps of this CPU since its last flush returned now.
  void caller_flushed(unsigned cpu) override {
    cpu_state& s = cpu_[cpu];
    const std::uint64_t now = m_.ex().now_ns();
    for (std::uint64_t buffer : s.owed) {
      space_->mark_unmapped(buffer, now, /*deferred=*/false);
      s.dom->unmapped.push(buffer, p_.buffer_bytes);
    }
    s.owed.clear();
  }

  [[nodiscard]] std::uint64_t last_trace(unsigned cpu) const override { return cpu_[cpu].trace; }
  [[nodiscard]] op_label describe_op(unsigned cpu) const override {
    const cpu_state& s = cpu_[cpu];
    return {"packets", "domain " + std::to_string(s.dom != nullptr ? s.dom->id : 0)};
  }
  [[nodiscard]] std::uint64_t region_bytes() const override { return region_; }
  [[nodiscard]] std::uint64_t errors() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.errors;
    return n;
  }
  [[nodiscard]] std::uint64_t iova_exhausted() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.exhausted;
    return n;
  }

 private:
  struct alignas(64) cpu_state {
    std::uint64_t base = 0;
    domain_slot* dom = nullptr;
    std::vector<std::uint64_t> ring;  // offset in the slice of each slot's buffer, ~0 = none
    std::vector<std::uint32_t> block_live;
    std::uint64_t cursor = 0;
    std::uint64_t packet = 0;
    unsigned packets_left = 0;
    std::uint64_t trace = 0;
    std::uint64_t errors = 0;
    std::uint64_t exhausted = 0;      // lazy: packets dropped for want of a free IOVA
    pt::gather gu;                    // lazy: the unmap's own gather
    std::vector<std::uint64_t> owed;  // strict: buffers unmapped since the caller's last flush
  };

  machine& m_;
  const dma_storm_params& p_;
  const bool lazy_;
  iova_space* space_ = nullptr;
  std::uint64_t region_ = 0;
  std::uint64_t slice_ = 0;
  bool blocky_ = false;
  std::vector<cpu_state> cpu_;
};

}  // namespace

std::unique_ptr<workload> make_dma_storm(machine& m) {
  return std::make_unique<dma_storm>(m);
}

}  // namespace ptreclaim::sim::detail
