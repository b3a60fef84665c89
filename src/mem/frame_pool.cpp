#include "ptreclaim/mem/frame_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <sstream>

#include "ptreclaim/base/limits.hpp"
#include "ptreclaim/base/prng.hpp"

namespace ptreclaim::mem {

const char* frame_state_name(frame_state s) noexcept {
  switch (s) {
    case frame_state::free:
      return "free";
    case frame_state::page_table:
      return "page-table";
    case frame_state::retired:
      return "retired";
    case frame_state::data:
      return "data";
  }
  return "?";
}

frame_pool::frame_pool(pool_config config, platform& plat)
    : platform_(&plat), config_(config), capacity_(config.capacity_frames), depot_lock_(plat) {
  PTR_ASSERT_MSG(capacity_ >= 1 && capacity_ <= limits::max_frames,
                 "pool capacity must be 1..limits::max_frames frames");
  PTR_ASSERT_MSG(config_.caches >= 1 && config_.caches <= limits::max_pool_caches,
                 "pool caches must be 1..limits::max_pool_caches");
  PTR_ASSERT_MSG(config_.cache_frames >= 2 && config_.cache_frames <= 4096,
                 "cache_frames must be 2..4096");
  const std::size_t bytes = std::size_t{capacity_} * sizeof(frame_words);
  void* pages = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (pages == MAP_FAILED) throw std::bad_alloc();
  // Fresh anonymous pages read as zero, which is the representation of a zeroed
  // std::atomic<std::uint64_t>: the frames start out as value-initialised ones would.
  memory_ = std::unique_ptr<frame_words[], unmap_pages>(static_cast<frame_words*>(pages),
                                                        unmap_pages{bytes});
  meta_ = std::make_unique<frame_meta[]>(capacity_);
  caches_.reserve(config_.caches);
  for (unsigned i = 0; i < config_.caches; ++i) {
    caches_.push_back(std::make_unique<cache>(plat));
    caches_.back()->frames.reserve(config_.cache_frames);
    caches_.back()->lock.name("frame pool: a CPU's cache lock");
  }
  depot_lock_.name("frame pool: depot lock");
  // The depot is a stack; fill it so that low frame numbers come out first (deterministic).
  depot_.reserve(capacity_);
  for (std::uint32_t f = capacity_; f-- > 0;)
    depot_.push_back(f);
}

frame_pool::~frame_pool() = default;

void frame_pool::unmap_pages::operator()(frame_words* p) const noexcept {
  if (p != nullptr) ::munmap(p, bytes);
}

std::atomic<std::uint64_t>* frame_pool::words(frame_id f) noexcept {
  PTR_DASSERT(contains(f));
  return memory_[f.value].w;
}
const std::atomic<std::uint64_t>* frame_pool::words(frame_id f) const noexcept {
  PTR_DASSERT(contains(f));
  return memory_[f.value].w;
}
frame_meta& frame_pool::meta(frame_id f) noexcept {
  PTR_ASSERT_MSG(contains(f), "frame id out of range");
  return meta_[f.value];
}
const frame_meta& frame_pool::meta(frame_id f) const noexcept {
  PTR_ASSERT_MSG(contains(f), "frame id out of range");
  return meta_[f.value];
}

// The free lists are the reservation: a frame is taken from the CPU's cache (refilled from the
// depot), else from another CPU's cache, holding one lock at a time (so two stealing CPUs cannot
// deadlock). Only when that finds nothing does take_frame_exhausted() look again with every
// lock held, where an empty result means no list held a frame at that instant.
bool frame_pool::take_frame(std::uint32_t& out) {
  cache& c = *caches_[platform_->current_cpu() % caches_.size()];
  {
    std::lock_guard g(c.lock);
    if (c.frames.empty()) {
      // Refill half a cache from the depot so alternating alloc/free does not ping-pong.
      std::lock_guard dg(depot_lock_);
      const std::size_t n = std::min<std::size_t>(depot_.size(), config_.cache_frames / 2);
      for (std::size_t i = 0; i < n; ++i) {
        c.frames.push_back(depot_.back());
        depot_.pop_back();
      }
      // Keep the lowest frame number on top so allocation order is easy to read in traces.
      std::reverse(c.frames.begin(), c.frames.end());
      note_out_of_depot();
    }
    if (!c.frames.empty()) {
      out = c.frames.back();
      c.frames.pop_back();
      bump(c.allocations);
      return true;
    }
  }
  // The depot is empty: steal from another CPU's cache.
  for (auto& other : caches_) {
    if (other.get() == &c) continue;
    std::lock_guard og(other->lock);
    if (!other->frames.empty()) {
      out = other->frames.back();
      other->frames.pop_back();
      bump(other->allocations);
      return true;
    }
  }
  return take_frame_exhausted(c, out);
}

// A frame may have moved behind the scan (freed or spilled into a list already visited): look
// once more with every cache lock (in index order) and then the depot's held, so no frame moves
// while the lists are read. No deadlock: every other path holds one cache lock, then perhaps the
// depot's.
bool frame_pool::take_frame_exhausted(cache& mine, std::uint32_t& out) {
  for (auto& k : caches_)
    k->lock.lock();
  depot_lock_.lock();
  bool found = false;
  if (!depot_.empty()) {
    out = depot_.back();
    depot_.pop_back();
    note_out_of_depot();
    bump(mine.allocations);
    found = true;
  }
  for (std::size_t i = 0; i < caches_.size() && !found; ++i) {
    cache& k = *caches_[i];
    if (k.frames.empty()) continue;
    out = k.frames.back();
    k.frames.pop_back();
    bump(k.allocations);
    found = true;
  }
  depot_lock_.unlock();
  for (std::size_t i = caches_.size(); i-- > 0;)
    caches_[i]->lock.unlock();
  return found;
}

// Under the depot lock, after the depot shrank (the only time frames out of it can grow).
void frame_pool::note_out_of_depot() noexcept {
  const auto out = static_cast<std::uint32_t>(capacity_ - depot_.size());
  if (out > peak_.load(std::memory_order_relaxed)) peak_.store(out, std::memory_order_relaxed);
}

void frame_pool::give_frame(std::uint32_t f) {
  cache& c = *caches_[platform_->current_cpu() % caches_.size()];
  std::lock_guard g(c.lock);
  if (c.frames.size() >= config_.cache_frames) {
    std::lock_guard dg(depot_lock_);
    const std::size_t spill = config_.cache_frames / 2;
    for (std::size_t i = 0; i < spill; ++i) {
      depot_.push_back(c.frames.back());
      c.frames.pop_back();
    }
  }
  c.frames.push_back(f);
  bump(c.frees);
}

Result<frame_id> frame_pool::alloc(frame_ident owner) {
  if (std::uint64_t n = fail_countdown_.load(std::memory_order_relaxed); n != 0) {
    // Injected failure: the n-th allocation from now fails (once).
    if (fail_countdown_.fetch_sub(1, std::memory_order_relaxed) == 1) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      return Status(errc::no_memory, "injected allocation failure");
    }
  }
  std::uint32_t raw = 0;
  if (!take_frame(raw)) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    return Status(errc::no_memory,
                  "frame pool exhausted (capacity " + std::to_string(capacity_) + " frames)");
  }
  const frame_id f{raw};
  frame_meta& m = meta_[raw];
  const frame_ident old = m.load_ident(std::memory_order_relaxed);
  PTR_ASSERT_MSG(old.state == frame_state::free, "a frame on a free list is not free");
  std::atomic<std::uint64_t>* w = words(f);
  for (unsigned i = 0; i < limits::ptes_per_table; ++i)
    w[i].store(0, std::memory_order_relaxed);
  m.link.store(no_frame.value, std::memory_order_relaxed);
  m.linked.store(false, std::memory_order_relaxed);
  m.tag.store(0, std::memory_order_relaxed);
  m.retired_ns.store(0, std::memory_order_relaxed);
  owner.generation = old.generation + 1;
  m.ident.store(owner.pack(), std::memory_order_release);  // [fp-1] pairs with walkers' [fp-2]
  if (pool_observer* o = observer_.load(std::memory_order_relaxed)) o->on_alloc(f, owner);
  platform_->charge(cost_kind::frame_alloc);
  return f;
}

Result<frame_id> frame_pool::alloc_table(std::uint16_t domain, std::uint8_t level) {
  PTR_ASSERT_MSG(level >= 1 && level <= limits::max_levels, "table level out of range");
  if (const std::uint64_t threshold = table_fail_threshold_.load(std::memory_order_relaxed);
      threshold != 0) {
    std::uint64_t x = table_fail_seed_ ^ table_attempts_.fetch_add(1, std::memory_order_relaxed) *
                                             0x9e3779b97f4a7c15ULL;
    if ((prng::splitmix64(x) >> 11) < threshold) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      injected_.fetch_add(1, std::memory_order_relaxed);
      return Status(errc::no_memory,
                    "injected page-table allocation failure (a frame-pool "
                    "exhaustion fault)");
    }
  }
  return alloc(frame_ident{frame_state::page_table, level, domain, 0});
}

void frame_pool::set_table_alloc_faults(double probability, std::uint64_t seed) noexcept {
  table_fail_seed_ = seed;
  const double p = probability < 0 ? 0 : (probability > 1 ? 1 : probability);
  // A draw of 53 bits fails when below p * 2^53; p = 1 fails every attempt.
  table_fail_threshold_.store(static_cast<std::uint64_t>(p * 0x1.0p53) + (p >= 1 ? 1 : 0),
                              std::memory_order_relaxed);
}

Result<frame_id> frame_pool::alloc_data() {
  return alloc(frame_ident{frame_state::data, 0, 0, 0});
}

void frame_pool::report(frame_id f, std::string what) {
  violations_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard g(reports_mutex_);
  if (reports_.size() < config_.max_reports) reports_.push_back({f, std::move(what)});
}

Status frame_pool::mark_linked(frame_id f) {
  if (!contains(f)) {
    report(f, "link of frame id " + std::to_string(f.value) + " outside the pool");
    return Status(errc::ledger_violation, "frame id out of range");
  }
  frame_meta& m = meta_[f.value];
  const frame_ident id = m.load_ident();
  std::string what;
  if (id.state != frame_state::page_table)
    what = "link of frame " + std::to_string(f.value) + " in state " + frame_state_name(id.state) +
           " (only an allocated page table can be linked)";
  else if (m.linked.exchange(true, std::memory_order_relaxed))
    what = "frame " + std::to_string(f.value) + " linked twice (level-" + std::to_string(id.level) +
           " table of domain " + std::to_string(id.domain) + ")";
  if (!what.empty()) {
    report(f, what);
    return Status(errc::ledger_violation, std::move(what));
  }
  if (pool_observer* o = observer_.load(std::memory_order_relaxed)) o->on_linked(f);
  return {};
}

Status frame_pool::mark_retired(frame_id f) {
  if (!contains(f)) {
    report(f, "retire of frame id " + std::to_string(f.value) + " outside the pool");
    return Status(errc::ledger_violation, "frame id out of range");
  }
  frame_meta& m = meta_[f.value];
  std::uint64_t w = m.ident.load(std::memory_order_acquire);
  for (;;) {
    frame_ident id = frame_ident::unpack(w);
    if (id.state != frame_state::page_table) {
      std::string what = "retire of frame " + std::to_string(f.value) + " in state " +
                         frame_state_name(id.state) + " (only a linked page table can be retired)";
      report(f, what);
      return Status(errc::ledger_violation, std::move(what));
    }
    id.state = frame_state::retired;
    if (m.ident.compare_exchange_weak(w, id.pack(), std::memory_order_acq_rel)) break;
  }
  m.linked.store(false, std::memory_order_relaxed);
  m.retired_ns.store(platform_->now_ns(), std::memory_order_relaxed);
  return {};
}

Status frame_pool::free(frame_id f, const char* path) {
  return free_checked(f, path, true);
}

Status frame_pool::free_unlinked_table(frame_id f, const char* path) {
  return free_checked(f, path, false);
}

Status frame_pool::free_checked(frame_id f, const char* path, bool from_retired_only) {
  if (!contains(f)) {
    std::string what = "free of frame id " + std::to_string(f.value) +
                       " that was never allocated"
                       " (outside the pool of " +
                       std::to_string(capacity_) + " frames)";
    report(f, what);
    return Status(errc::ledger_violation, std::move(what));
  }
  frame_meta& m = meta_[f.value];
  std::uint64_t w = m.ident.load(std::memory_order_acquire);
  frame_ident id;
  for (;;) {
    id = frame_ident::unpack(w);
    std::string what;
    if (id.state == frame_state::free) {
      if (id.generation == 0) {
        what = "free of frame " + std::to_string(f.value) + " that was never allocated";
      } else {
        const char* by = m.freed_by.load(std::memory_order_relaxed);
        what = "double free of frame " + std::to_string(f.value) + " by " + path +
               " (already freed by " + (by != nullptr ? by : "?") + " at " +
               std::to_string(m.freed_ns.load(std::memory_order_relaxed)) + " ns)";
      }
    } else if (id.state == frame_state::page_table && m.linked.load(std::memory_order_relaxed)) {
      what = std::string(from_retired_only ? "free" : "free_unlinked_table") + " of frame " +
             std::to_string(f.value) + " by " + path + " while still linked as a level-" +
             std::to_string(id.level) + " table of domain " + std::to_string(id.domain);
    } else if (id.state == frame_state::page_table && from_retired_only) {
      what = "free of frame " + std::to_string(f.value) + " by " + path + ": a page table (level-" +
             std::to_string(id.level) + " of domain " + std::to_string(id.domain) +
             ") that was never retired; a never-linked one goes through free_unlinked_table";
    } else if (id.state == frame_state::retired && !from_retired_only) {
      what = "free_unlinked_table of retired frame " + std::to_string(f.value) +
             " (a frame that was linked must go through retire and free)";
    } else if (id.state == frame_state::data && !from_retired_only) {
      what = "free_unlinked_table of data frame " + std::to_string(f.value);
    }
    if (!what.empty()) {
      report(f, what);
      return Status(errc::ledger_violation, std::move(what));
    }
    const frame_ident freed{frame_state::free, 0, 0, id.generation};
    if (m.ident.compare_exchange_weak(w, freed.pack(), std::memory_order_acq_rel)) break;
  }
  m.last_domain.store(id.domain, std::memory_order_relaxed);
  m.last_level.store(id.level, std::memory_order_relaxed);
  m.freed_by.store(path, std::memory_order_relaxed);
  m.freed_ns.store(platform_->now_ns(), std::memory_order_relaxed);
  if (pool_observer* o = observer_.load(std::memory_order_relaxed)) o->on_freed(f, id, path);
  if (config_.poison) {
    std::atomic<std::uint64_t>* words_of_frame = words(f);
    for (unsigned i = 0; i < limits::ptes_per_table; ++i)
      words_of_frame[i].store(poison_pattern, std::memory_order_relaxed);
  }
  platform_->charge(cost_kind::frame_free);
  give_frame(f.value);
  return {};
}

pool_stats frame_pool::stats() const noexcept {
  pool_stats s;
  for (const auto& c : caches_) {
    s.allocations += c->allocations.load(std::memory_order_relaxed);
    s.frees += c->frees.load(std::memory_order_relaxed);
  }
  s.failed_allocations = failed_.load(std::memory_order_relaxed);
  // Sums of counters read one after another: exact at quiescence, clamped while frames move.
  const std::uint64_t held = s.allocations > s.frees ? s.allocations - s.frees : 0;
  s.in_use = static_cast<std::uint32_t>(std::min<std::uint64_t>(held, capacity_));
  s.peak_in_use = std::max(peak_.load(std::memory_order_relaxed), s.in_use);
  return s;
}

std::vector<leak_record> frame_pool::leaks() const {
  std::vector<leak_record> out;
  for (std::uint32_t f = 0; f < capacity_; ++f) {
    const frame_ident id = meta_[f].load_ident();
    if (id.state != frame_state::free) out.push_back({frame_id{f}, id});
  }
  return out;
}

std::string frame_pool::leak_report(std::size_t max_lines) const {
  const std::vector<leak_record> l = leaks();
  if (l.empty()) return {};
  std::ostringstream os;
  os << l.size() << " frame(s) not free at teardown:";
  for (std::size_t i = 0; i < l.size() && i < max_lines; ++i) {
    const auto& r = l[i];
    os << "\n  frame " << r.frame.value << ": " << frame_state_name(r.owner.state);
    if (r.owner.state == frame_state::page_table || r.owner.state == frame_state::retired)
      os << " level " << unsigned{r.owner.level} << " of domain " << r.owner.domain;
    os << " (generation " << r.owner.generation << ")";
  }
  if (l.size() > max_lines) os << "\n  ... and " << (l.size() - max_lines) << " more";
  return os.str();
}

std::vector<ledger_report> frame_pool::ledger_reports() const {
  std::lock_guard g(reports_mutex_);
  return reports_;
}

}  // namespace ptreclaim::mem
