// flush-epoch: ptreclaim's own policy, as a thin adapter over the freestanding core
// (include/ptreclaim/core/flush_epoch_core.hpp, the code a hypervisor or VMM lifts). Design
// note: docs/flush-epoch.md; the core's contract: docs/embedding.md.
//
// Everything the simulator, the hotplug suite, the campaigns and the mutants check about
// flush-epoch runs on the core: this file only maps the core's platform interface onto the
// kernel interface (time, current CPU, one timer per CPU, CPU notifiers), the invalidation
// backend, and policy_base's accounting (the observer, per-CPU holder counts, the latency
// histogram, the frame pool). What stays here:
//   - a gather larger than the CPU's share of max_pending, or a bound below one frame per CPU,
//     is freed inline in chunks under policy_base's admission (the core's own inline path
//     would take it whole, over the bound);
//   - a backend failure the core reports (a refused retire, a failed drain) is fatal, as for
//     every policy here: freeing without the invalidation would be unsafe;
//   - the per-CPU timers and the notifier: CPU_DOWN_PREPARE kills the dying CPU's timer;
//     CPU_DEAD (on another CPU) moves the dead ring onto the running CPU's (core.cpu_dead);
//     CPU_UP_PREPARE finds an empty ring and sets the timer up on its own CPU; CPU_DOWN_FAILED
//     sets it up again on the CPU that stayed up and lets it fire there. Timers are bound to
//     their CPU (unlike Xen's tasklet_schedule from a notifier), so a ring has one user.
#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../policies.hpp"
#include "../policy_base.hpp"
#include "ptreclaim/core/flush_epoch_core.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

class flush_epoch_policy;

// The core's platform: every call goes to the policy (defined after it).
struct sim_platform {
  using frame = mem::frame_id;
  flush_epoch_policy* policy;

  [[nodiscard]] unsigned current_cpu() const noexcept;
  [[nodiscard]] std::uint64_t now_ns() noexcept;
  void arm_timer(unsigned cpu, std::uint64_t at_ns) noexcept;
  [[nodiscard]] core::epoch_t invalidate(core::domain_id d, core::iova_range r);
  [[nodiscard]] core::epoch_t stamp(core::domain_id d) noexcept;
  [[nodiscard]] core::epoch_t completed(core::domain_id d) noexcept;
  [[nodiscard]] core::epoch_t completed_full(core::domain_id d) noexcept;
  [[nodiscard]] core::epoch_t completed_seen(core::domain_id d) noexcept;
  [[nodiscard]] core::epoch_t completed_full_seen(core::domain_id d) noexcept;
  [[nodiscard]] bool wait(core::domain_id d, core::epoch_t e);
  [[nodiscard]] bool flush_busy(core::domain_id d);
  void free_frames(unsigned ring, core::domain_id d, const frame* f, std::size_t n);
  void free_iovas(unsigned ring, core::domain_id d, const core::iova_range* r, std::size_t k);
  void on_taken(unsigned ring, core::domain_id d, core::iova_range need, const frame* f,
                std::size_t n, std::size_t iovas);
  void touch_shared(const void* line, bool write);
  void core_bug(const char* what);
};

using core_t = core::flush_epoch_core<sim_platform>;

// Domain numbers are 16 bits: the core keeps one request hint per possible domain.
constexpr std::uint32_t max_domains = std::uint32_t{1} << 16;

class flush_epoch_policy final : public policy_base {
 public:
  flush_epoch_policy(const reclaim_env& env, const reclaim_config& config)
      : policy_base(env, config),
        platform_{this},
        core_(platform_),
        timers_(env.rt.cpu_count(), [](unsigned) { return cpu_timer{}; }) {
    PTR_ASSERT_MSG(config.batches_per_cpu >= 1, "reclaim_config::batches_per_cpu must be >= 1");
    PTR_ASSERT_MSG(config.batch_frames >= 1, "reclaim_config::batch_frames must be >= 1");
    PTR_ASSERT_MSG(per_cpu_budget() <= UINT32_MAX, "a CPU's share of max_pending exceeds 2^32");
    core::core_config c;
    c.cpus = env.rt.cpu_count();
    c.max_domains = max_domains;
    c.frames_per_cpu = static_cast<std::uint32_t>(per_cpu_budget());
    c.batches_per_cpu = config.batches_per_cpu;
    c.batch_frames = std::min(config.batch_frames, c.frames_per_cpu);
    c.iovas_per_cpu = config.iovas_per_cpu;
    c.batch_iovas = std::min(config.batch_iovas, config.iovas_per_cpu);
    c.iova_watermark = config.iova_watermark;
    c.watermark = config.watermark;
    c.flush_age_ns = config.flush_age_ns;
    c.poll_ns = config.poll_ns;
    c.poll_spacing_ns = config.poll_spacing_ns;
    const std::size_t bytes = core_t::storage_bytes(c);
    storage_.reset(static_cast<unsigned char*>(
        ::operator new[](bytes, std::align_val_t{core_t::storage_align})));
    const core::init_status s = core_.init(c, storage_.get(), bytes);
    PTR_ASSERT_MSG(s == core::init_status::ok, "flush-epoch: the core refused its configuration");
    notifier_ = env_.rt.register_cpu_notifier(
        [this](runtime::cpu_event e, unsigned cpu) { return cpu_callback(e, cpu); },
        /*replay_online=*/true);
  }
  ~flush_epoch_policy() override {
    env_.rt.unregister_cpu_notifier(notifier_);
    for (unsigned c = 0; c < timers_.size(); ++c) {
      if (timers_[c].ready) env_.rt.kill_timer(timers_[c].timer);
    }
  }

  void retire(domain_number d, const pt::gather& g) override {
    const std::uint64_t n = g.released().size();
    if (n == 0) return;
    const unsigned cpu = env_.rt.current_cpu();
    // One gather larger than this CPU's share, or a bound below one frame per CPU (which
    // per-CPU rings cannot keep without waiting on other CPUs' timers): free it inline.
    if (global_bound() || n > per_cpu_budget()) {
      ++counters().backpressure;
      (void)retire_inline(d, g, cpu, "flush-epoch-sync",
                          invalidation_range{g.first(), g.last(), true}, [&] { drain_ring(cpu); });
      return;
    }
    const core::retire_status s =
        core_.retire(d, core::iova_range{g.first(), g.last()}, g.released().data(), n);
    PTR_ASSERT_MSG(s != core::retire_status::refused,
                   "flush-epoch: an invalidation could not be submitted or did not complete "
                   "within wait_timeout_ns; freeing would be unsafe");
  }

  // Lazy DMA: the unmap's IOVA joins its tables (if any) in this CPU's open batch, under the
  // same stamp, and goes back to env.iovas when the batch is freed: what dma-iommu's queue_iova
  // does with fq_flush_start_cnt, made per-CPU and lock-free (docs/flush-epoch.md). Gathers over
  // the CPU's share and a shared bound take policy_base's synchronous path.
  void retire_deferred(domain_number d, const pt::gather& g, const iova_range& iova) override {
    const std::uint64_t n = g.released().size();
    if (global_bound() || n > per_cpu_budget() || (n == 0 && iova.empty())) {
      policy_base::retire_deferred(d, g, iova);
      return;
    }
    note_deferred_iova(iova);
    const invalidation_range need = covering(g, iova);
    const core::iova_range deferred{iova.first, iova.last};
    const core::retire_status s =
        core_.retire(d, core::iova_range{need.first, need.last}, g.released().data(), n, &deferred,
                     iova.empty() ? 0 : 1);
    PTR_ASSERT_MSG(s != core::retire_status::refused,
                   "flush-epoch: an invalidation could not be submitted or did not complete "
                   "within wait_timeout_ns; freeing would be unsafe");
  }

  void before_caller_invalidation(domain_number d) override { core_.before_caller_invalidation(d); }

  void note_caller_invalidation(domain_number d, const invalidation_range& r, epoch_t e) override {
    // Only a non-leaf invalidation drops the paging-structure caches that may point at the
    // frames; a leaf one covers nothing, but its wait advanced the epochs, so the ring is still
    // reaped (an empty range: first > last).
    const core::iova_range covered =
        r.nonleaf ? core::iova_range{r.first, r.last} : core::iova_range{~pt::iova_t{0}, 0};
    core_.note_caller_invalidation(d, covered, e);
  }

  // No retire runs meanwhile (the contract), but other CPUs' timers may (threaded executor):
  // each ring is emptied with its timer killed (kill_timer waits for a running one), then the
  // timer is set up again on its CPU.
  Status drain() override {
    for (unsigned c = 0; c < timers_.size(); ++c) {
      if (timers_[c].ready) env_.rt.kill_timer(timers_[c].timer);
      drain_ring(c);
      if (timers_[c].ready) init_timer(c);
    }
    return {};
  }

  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::flush_epoch; }

  [[nodiscard]] reclaim_stats stats() const override {
    reclaim_stats s = policy_base::stats();
    const core::stats_snapshot c = core_.total();
    s.rides += c.rides;
    s.backpressure += c.backpressure;
    s.worker_runs += c.timer_runs;
    return s;
  }

  [[nodiscard]] std::string describe_pending() const override {
    std::string out;
    const std::uint64_t now = env_.rt.now_ns();
    for (unsigned c = 0; c < timers_.size(); ++c) {
      const core::ring_view v = core_.view(c);
      if (v.batches == 0) continue;  // (an IOVA-only batch counts: its IOVAs wait too)
      out += "CPU " + std::to_string(c) + ": " + std::to_string(v.frames) + " frames" +
             (v.iovas != 0 ? " and " + std::to_string(v.iovas) + " IOVAs" : std::string()) +
             " in " + std::to_string(v.batches) + " batches; the oldest (domain " +
             std::to_string(v.oldest_domain) + ") opened " +
             std::to_string(now >= v.oldest_opened_ns ? now - v.oldest_opened_ns : 0) +
             " ns ago, waits for " + waits_for(v) + "; timer " +
             (!timers_[c].ready ? "not set up"
              : v.timer_armed   ? "armed"
                                : "not armed") +
             "\n";
    }
    return out;
  }

  // ---- the core's platform (sim_platform forwards here) ----
  [[nodiscard]] unsigned cpu() const noexcept { return env_.rt.current_cpu(); }
  [[nodiscard]] std::uint64_t now() const noexcept { return env_.rt.now_ns(); }
  void arm(unsigned cpu, std::uint64_t at_ns) {
    // Only an online CPU's ring (set up at CPU_UP_PREPARE) is ever armed by the core.
    PTR_ASSERT_MSG(timers_[cpu].ready, "flush-epoch: the core armed a CPU timer never set up");
    env_.rt.set_timer(timers_[cpu].timer, at_ns);
  }
  [[nodiscard]] core::epoch_t submit(core::domain_id d, core::iova_range r) {
    Result<epoch_t> e = env_.backend.invalidate(static_cast<domain_number>(d),
                                                invalidation_range{r.first, r.last, true});
    if (!e.ok()) return 0;  // queue full past its timeout: the core asks again, or refuses
    ++counters().invalidations;
    return *e;
  }
  [[nodiscard]] invalidation_backend& backend() const noexcept { return env_.backend; }
  [[nodiscard]] bool wait_for(core::domain_id d, core::epoch_t e) {
    return env_.backend.wait(static_cast<domain_number>(d), e, config_.wait_timeout_ns);
  }
  void free_ring_frames(unsigned ring, const mem::frame_id* f, std::size_t n) {
    const std::uint64_t now_ns = env_.rt.now_ns();
    for (std::size_t i = 0; i < n; ++i)
      free_frame(f[i], "flush-epoch", ring, now_ns);
  }
  void taken(unsigned ring, domain_number d, const invalidation_range& need, const mem::frame_id* f,
             std::size_t n) {
    // The frames are accounted once the core made room for them, before any can be freed.
    (void)account_frames(d, need, std::span<const mem::frame_id>(f, n), ring);
    for (std::size_t i = 0; i < n; ++i)
      env_.rt.charge(cost_kind::enqueue);
  }
  void give_back(domain_number d, const core::iova_range* r, std::size_t k) {
    for (std::size_t i = 0; i < k; ++i)
      return_iova(d, iova_range{r[i].first, r[i].last});
  }
  void touch(const void* line, bool write) { env_.rt.touch_line(line, write); }
  // The core's only shared line is a domain's request hint ([core-5]); named when first seen.
  void name(const void* line) {
    if (named_.load(std::memory_order_relaxed) == line) return;
    named_.store(line, std::memory_order_relaxed);
    env_.rt.name_shared(line, "flush-epoch: a domain's request hint");
  }
  void bug(const char* what) {
    if (env_.observer != nullptr) env_.observer->on_invariant_violation(what);
  }

 private:
  std::atomic<const void*> named_{nullptr};  // the hint name() named last (a cache)
  struct cpu_timer {
    runtime::timer timer;
    bool ready = false;  // set up (CPU_UP_PREPARE), so the core may arm it
  };

  // For describe_pending(): what the oldest batch of a ring waits for.
  [[nodiscard]] std::string waits_for(const core::ring_view& v) const {
    invalidation_backend& be = env_.backend;
    const auto d = static_cast<domain_number>(v.oldest_domain);
    const std::string dom = " of domain " + std::to_string(d);
    if (v.open && v.batches == 1)
      return "its stamp (the batch is open: a retire of another domain, a caller's flush, the "
             "watermark or the timer closes it)";
    if (v.oldest_cover != 0)
      return "the caller's invalidation epoch " + std::to_string(v.oldest_cover) + dom +
             " (completed through " + std::to_string(be.completed_seen(d)) + ")";
    if (v.requested > v.oldest_stamp)
      return "the full invalidation epoch " + std::to_string(v.requested) + dom +
             " it asked for (newest full one completed: " +
             std::to_string(be.completed_full_seen(d)) + ")";
    if (config_.flush_age_ns == 0)
      return "a full invalidation" + dom + " numbered after " + std::to_string(v.oldest_stamp) +
             ": a caller's flush or the watermark (" + std::to_string(core_.watermark()) +
             " frames on this CPU); the age flush is off (flush_age_ns = 0)";
    return "a full invalidation" + dom + " numbered after " + std::to_string(v.oldest_stamp) +
           ": its age flush, due " + std::to_string(config_.flush_age_ns) + " ns after its retire";
  }

  // Invalidates every domain in CPU c's ring, waits, frees everything (back-pressure of the
  // inline path, drain). The ring must be quiescent: c's own CPU, or its timer killed.
  void drain_ring(unsigned c) {
    const bool ok = core_.drain_cpu(c);
    PTR_ASSERT_MSG(ok,
                   "flush-epoch: an invalidation could not be submitted or did not complete "
                   "within wait_timeout_ns; freeing would be unsafe");
  }

  // (Re)initialises CPU `cpu`'s timer: drain, CPU_UP_PREPARE and CPU_DOWN_FAILED set it up
  // again after killing it or after the CPU was offline.
  void init_timer(unsigned cpu) {
    env_.rt.timer_init(
        timers_[cpu].timer, [this, cpu] { on_timer(cpu); }, cpu);
  }

  // The per-CPU worker: a timer in softirq context on its own CPU.
  void on_timer(unsigned owner) {
    if (env_.rt.current_cpu() != owner) ++counters().wrong_cpu_runs;  // the core reports it
    core_.on_timer(owner);
  }

  runtime::notify_result cpu_callback(runtime::cpu_event action, unsigned cpu) {
    switch (action) {
      case runtime::cpu_event::down_prepare:
        // `cpu` is still running (it parks later): touch its timer only through the kernel.
        if (timers_[cpu].ready) env_.rt.kill_timer(timers_[cpu].timer);
        break;
      case runtime::cpu_event::dead: {
        const unsigned here = env_.rt.current_cpu();
        PTR_ASSERT_MSG(here != cpu, "CPU_DEAD ran on the dead CPU");
        // The dead ring's frames count on this CPU before the core moves them, so frees of
        // them during the move (back-pressure on this ring) are uncounted from the right holder.
        const std::uint64_t held = core_.held(cpu);
        move_held(cpu, here, held);
        const std::uint64_t moved = core_.cpu_dead(cpu);
        PTR_ASSERT_MSG(moved == held,
                       "flush-epoch: CPU_DEAD could not move every frame (the "
                       "backend failed while making room)");
        break;
      }
      case runtime::cpu_event::up_prepare:
        // `cpu` is offline: its ring has no other user.
        if (core_.held(cpu) != 0 && env_.observer != nullptr) {
          env_.observer->on_invariant_violation("flush-epoch: CPU_UP_PREPARE found frames on CPU " +
                                                std::to_string(cpu));
        }
        init_timer(cpu);
        timers_[cpu].ready = true;
        core_.cpu_up_prepare(cpu);
        break;
      case runtime::cpu_event::down_failed:
        // `cpu` stayed up and may be running right now: never read or write its ring here.
        // Re-init its timer and let it fire on `cpu` at once; it looks at the ring there.
        if (timers_[cpu].ready) {
          init_timer(cpu);
          core_.cpu_down_failed(cpu);
        }
        break;
      case runtime::cpu_event::online:
      case runtime::cpu_event::up_canceled:
        break;
    }
    return runtime::notify_result::done;
  }

  struct aligned_delete {
    void operator()(unsigned char* p) const noexcept {
      ::operator delete[](p, std::align_val_t{core_t::storage_align});
    }
  };

  sim_platform platform_;
  core_t core_;
  std::unique_ptr<unsigned char[], aligned_delete> storage_;
  runtime::per_cpu<cpu_timer> timers_;
  runtime::notifier_id notifier_ = 0;
};

unsigned sim_platform::current_cpu() const noexcept {
  return policy->cpu();
}
std::uint64_t sim_platform::now_ns() noexcept {
  return policy->now();
}
void sim_platform::arm_timer(unsigned cpu, std::uint64_t at_ns) noexcept {
  policy->arm(cpu, at_ns);
}
core::epoch_t sim_platform::invalidate(core::domain_id d, core::iova_range r) {
  return policy->submit(d, r);
}
core::epoch_t sim_platform::stamp(core::domain_id d) noexcept {
  return policy->backend().stamp(static_cast<domain_number>(d));
}
core::epoch_t sim_platform::completed(core::domain_id d) noexcept {
  return policy->backend().completed(static_cast<domain_number>(d));
}
core::epoch_t sim_platform::completed_full(core::domain_id d) noexcept {
  return policy->backend().completed_full(static_cast<domain_number>(d));
}
core::epoch_t sim_platform::completed_seen(core::domain_id d) noexcept {
  return policy->backend().completed_seen(static_cast<domain_number>(d));
}
core::epoch_t sim_platform::completed_full_seen(core::domain_id d) noexcept {
  return policy->backend().completed_full_seen(static_cast<domain_number>(d));
}
bool sim_platform::wait(core::domain_id d, core::epoch_t e) {
  return policy->wait_for(d, e);
}
void sim_platform::free_frames(unsigned ring, core::domain_id, const frame* f, std::size_t n) {
  policy->free_ring_frames(ring, f, n);
}
void sim_platform::free_iovas(unsigned, core::domain_id d, const core::iova_range* r,
                              std::size_t k) {
  policy->give_back(static_cast<domain_number>(d), r, k);
}
void sim_platform::on_taken(unsigned ring, core::domain_id d, core::iova_range need, const frame* f,
                            std::size_t n, std::size_t) {
  policy->taken(ring, static_cast<domain_number>(d),
                invalidation_range{need.first, need.last, true}, f, n);
}
bool sim_platform::flush_busy(core::domain_id d) {
  return policy->backend().flush_busy(static_cast<domain_number>(d));
}

void sim_platform::touch_shared(const void* line, bool write) {
  policy->name(line);
  policy->touch(line, write);
}
void sim_platform::core_bug(const char* what) {
  policy->bug(what);
}

}  // namespace

std::unique_ptr<reclaimer> make_flush_epoch(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<flush_epoch_policy>(env, config);
}

}  // namespace ptreclaim::reclaim::detail
