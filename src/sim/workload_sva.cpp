// sva-kernel (Linux's case): one shared kernel address space, lock-free, vmalloc/vfree churn.
// Each CPU allocates from its own slice of the vmalloc area (region / cpus, 2 MiB granular),
// next-fit in 2 MiB granules, so every allocation owns whole PTE tables and callers never
// overlap (the lock-free mode's promise). One operation is one of:
//   vmalloc  size log-uniform in [vmalloc_min, vmalloc_max] (4K multiples); map it with 4K
//            pages (the physical side is offset by 4 KiB so no superpage can form, as
//            vmalloc maps base pages) at the start of ceil(size / 2M) free granules;
//   vfree    a random live allocation of the CPU: unmap all its granules, which releases
//            their PTE tables (a lock-free table goes when one unmap covers its whole range);
//            when that leaves a 1 GiB block of the CPU's own slice without live allocations,
//            the block is unmapped too (a lazy vmap purge), which releases its PMD table.
// vfree is chosen when the CPU holds live_per_cpu allocations, else with free_probability.
#include <algorithm>
#include <cmath>
#include <vector>

#include "sim/engine_internal.hpp"

namespace ptreclaim::sim::detail {
namespace {

class sva_kernel final : public workload {
 public:
  explicit sva_kernel(machine& m) : m_(m), p_(m.sc.sva_kernel) {
    region_ = p_.region_bytes;
    const std::uint64_t granules_total = std::max<std::uint64_t>(1, region_ / two_mib);
    granules_ = std::max<std::uint64_t>(1, granules_total / m.cpus);
    cpu_.reserve(m.cpus);
    for (unsigned c = 0; c < m.cpus; ++c) {
      cpu_.emplace_back(m.fork_rng(0x1000 + c));
      cpu_state& s = cpu_.back();
      s.base = (static_cast<std::uint64_t>(c) * granules_ % granules_total) * two_mib;
      s.used.assign(granules_, 0);
      const std::uint64_t first_g = s.base / one_gib,
                          last_g = (s.base + granules_ * two_mib - 1) / one_gib;
      s.block_live.assign(last_g - first_g + 1, 0);
      s.block_dirty.assign(last_g - first_g + 1, 0);
      s.first_block = first_g;
    }
    min_pages_ = std::max<std::uint64_t>(1, p_.vmalloc_min_bytes / page_bytes);
    max_pages_ = std::max<std::uint64_t>(
        min_pages_, std::min(p_.vmalloc_max_bytes, granules_ * two_mib) / page_bytes);
  }

  domain_slot& begin_op(unsigned /*cpu*/) override { return *m_.domains.front(); }

  bool mutate(unsigned cpu, pt::gather& g) override {
    cpu_state& s = cpu_[cpu];
    bool do_free = false;
    if (!s.live.empty()) {
      do_free =
          s.live.size() >= p_.live_per_cpu ||
          s.rng.below(1u << 20) < static_cast<std::uint64_t>(p_.free_probability * (1u << 20));
    }
    if (!do_free && !vmalloc(s, g)) do_free = !s.live.empty();
    s.freeing = do_free;
    if (do_free) vfree(s, g);
    return true;
  }
  [[nodiscard]] op_label describe_op(unsigned cpu) const override {
    return {cpu_[cpu].freeing ? "vfree" : "vmalloc", "kernel address space"};
  }

  [[nodiscard]] std::uint64_t last_trace(unsigned cpu) const override { return cpu_[cpu].trace; }
  [[nodiscard]] std::uint64_t region_bytes() const override { return region_; }
  [[nodiscard]] std::uint64_t errors() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.errors;
    return n;
  }

 private:
  struct alloc {
    std::uint64_t granule = 0;  // first granule (index in the slice)
    std::uint64_t granules = 0;
    std::uint64_t bytes = 0;
  };
  struct alignas(64) cpu_state {
    explicit cpu_state(prng r) : rng(r) {}
    prng rng;
    std::uint64_t base = 0;
    std::vector<std::uint8_t> used;  // per granule
    std::uint64_t cursor = 0;        // next-fit start
    std::vector<alloc> live;
    std::uint64_t first_block = 0;  // 1 GiB block number of the slice's start
    std::vector<std::uint32_t> block_live;
    std::vector<std::uint8_t> block_dirty;
    std::uint64_t trace = 0;
    std::uint64_t errors = 0;
    bool freeing = false;  // the last operation was a vfree (describe_op)
  };

  [[nodiscard]] std::uint64_t log_uniform_pages(prng& rng) const {
    if (max_pages_ == min_pages_) return min_pages_;
    const double lo = std::log(static_cast<double>(min_pages_));
    const double hi = std::log(static_cast<double>(max_pages_) + 1.0);
    const double u = static_cast<double>(rng.below(1u << 24)) / static_cast<double>(1u << 24);
    const auto pages = static_cast<std::uint64_t>(std::exp(lo + u * (hi - lo)));
    return std::clamp(pages, min_pages_, max_pages_);
  }

  bool vmalloc(cpu_state& s, pt::gather& g) {
    const std::uint64_t pages = log_uniform_pages(s.rng);
    const std::uint64_t bytes = pages * page_bytes;
    const std::uint64_t need = (bytes + two_mib - 1) / two_mib;
    // Next-fit: the first run of `need` free granules from the cursor, wrapping once.
    for (std::uint64_t tried = 0; tried < granules_; ++tried) {
      const std::uint64_t start = (s.cursor + tried) % granules_;
      if (start + need > granules_) continue;
      bool ok = true;
      for (std::uint64_t k = 0; k < need && ok; ++k)
        ok = s.used[start + k] == 0;
      if (!ok) continue;
      const std::uint64_t iova = s.base + start * two_mib;
      const Status st =
          m_.domains.front()->table->map(iova, iova + page_bytes, bytes, pt::perm_rw, g);
      s.trace = (iova << 1) ^ bytes ^ static_cast<std::uint64_t>(st.code());
      if (!st.ok()) {
        ++s.errors;
        // A no_memory map leaves what it mapped reported in g; undo it so nothing leaks.
        const Status undo = m_.domains.front()->table->unmap(iova, need * two_mib, g);
        (void)undo;
        return true;
      }
      for (std::uint64_t k = 0; k < need; ++k)
        s.used[start + k] = 1;
      s.live.push_back({start, need, bytes});
      const std::uint64_t b = block_of(s, start);
      ++s.block_live[b];
      s.block_dirty[b] = 1;
      if (need > 1) {
        const std::uint64_t b2 = block_of(s, start + need - 1);
        if (b2 != b) {
          ++s.block_live[b2];
          s.block_dirty[b2] = 1;
        }
      }
      s.cursor = (start + need) % granules_;
      m_.domains.front()->live.push(iova, bytes);
      return true;
    }
    return false;
  }

  void vfree(cpu_state& s, pt::gather& g) {
    const std::size_t i = s.rng.below(s.live.size());
    const alloc a = s.live[i];
    s.live[i] = s.live.back();
    s.live.pop_back();
    const std::uint64_t iova = s.base + a.granule * two_mib;
    pt::table& t = *m_.domains.front()->table;
    const Status st = t.unmap(iova, a.granules * two_mib, g);
    s.trace = (iova << 1) ^ (a.granules << 50) ^ 1 ^ static_cast<std::uint64_t>(st.code());
    if (!st.ok()) ++s.errors;
    for (std::uint64_t k = 0; k < a.granules; ++k)
      s.used[a.granule + k] = 0;
    std::uint64_t blocks[2] = {block_of(s, a.granule), block_of(s, a.granule + a.granules - 1)};
    const unsigned nb = blocks[1] != blocks[0] ? 2 : 1;
    for (unsigned k = 0; k < nb; ++k) {
      const std::uint64_t b = blocks[k];
      --s.block_live[b];
      const std::uint64_t block_iova = (s.first_block + b) * one_gib;
      const bool inside =
          block_iova >= s.base && block_iova + one_gib <= s.base + granules_ * two_mib;
      if (s.block_live[b] == 0 && s.block_dirty[b] != 0 && inside) {
        const Status ps = t.unmap(block_iova, one_gib, g);  // purge: the PMD table goes
        if (!ps.ok()) ++s.errors;
        s.block_dirty[b] = 0;
        s.trace ^= block_iova;
      }
    }
  }

  [[nodiscard]] std::uint64_t block_of(const cpu_state& s, std::uint64_t granule) const {
    return (s.base + granule * two_mib) / one_gib - s.first_block;
  }

  machine& m_;
  const sva_kernel_params& p_;
  std::uint64_t region_ = 0;
  std::uint64_t granules_ = 0;  // per CPU
  std::uint64_t min_pages_ = 1, max_pages_ = 1;
  std::vector<cpu_state> cpu_;
};

}  // namespace

std::unique_ptr<workload> make_sva_kernel(machine& m) {
  return std::make_unique<sva_kernel>(m);
}

}  // namespace ptreclaim::sim::detail
