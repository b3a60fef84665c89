// An I/O page table of one domain, of any format, behind one run-time interface.
//
// Concurrency modes (domain_config::mode):
//   locked     Xen style: every mutation takes the table's mapping lock; coalescing allowed.
//   lock_free  Linux io-pgtable / generic_pt style: callers promise that concurrent mutations
//              touch disjoint IOVA ranges; intermediate tables are installed with
//              compare-and-swap (a lost race frees its fresh, never-linked table); a table is
//              released only when one unmap covers its whole range; no coalescing of populated
//              tables.
// Hardware walks never take a lock: they read entries with atomic loads. Write ordering a
// lock-free walker observes: a new table is fully initialised before the single 64-bit store
// (or CAS) that links it (release); a table is unlinked by one store before it is reported in
// a gather; an entry is never torn (every PTE store is one atomic 64-bit store).
//
// Every mutation fills a gather (gather.hpp); the table never frees a frame that was ever
// linked: it marks it retired and hands it over in the gather.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "ptreclaim/base/status.hpp"
#include "ptreclaim/mem/frame_pool.hpp"
#include "ptreclaim/pt/format.hpp"
#include "ptreclaim/pt/gather.hpp"
#include "ptreclaim/pt/unlink_observer.hpp"

namespace ptreclaim::pt {

enum class format_kind : std::uint8_t { vtd_ss_4, vtd_ss_5, x86_64_4, x86_64_5, amd_v1_4 };
[[nodiscard]] std::string_view format_kind_name(format_kind k) noexcept;
// Parses "vtd-ss-4" etc.; errc::invalid_argument for an unknown name.
[[nodiscard]] Result<format_kind> parse_format_kind(std::string_view name);
[[nodiscard]] const format_desc& describe(format_kind k) noexcept;

enum class concurrency_mode : std::uint8_t { locked, lock_free };

struct domain_config {
  std::uint16_t domain = 0;  // software domain number (owner tag in the frame ledger)
  concurrency_mode mode = concurrency_mode::locked;
  bool coalesce = true;                  // Xen-style superpage coalescing (locked mode only)
  bool refuse_overmap = false;           // map over present tables: address_in_use, not release
  std::uint32_t leaf_levels = 0b1110;    // page sizes allowed (intersected with the format's)
  unlink_observer* on_unlink = nullptr;  // told of every unlinked table frame (checkers)
};

struct translation {
  std::uint64_t phys = 0;  // physical address of the IOVA (page base + offset)
  unsigned level = 1;      // level of the leaf (1 = 4K, 2 = 2M, 3 = 1G)
  std::uint8_t perms = perm_none;
};

struct mapping {
  iova_t iova = 0;
  std::uint64_t phys = 0;
  std::uint64_t size = 0;
  std::uint8_t perms = perm_none;
};

struct table_stats {
  std::uint64_t tables_allocated = 0;       // frames ever allocated for tables (root included)
  std::uint64_t tables_released = 0;        // frames handed out in gathers
  std::uint64_t tables_freed_unlinked = 0;  // fresh tables freed after a lost CAS race
  std::uint64_t coalesced = 0;              // tables replaced by a superpage
  std::uint64_t split = 0;                  // superpages split into tables
  std::uint64_t install_races_lost = 0;
};

class table {
 public:
  virtual ~table() = default;

  // Maps [iova, iova+size) to [phys, phys+size) with the largest page sizes that alignment, the
  // format and the domain allow. iova, phys and size must be 4 KiB aligned, size > 0, and the
  // range inside the format's address space (else invalid_argument / out_of_range).
  // Mapping over an existing leaf: address_in_use. Over a present table where a superpage
  // fits: the subtree is released into `g` (children first), or address_in_use when
  // refuse_overmap. no_memory: nothing is left half-built that the table cannot describe; the
  // part already mapped stays mapped and is reported in `g`. The range is mapped in ascending
  // order; any error stops there, and what was mapped before it stays mapped.
  // Filling empty entries needs no invalidation (an IOMMU never caches a not-present entry),
  // so a map that only fills empty entries leaves the gather's range empty; overmapping,
  // coalescing and splitting widen it and set nonleaf_changed. The gather's mapped range
  // records the request for units in caching mode, which may cache not-present entries.
  // Context: any thread; locked mode takes the mapping lock (spins), lock-free never waits.
  [[nodiscard]] virtual Status map(iova_t iova, std::uint64_t phys, std::uint64_t size,
                                   std::uint8_t perms, gather& g) = 0;
  // Unmaps every page in [iova, iova+size). Superpages partly inside are split (may fail with
  // no_memory, leaving the table consistent). Unmapping nothing is not an error.
  [[nodiscard]] virtual Status unmap(iova_t iova, std::uint64_t size, gather& g) = 0;
  [[nodiscard]] virtual std::optional<translation> lookup(iova_t iova) const = 0;
  // Visits every leaf in IOVA order (software view: contiguity markers masked).
  virtual void for_each_mapping(const std::function<void(const mapping&)>& visit) const = 0;
  // Releases every table including the root into `g` (domain teardown). The table is empty
  // and unusable afterwards.
  virtual void destroy(gather& g) = 0;

  [[nodiscard]] virtual mem::frame_id root() const noexcept = 0;
  [[nodiscard]] virtual const format_desc& format() const noexcept = 0;
  [[nodiscard]] virtual const domain_config& config() const noexcept = 0;
  [[nodiscard]] virtual table_stats stats() const noexcept = 0;
  // Tier-3 validator: markers consistent, no empty table linked, no all-contiguous table left
  // uncoalesced when coalescing is on, every linked frame owned by this domain at its level.
  // The last three hold in locked mode only (lock-free mode keeps no markers and may leave
  // empty tables linked until an unmap covers their whole range). Lock-free mode: call it only
  // while no mutation runs.
  [[nodiscard]] virtual Status check_invariants() const = 0;
  // Frames currently linked (root included).
  [[nodiscard]] virtual std::uint64_t linked_tables() const = 0;
};

// Builds a table of `kind` (allocates the root: no_memory possible).
[[nodiscard]] Result<std::unique_ptr<table>> make_table(format_kind kind, const domain_config& cfg,
                                                        mem::frame_pool& pool);

}  // namespace ptreclaim::pt
