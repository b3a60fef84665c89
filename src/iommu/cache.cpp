#include "ptreclaim/iommu/cache.hpp"

#include <algorithm>

namespace ptreclaim::iommu {
namespace {

std::uint64_t key_hash(hw_domain_id did, pasid_t pasid, std::uint64_t page,
                       unsigned level) noexcept {
  return page * 0x9e3779b97f4a7c15ULL ^ (std::uint64_t{did} << 48) ^ (std::uint64_t{level} << 40) ^
         (std::uint64_t{pasid} << 20);
}

// The same (did, PASID, level, page) key.
bool same_key(const iotlb_entry& a, const iotlb_entry& b) noexcept {
  return a.did == b.did && a.pasid == b.pasid && a.level == b.level && a.vpn == b.vpn;
}
bool same_key(const psc_entry& a, const psc_entry& b) noexcept {
  return a.did == b.did && a.pasid == b.pasid && a.prefix == b.prefix;
}

bool overlaps(iova_t a_first, iova_t a_last, iova_t b_first, iova_t b_last) noexcept {
  return a_first <= b_last && b_first <= a_last;
}

cache_config level_config(cache_config c, unsigned level) {
  c.seed = c.seed * 31 + level;  // independent random streams per level
  return c;
}

}  // namespace

std::optional<iotlb_entry> iotlb::lookup(hw_domain_id did, iova_t iova, std::uint32_t levels,
                                         pasid_t pasid) noexcept {
  for (unsigned l = 1; l <= limits::max_levels; ++l) {
    if ((levels & (1u << l)) == 0) continue;
    iotlb_entry key;
    key.did = did;
    key.pasid = pasid;
    key.level = static_cast<std::uint8_t>(l);
    key.vpn = iova >> pt::level_shift(l);
    const iotlb_entry* e = cache_.find(key_hash(did, pasid, key.vpn, l),
                                       [&](const iotlb_entry& x) { return same_key(x, key); });
    if (e != nullptr) return *e;
  }
  return std::nullopt;
}

void iotlb::insert(const iotlb_entry& e) noexcept {
  cache_.insert(key_hash(e.did, e.pasid, e.vpn, e.level), e,
                [&](const iotlb_entry& x) { return same_key(x, e); });
}

unsigned iotlb::invalidate_all() noexcept {
  return cache_.drop_if([](const iotlb_entry&) { return true; });
}

unsigned iotlb::invalidate_domain(hw_domain_id did) noexcept {
  return cache_.drop_if([&](const iotlb_entry& e) { return e.did == did; });
}

unsigned iotlb::invalidate_range(hw_domain_id did, iova_t first, iova_t last,
                                 pasid_t pasid) noexcept {
  return cache_.drop_if([&](const iotlb_entry& e) {
    return e.did == did && e.pasid == pasid && overlaps(e.first(), e.last(), first, last);
  });
}

unsigned iotlb::invalidate_page_selective(hw_domain_id did, iova_t first, iova_t last, unsigned am,
                                          pasid_t pasid) noexcept {
  return cache_.drop_if([&](iotlb_entry& e) {
    if (e.did != did || e.pasid != pasid || !overlaps(e.first(), e.last(), first, last))
      return false;
    if (e.negative || am >= page_order(e.level)) return true;
    e.kept_first = std::min(e.kept_first, std::max(first, e.first()));
    e.kept_last = std::max(e.kept_last, std::min(last, e.last()));
    e.kept_am = static_cast<std::uint8_t>(am);
    return false;
  });
}

Status iotlb::check_invariants() const {
  Status s = cache_.check(
      [](const iotlb_entry& e) { return key_hash(e.did, e.pasid, e.vpn, e.level); },
      [](const iotlb_entry& a, const iotlb_entry& b) { return same_key(a, b); }, "iotlb");
  if (!s.ok()) return s;
  bool bad = false;
  cache_.for_each([&](const iotlb_entry& e) {
    if (e.level < 1 || e.level > limits::max_levels) bad = true;
    if (!e.negative && (e.phys_base & ((std::uint64_t{1} << pt::level_shift(e.level)) - 1)) != 0)
      bad = true;
    if (!e.negative && (e.perms & pt::perm_rw) == 0) bad = true;
    // Only a superpage survives a PSI that overlaps it, and only inside itself.
    if (e.kept_first <= e.kept_last && (e.level < 2 || e.negative || e.kept_first < e.first() ||
                                        e.kept_last > e.last() || e.kept_am >= page_order(e.level)))
      bad = true;
  });
  if (bad)
    return {errc::invalid_argument,
            "iotlb: entry with a bad level, unaligned page, no permission or a bad kept range"};
  return {};
}

psc::psc(const cache_config& c)
    : levels_{detail::set_assoc<psc_entry>(level_config(c, 0)),
              detail::set_assoc<psc_entry>(level_config(c, 1)),
              detail::set_assoc<psc_entry>(level_config(c, 2)),
              detail::set_assoc<psc_entry>(level_config(c, 3)),
              detail::set_assoc<psc_entry>(level_config(c, 4)),
              detail::set_assoc<psc_entry>(level_config(c, 5))} {
  static_assert(limits::max_levels == 5, "psc::levels_ initialiser lists one cache per level");
}

std::optional<psc::hit> psc::lookup_deepest(hw_domain_id did, iova_t iova, unsigned root_level,
                                            pasid_t pasid) noexcept {
  for (unsigned l = 2; l <= root_level && l <= limits::max_levels; ++l) {
    psc_entry key;
    key.did = did;
    key.pasid = pasid;
    key.prefix = iova >> pt::level_shift(l);
    const psc_entry* e = levels_[l].find(key_hash(did, pasid, key.prefix, l),
                                         [&](const psc_entry& x) { return same_key(x, key); });
    if (e != nullptr) return hit{l, *e};
  }
  return std::nullopt;
}

void psc::insert(unsigned level, const psc_entry& e) noexcept {
  PTR_DASSERT(level >= 2 && level <= limits::max_levels);
  levels_[level].insert(key_hash(e.did, e.pasid, e.prefix, level), e,
                        [&](const psc_entry& x) { return same_key(x, e); });
}

unsigned psc::invalidate_all() noexcept {
  unsigned n = 0;
  for (unsigned l = 2; l <= limits::max_levels; ++l)
    n += levels_[l].drop_if([](const psc_entry&) { return true; });
  return n;
}

unsigned psc::invalidate_domain(hw_domain_id did) noexcept {
  unsigned n = 0;
  for (unsigned l = 2; l <= limits::max_levels; ++l)
    n += levels_[l].drop_if([&](const psc_entry& e) { return e.did == did; });
  return n;
}

unsigned psc::invalidate_range(hw_domain_id did, iova_t first, iova_t last,
                               pasid_t pasid) noexcept {
  unsigned n = 0;
  for (unsigned l = 2; l <= limits::max_levels; ++l) {
    const unsigned shift = pt::level_shift(l);
    n += levels_[l].drop_if([&](const psc_entry& e) {
      if (e.did != did || e.pasid != pasid) return false;
      const iova_t lo = shift >= 64 ? 0 : e.prefix << shift;
      const iova_t hi = lo + ((std::uint64_t{1} << shift) - 1);
      return overlaps(lo, hi, first, last);
    });
  }
  return n;
}

std::size_t psc::size() const noexcept {
  std::size_t n = 0;
  for (unsigned l = 2; l <= limits::max_levels; ++l)
    n += levels_[l].size();
  return n;
}

Status psc::check_invariants() const {
  for (unsigned l = 2; l <= limits::max_levels; ++l) {
    Status s = levels_[l].check(
        [l](const psc_entry& e) { return key_hash(e.did, e.pasid, e.prefix, l); },
        [](const psc_entry& a, const psc_entry& b) { return same_key(a, b); }, "psc");
    if (!s.ok()) return s;
    bool bad = false;
    levels_[l].for_each([&](const psc_entry& e) {
      if (!e.next.valid()) bad = true;
    });
    if (bad) return {errc::invalid_argument, "psc: entry without a next-level frame"};
  }
  if (levels_[0].size() != 0 || levels_[1].size() != 0)
    return {errc::invalid_argument, "psc: entries at level 0 or 1"};
  return {};
}

}  // namespace ptreclaim::iommu
