// superpage-churn (Xen's case): locked domains with Xen-style coalescing. Each CPU churns its
// own sub-region of every domain (region / cpus, 2 MiB granular; with more CPUs than 2 MiB
// blocks the sub-regions overlap, which the domain lock serialises). One operation, on a
// random domain and a random 2 MiB block of the CPU's sub-region, is one of:
//   fill-2m   map the block page by page with 4K maps, identity-mapped so the 512th map makes
//             the leaf table all-contiguous: it coalesces into a 2M superpage and the leaf
//             table is released (64 maps per step);
//   fill-1g   map a whole 1 GiB block (inside the sub-region) with 2M maps: existing leaf
//             tables under it are released as 2M maps go over them, and the last map
//             coalesces the level-2 table into a 1G superpage (64 maps per step);
//   shatter   unmap partial_unmap_pages 4K pages inside the block: a superpage splits;
//   unmap-2m  unmap the whole block: its leaf table (or a 1G split) is released;
//   single    map or unmap one 4K page (the rest of the probability).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "sim/engine_internal.hpp"

namespace ptreclaim::sim::detail {
namespace {

class superpage_churn final : public workload {
 public:
  explicit superpage_churn(machine& m) : m_(m), p_(m.sc.superpage_churn) {
    region_ = p_.region_bytes;
    const std::uint64_t blocks_total = std::max<std::uint64_t>(1, region_ / two_mib);
    const std::uint64_t per_cpu_blocks = std::max<std::uint64_t>(1, blocks_total / m.cpus);
    sub_ = per_cpu_blocks * two_mib;
    cpu_.reserve(m.cpus);
    for (unsigned c = 0; c < m.cpus; ++c) {
      cpu_.emplace_back(m.fork_rng(0x1000 + c));
      cpu_.back().base = (static_cast<std::uint64_t>(c) * per_cpu_blocks % blocks_total) * two_mib;
    }
  }

  domain_slot& begin_op(unsigned cpu) override {
    cpu_state& s = cpu_[cpu];
    s.dom = m_.domains[s.rng.below(m_.domains.size())].get();
    s.block = s.base + s.rng.below(sub_ / two_mib) * two_mib;
    s.cursor = 0;
    const double x = static_cast<double>(s.rng.below(1u << 24)) / static_cast<double>(1u << 24);
    double acc = p_.superpage_probability;
    if (x < acc)
      s.kind = op::fill_2m;
    else if (x < (acc += p_.gigabyte_probability))
      s.kind = op::fill_1g;
    else if (x < (acc += p_.shatter_probability))
      s.kind = op::shatter;
    else if (x < (acc += p_.unmap_probability))
      s.kind = op::unmap_2m;
    else
      s.kind = op::single;
    if (s.kind == op::fill_1g) {
      // The 1 GiB block holding this 2M block must lie inside the sub-region.
      const std::uint64_t g = s.block & ~(one_gib - 1);
      if (g < s.base || g + one_gib > s.base + sub_)
        s.kind = op::fill_2m;
      else
        s.block = g;
    }
    if (s.kind == op::fill_2m) {
      // Already a superpage (or covered by one): nothing to coalesce; shatter it instead.
      auto t = s.dom->table->lookup(s.block);
      if (t && t->level >= 2) s.kind = op::shatter;
    }
    return *s.dom;
  }

  bool mutate(unsigned cpu, pt::gather& g) override {
    cpu_state& s = cpu_[cpu];
    pt::table& t = *s.dom->table;
    s.trace = (static_cast<std::uint64_t>(s.kind) << 56) ^ (std::uint64_t{s.dom->id} << 40) ^
              s.block ^ s.cursor;
    switch (s.kind) {
      case op::fill_2m:
      case op::fill_1g: {
        const std::uint64_t step = s.kind == op::fill_2m ? page_bytes : two_mib;
        const unsigned level = s.kind == op::fill_2m ? 2 : 3;
        if (s.cursor == 0) {
          // A fill over a block that already is this superpage coalesces nothing.
          auto before = t.lookup(s.block);
          s.was_superpage = before && before->level == level;
        }
        const std::uint64_t end = std::min<std::uint64_t>(s.cursor + chunk, 512);
        for (; s.cursor < end; ++s.cursor) {
          const std::uint64_t iova = s.block + s.cursor * step;
          note(t.map(iova, iova, step, pt::perm_rw, g), s);
        }
        if (s.cursor < 512) return false;
        s.dom->live.push(s.block, 512 * step);
        // Read-only: did this fill coalesce the block (level 2 = 2M, level 3 = 1G)?
        if (auto tr = t.lookup(s.block); tr && tr->level == level && !s.was_superpage)
          ++(level == 2 ? s.coalesced_2m : s.coalesced_1g);
        return true;
      }
      case op::shatter: {
        const std::uint64_t n = std::min<std::uint64_t>(p_.partial_unmap_pages, 511);
        const std::uint64_t off = s.rng.below(512 - n + 1) * page_bytes;
        note(t.unmap(s.block + off, n * page_bytes, g), s);
        return true;
      }
      case op::unmap_2m:
        note(t.unmap(s.block, two_mib, g), s);
        return true;
      case op::single: {
        const std::uint64_t iova = s.block + s.rng.below(512) * page_bytes;
        if (s.rng.below(2) == 0) {
          note(t.map(iova, iova, page_bytes, pt::perm_rw, g), s);
          s.dom->live.push(iova, page_bytes);
        } else {
          note(t.unmap(iova, page_bytes, g), s);
        }
        return true;
      }
    }
    return true;
  }

  [[nodiscard]] std::uint64_t last_trace(unsigned cpu) const override { return cpu_[cpu].trace; }
  [[nodiscard]] op_label describe_op(unsigned cpu) const override {
    static constexpr const char* names[] = {"fill-2m", "fill-1g", "shatter", "unmap-2m", "single"};
    const cpu_state& s = cpu_[cpu];
    char where[96];
    std::snprintf(where, sizeof where, "domain %u, block 0x%llx",
                  s.dom != nullptr ? unsigned{s.dom->id} : 0u,
                  static_cast<unsigned long long>(s.block));
    return {names[static_cast<unsigned>(s.kind)], where};
  }
  [[nodiscard]] std::uint64_t region_bytes() const override { return region_; }
  [[nodiscard]] std::uint64_t errors() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.errors;
    return n;
  }
  [[nodiscard]] std::uint64_t coalesced_2m() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.coalesced_2m;
    return n;
  }
  [[nodiscard]] std::uint64_t coalesced_1g() const override {
    std::uint64_t n = 0;
    for (const auto& s : cpu_)
      n += s.coalesced_1g;
    return n;
  }

 private:
  enum class op : std::uint8_t { fill_2m, fill_1g, shatter, unmap_2m, single };
  static constexpr std::uint64_t chunk = 64;  // maps per step of a fill

  struct alignas(64) cpu_state {
    explicit cpu_state(prng r) : rng(r) {}
    prng rng;
    op kind = op::single;
    domain_slot* dom = nullptr;
    std::uint64_t base = 0;   // the CPU's sub-region
    std::uint64_t block = 0;  // the operation's block
    std::uint64_t cursor = 0;
    std::uint64_t trace = 0;
    std::uint64_t errors = 0;
    std::uint64_t coalesced_2m = 0;  // fills that ended in a 2M superpage
    std::uint64_t coalesced_1g = 0;  // fills that ended in a 1G superpage
    bool was_superpage = false;      // the current fill's block already was its superpage
  };

  static void note(const Status& st, cpu_state& s) {
    // address_in_use (a page another CPU's overlapping sub-region mapped, or a fill over a
    // superpage) is the workload's normal life; other errors (no_memory) are counted.
    s.trace = s.trace * 31 + static_cast<std::uint64_t>(st.code());
    if (!st.ok() && st.code() != errc::address_in_use) ++s.errors;
  }

  machine& m_;
  const superpage_churn_params& p_;
  std::uint64_t region_ = 0;
  std::uint64_t sub_ = 0;
  std::vector<cpu_state> cpu_;
};

}  // namespace

std::unique_ptr<workload> make_superpage_churn(machine& m) {
  return std::make_unique<superpage_churn>(m);
}

}  // namespace ptreclaim::sim::detail
