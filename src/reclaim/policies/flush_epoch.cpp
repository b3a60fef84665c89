// flush-epoch: ptreclaim's own policy. Design note: docs/flush-epoch.md.
//
// Each CPU owns a bounded ring of *batches*: the frames that successive retire()s of one domain
// released (linked through their frame metadata, so queuing never allocates), the domain, the
// IOVA range they need invalidated, and two epochs of that domain:
//   stamp  the flush epoch read after the last unlink of the batch (backend.stamp: a full
//          fence and a load), taken
//          when the batch is closed;
//   cover  the epoch of an invalidation that covers the batch (non-leaf, its range), when the
//          caller reported one (note_caller_invalidation) - 0 if none yet.
// A batch may be freed once  completed(d) >= cover  (cover != 0)  or  completed_full(d) > stamp.
// Whoever observes that frees it: the producer at its next retire, the caller right after its
// own flush, or the CPU's timer. The newest batch stays *open* (unstamped, never eligible) and
// takes the frames of further retires of its domain until it holds batch_frames frames, another
// domain retires, a flush is requested, or a caller is about to invalidate; then it is closed
// (stamped). A later stamp is always safe (it only asks for a later invalidation), so one stamp on
// the domain's epoch counter serves a whole batch. The producer path touches only its own CPU's
// ring and holder count; no lock, no allocation.
//
// The policy asks for an invalidation of its own (a full, non-leaf one, not waited for) when its
// oldest batch is older than flush_age_ns (never, if 0) or the CPU holds more than `watermark`
// frames, and
// invalidates and waits itself when the CPU's share of max_pending (or the ring) is full
// (back-pressure), so frames pending never exceed max_pending.
//
// Hotplug: CPU_DOWN_PREPARE kills the dying CPU's timer; CPU_DEAD (on another CPU) adopts the
// dead ring onto the running CPU's and arms that CPU's timer; CPU_UP_PREPARE finds an empty ring
// and re-inits the timer on its own CPU; CPU_DOWN_FAILED re-inits the timer on the CPU that
// stayed up and arms it if that CPU holds frames. Timers are bound to their CPU (unlike Xen's
// tasklet_schedule from a notifier), so a worker never runs on a CPU that does not own its ring.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "../policies.hpp"
#include "../policy_base.hpp"

namespace ptreclaim::reclaim::detail {
namespace {

struct batch {
  domain_number domain = 0;
  epoch_t stamp = 0;
  epoch_t cover = 0;
  invalidation_range range;
  std::uint64_t retired_ns = 0;
  frame_list frames;
};

// A fixed-capacity FIFO of batches (allocated once, when the policy is built).
class batch_ring {
 public:
  explicit batch_ring(unsigned capacity) : slots_(capacity) {}
  [[nodiscard]] batch& back() noexcept {
    PTR_DASSERT(!empty());
    return at(count_ - 1);
  }
  [[nodiscard]] const batch& back() const noexcept {
    PTR_DASSERT(!empty());
    return slots_[(head_ + count_ - 1) % slots_.size()];
  }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] bool full() const noexcept { return count_ == slots_.size(); }
  [[nodiscard]] unsigned size() const noexcept { return count_; }
  [[nodiscard]] batch& front() noexcept { return slots_[head_]; }
  [[nodiscard]] const batch& front() const noexcept { return slots_[head_]; }
  // i = 0 is the oldest.
  [[nodiscard]] batch& at(unsigned i) noexcept { return slots_[(head_ + i) % slots_.size()]; }
  batch& push_back() noexcept {
    PTR_DASSERT(!full());
    batch& b = slots_[(head_ + count_) % slots_.size()];
    ++count_;
    b = batch{};
    return b;
  }
  void pop_front() noexcept {
    PTR_DASSERT(!empty());
    head_ = (head_ + 1) % static_cast<unsigned>(slots_.size());
    --count_;
  }

 private:
  std::vector<batch> slots_;
  unsigned head_ = 0;
  unsigned count_ = 0;
};

class flush_epoch_policy final : public policy_base {
 public:
  flush_epoch_policy(const reclaim_env& env, const reclaim_config& config)
      : policy_base(env, config),
        watermark_(std::min<std::uint64_t>(config.watermark,
                                           std::max<std::uint64_t>(1, per_cpu_budget() / 2))),
        poll_ns_(config.poll_ns != 0 ? config.poll_ns : default_poll_ns),
        queues_(env.rt.cpu_count(),
                [&](unsigned cpu) { return queue(cpu, config.batches_per_cpu); }) {
    PTR_ASSERT_MSG(config.batches_per_cpu >= 1, "reclaim_config::batches_per_cpu must be >= 1");
    PTR_ASSERT_MSG(config.batch_frames >= 1, "reclaim_config::batch_frames must be >= 1");
    notifier_ = env_.rt.register_cpu_notifier(
        [this](runtime::cpu_event e, unsigned cpu) { return cpu_callback(e, cpu); },
        /*replay_online=*/true);
  }
  ~flush_epoch_policy() override {
    env_.rt.unregister_cpu_notifier(notifier_);
    for (unsigned c = 0; c < queues_.size(); ++c) {
      if (queues_[c].timer_ready) env_.rt.kill_timer(queues_[c].timer);
    }
  }

  void retire(domain_number d, const pt::gather& g) override {
    const std::uint64_t n = g.released().size();
    const unsigned cpu = env_.rt.current_cpu();
    if (n == 0) return;
    queue& q = queues_[cpu];
    reap(q, /*poll=*/false);
    // One gather larger than this CPU's share, or a bound below one frame per CPU (which
    // per-CPU rings cannot keep without waiting on other CPUs' timers): free it inline.
    if (global_bound() || n > per_cpu_budget()) {
      ++counters().backpressure;
      (void)retire_inline(d, g, cpu, "flush-epoch-sync",
                          invalidation_range{g.first(), g.last(), true}, [&] { flush_all(q); });
      return;
    }
    // Back-pressure before the frames are accepted (account_retire), so pending never
    // exceeds the bound, not even for the length of this call.
    bool pressed = false;
    if (q.ring.full() && !can_merge(q, d, n)) {
      flush_all(q);
      pressed = true;
    }
    if (admit(cpu, n, [&] { flush_all(q); }) || pressed) ++counters().backpressure;
    account_retire(d, g, cpu);
    batch* b = nullptr;
    if (can_merge(q, d, n)) {
      b = &q.ring.back();
      b->range.first = std::min(b->range.first, g.first());
      b->range.last = std::max(b->range.last, g.last());
    } else {
      close(q);
      b = &q.ring.push_back();
      b->domain = d;
      b->range = invalidation_range::of(g);
      b->range.nonleaf = true;  // tables were released: only a non-leaf invalidation covers them
      b->retired_ns = env_.rt.now_ns();
      q.open = true;
    }
    for (mem::frame_id f : g.released()) {
      env_.rt.charge(cost_kind::enqueue);
      b->frames.push_back(env_.pool, f);
    }
    q.frames += n;
    if (b->frames.size() >= config_.batch_frames) close(q);
    // Ask early, asynchronously: at the frame watermark, or once half the ring's batch
    // descriptors are used (a full ring means back-pressure: invalidate and wait on this path).
    bool requested = false;
    if (over_watermark(q)) {
      close(q);
      request_flush(q.ring.back().domain, q.ring.back().stamp);
      requested = true;
      reap(q, /*poll=*/false);  // a fast invalidation may have completed already
    }
    // The armed state is kept here (only this CPU touches q): asking the kernel would take
    // its lock on every retire. After asking, the timer polls soon: this path reads the epochs
    // without polling, and nobody else may poll (no caller flushes).
    if (requested && !q.ring.empty())
      poll_soon(q);
    else if (q.timer_ready && !q.timer_armed && !q.ring.empty() && config_.flush_age_ns != 0)
      arm(q, q.ring.front().retired_ns + config_.flush_age_ns);
  }

  void before_caller_invalidation(domain_number d) override {
    queue& q = queues_[env_.rt.current_cpu()];
    if (q.open && q.ring.back().domain == d) close(q);  // so the caller's epoch follows its stamp
  }

  void note_caller_invalidation(domain_number d, const invalidation_range& r, epoch_t e) override {
    queue& q = queues_[env_.rt.current_cpu()];
    // Newest first: the caller flushes right after the retire it just made.
    for (unsigned i = q.ring.size(); i-- > 0;) {
      if (q.open && i + 1 == q.ring.size()) continue;  // not stamped: nothing can cover it yet
      batch& b = q.ring.at(i);
      if (b.domain != d || b.cover != 0 || e <= b.stamp) continue;
      if (r.covers(b.range.first, b.range.last)) b.cover = e;
    }
    reap(q, /*poll=*/false);  // the caller's wait just advanced the epochs
  }

  // No retire runs meanwhile (the contract), but other CPUs' timers may (threaded executor):
  // each ring is emptied with its timer killed (kill_timer waits for a running one), then the
  // timer is set up again on its CPU.
  Status drain() override {
    for (unsigned c = 0; c < queues_.size(); ++c) {
      queue& q = queues_[c];
      if (q.timer_ready) env_.rt.kill_timer(q.timer);
      q.timer_armed = false;
      flush_all(q);
      if (q.timer_ready) init_timer(c);
    }
    return {};
  }

  [[nodiscard]] policy_kind kind() const noexcept override { return policy_kind::flush_epoch; }

  [[nodiscard]] std::string describe_pending() const override {
    std::string out;
    const std::uint64_t now = env_.rt.now_ns();
    for (unsigned c = 0; c < queues_.size(); ++c) {
      const queue& q = queues_[c];
      if (q.ring.empty()) continue;
      const batch& b = q.ring.front();
      out += "CPU " + std::to_string(c) + ": " + std::to_string(q.frames) + " frames in " +
             std::to_string(q.ring.size()) + " batches; the oldest (domain " +
             std::to_string(b.domain) + ") retired " +
             std::to_string(now >= b.retired_ns ? now - b.retired_ns : 0) + " ns ago, waits for " +
             waits_for(q) + "; timer " +
             (!q.timer_ready  ? "not set up"
              : q.timer_armed ? "armed"
                              : "not armed") +
             "\n";
    }
    return out;
  }

 private:
  struct queue {
    queue(unsigned owner, unsigned batches) : cpu(owner), ring(batches) {}
    unsigned cpu;  // the holder of its frames
    batch_ring ring;
    std::uint64_t frames = 0;  // frames in the ring
    bool open = false;         // the ring's newest batch takes more frames and has no stamp
    runtime::timer timer;
    bool timer_ready = false;
    bool timer_armed = false;    // set by arm(), cleared when it fires or is killed / re-inited
    std::uint64_t timer_at = 0;  // when it fires, while armed
  };

  // `poll`: ask the hardware for progress (takes the IOMMU model's locks); otherwise read the
  // epochs as last advanced, a lock-free load, which is what the per-retire path does so that
  // producers on many CPUs do not meet on the IOMMU's locks. The timer and the back-pressure
  // path poll, so a batch is never left waiting for someone else's poll.
  [[nodiscard]] bool eligible(const batch& b, bool poll) {
    invalidation_backend& be = env_.backend;
    if (b.cover != 0 && (poll ? be.completed(b.domain) : be.completed_seen(b.domain)) >= b.cover)
      return true;
    return (poll ? be.completed_full(b.domain) : be.completed_full_seen(b.domain)) > b.stamp;
  }

  [[nodiscard]] bool over_watermark(const queue& q) const noexcept {
    return q.frames > watermark_ || 2 * q.ring.size() > config_.batches_per_cpu;
  }

  [[nodiscard]] static bool is_open(const queue& q, const batch& b) noexcept {
    return q.open && &b == &q.ring.back();
  }
  // A flush that will free the (closed) batch is on its way: the caller's, or a full one asked
  // for; or one asked for before, which must complete before this CPU can ask again.
  [[nodiscard]] bool awaited(const queue& q, const batch& b) const noexcept {
    if (is_open(q, b)) return false;
    const epoch_t asked = full_requested_[b.domain].load(std::memory_order_relaxed);
    return b.cover != 0 || asked > b.stamp || env_.backend.completed_full_seen(b.domain) < asked;
  }

  // For describe_pending(): what the oldest batch of q waits for.
  [[nodiscard]] std::string waits_for(const queue& q) const {
    const batch& b = q.ring.front();
    invalidation_backend& be = env_.backend;
    const std::string dom = " of domain " + std::to_string(b.domain);
    if (q.open && q.ring.size() == 1)
      return "its stamp (the batch is open: a retire of another domain, a caller's flush, the "
             "watermark or the timer closes it)";
    if (b.cover != 0)
      return "the caller's invalidation epoch " + std::to_string(b.cover) + dom +
             " (completed through " + std::to_string(be.completed_seen(b.domain)) + ")";
    const epoch_t asked = full_requested_[b.domain].load(std::memory_order_relaxed);
    if (asked > b.stamp)
      return "the full invalidation epoch " + std::to_string(asked) + dom +
             " it asked for (newest full one completed: " +
             std::to_string(be.completed_full_seen(b.domain)) + ")";
    if (config_.flush_age_ns == 0)
      return "a full invalidation" + dom + " numbered after " + std::to_string(b.stamp) +
             ": a caller's flush or the watermark (" + std::to_string(watermark_) +
             " frames on this CPU); the age flush is off (flush_age_ns = 0)";
    return "a full invalidation" + dom + " numbered after " + std::to_string(b.stamp) +
           ": its age flush, due " + std::to_string(config_.flush_age_ns) + " ns after its retire";
  }

  [[nodiscard]] bool can_merge(queue& q, domain_number d, std::uint64_t n) noexcept {
    return q.open && q.ring.back().domain == d &&
           q.ring.back().frames.size() + n <= config_.batch_frames;
  }

  // Stamps the open batch: read after the unlinks ([ep-1] in iommu/domain.hpp: a full fence, then
  // the domain's counter).
  void close(queue& q) {
    if (!q.open) return;
    batch& b = q.ring.back();
    b.stamp = env_.backend.stamp(b.domain);
    q.open = false;
  }

  // Frees every eligible batch from the head of q (never the open one).
  void reap(queue& q, bool poll) {
    std::uint64_t now = 0;
    while (!q.ring.empty() && !(q.open && q.ring.size() == 1) && eligible(q.ring.front(), poll)) {
      batch& b = q.ring.front();
      if (b.cover != 0) ++counters().rides;
      q.frames -= b.frames.size();
      if (now == 0) now = env_.rt.now_ns();
      while (!b.frames.empty())
        free_frame(b.frames.pop_front(env_.pool), "flush-epoch", q.cpu, now);
      q.ring.pop_front();
    }
  }

  void arm(queue& q, std::uint64_t expires_ns) {
    env_.rt.set_timer(q.timer, expires_ns);
    q.timer_armed = true;
    q.timer_at = expires_ns;
  }
  // (Re)initialises CPU `cpu`'s timer: drain, CPU_UP_PREPARE and CPU_DOWN_FAILED set it up
  // again after killing it or after the CPU was offline.
  void init_timer(unsigned cpu) {
    env_.rt.timer_init(
        queues_[cpu].timer, [this, cpu] { on_timer(cpu); }, cpu);
  }
  // The timer fires within poll_ns_ (re-armed only if it would fire later).
  void poll_soon(queue& q) {
    if (!q.timer_ready) return;
    const std::uint64_t at = env_.rt.now_ns() + poll_ns_;
    if (!q.timer_armed || q.timer_at > at) arm(q, at);
  }

  // Makes sure a full invalidation of d numbered after `stamp` is on its way. At most one such
  // request per domain is in flight across all CPUs: if one numbered after `stamp` exists, this
  // CPU rides on it; if an older one is still in flight, this CPU asks again after it completed
  // (its timer polls), so N CPUs do not queue N invalidations on the one IOMMU queue. Only
  // submissions that succeeded are recorded, so a recorded epoch does complete.
  void request_flush(domain_number d, epoch_t stamp) {
    std::atomic<epoch_t>& newest = full_requested_[d];
    env_.rt.touch_line(&newest, false);  // shared by the domain's CPUs
    const epoch_t last = newest.load(std::memory_order_relaxed);
    if (last > stamp || env_.backend.completed_full_seen(d) < last) return;
    Result<epoch_t> e = env_.backend.invalidate(d, invalidation_range::whole_domain());
    if (!e.ok()) return;  // queue full past its timeout: the timer asks again
    ++counters().invalidations;
    // Already completed (a backend that invalidates synchronously): nothing in flight for other
    // CPUs to ride on, and their stamps older than *e see it completed. Publishing would only
    // move the hint's cache line between CPUs.
    if (env_.backend.completed_full_seen(d) >= *e) return;
    env_.rt.touch_line(&newest, true);
    epoch_t seen = newest.load(std::memory_order_relaxed);
    while (seen < *e && !newest.compare_exchange_weak(seen, *e, std::memory_order_relaxed)) {
    }
  }

  // Back-pressure and drain: invalidate every domain in q and wait, then free everything.
  void flush_all(queue& q) {
    if (q.ring.empty()) return;
    close(q);
    std::set<domain_number> domains;
    for (unsigned i = 0; i < q.ring.size(); ++i)
      domains.insert(q.ring.at(i).domain);
    for (domain_number d : domains)
      invalidate_and_wait(d, invalidation_range::whole_domain());
    reap(q, /*poll=*/true);
    PTR_ASSERT_MSG(q.ring.empty(), "a full invalidation that completed left batches ineligible");
  }

  // The per-CPU worker: a timer in softirq context on its own CPU.
  void on_timer(unsigned owner) {
    ++counters().worker_runs;
    if (env_.rt.current_cpu() != owner) report_wrong_cpu(owner, "flush-epoch timer");
    queue& q = queues_[owner];
    q.timer_armed = false;  // it fired (armed by its owner, or by CPU_DOWN_FAILED)
    reap(q, /*poll=*/true);
    if (q.ring.empty()) return;
    const std::uint64_t now = env_.rt.now_ns();
    batch& oldest = q.ring.front();
    const bool aged = config_.flush_age_ns != 0 && now - oldest.retired_ns >= config_.flush_age_ns;
    // Ask when the oldest is due, or again when the CPU is still over its mark and an older
    // request it could not ride on has completed.
    if (aged || over_watermark(q)) {
      close(q);  // the oldest may be the open batch; a stamp is what a flush can cover
      if (!awaited(q, oldest)) request_flush(oldest.domain, oldest.stamp);
    }
    if (awaited(q, oldest)) {
      arm(q, now + poll_ns_);  // poll until what was asked for completes
    } else if (config_.flush_age_ns != 0) {
      arm(q, std::max(now + 1, oldest.retired_ns + config_.flush_age_ns));  // its age flush
    }
    // Else (flush_age_ns = 0): it waits for a caller's flush or the watermark.
  }

  runtime::notify_result cpu_callback(runtime::cpu_event action, unsigned cpu) {
    queue& q = queues_[cpu];
    switch (action) {
      case runtime::cpu_event::down_prepare:
        // `cpu` is still running (it parks later): touch its timer only through the kernel.
        if (q.timer_ready) env_.rt.kill_timer(q.timer);
        break;
      case runtime::cpu_event::dead: {
        const unsigned here = env_.rt.current_cpu();
        PTR_ASSERT_MSG(here != cpu, "CPU_DEAD ran on the dead CPU");
        adopt(queues_[here], q);
        if (queues_[here].timer_ready && !queues_[here].ring.empty())
          arm(queues_[here], env_.rt.now_ns());
        break;
      }
      case runtime::cpu_event::up_prepare:
        // `cpu` is offline: its queue has no other user.
        if (!q.ring.empty() && env_.observer != nullptr) {
          env_.observer->on_invariant_violation("flush-epoch: CPU_UP_PREPARE found frames on CPU " +
                                                std::to_string(cpu));
        }
        init_timer(cpu);
        q.timer_ready = true;
        q.timer_armed = false;
        break;
      case runtime::cpu_event::down_failed:
        // `cpu` stayed up and may be running right now: never read or write its queue here
        // (its ring and flags belong to it). Re-init its timer and let it fire on `cpu` at
        // once; the timer looks at the ring there, as its owner. (timer_ready was set at
        // up_prepare, before `cpu` came online.)
        if (q.timer_ready) {
          init_timer(cpu);
          env_.rt.set_timer(q.timer, env_.rt.now_ns());
        }
        break;
      case runtime::cpu_event::online:
      case runtime::cpu_event::up_canceled:
        break;
    }
    return runtime::notify_result::done;
  }

  // Moves every batch of `from` (a dead CPU's ring) to `to`; when `to` has no room, the
  // batches that do not fit are invalidated and freed here.
  void adopt(queue& to, queue& from) {
    close(from);  // stamped now, after every unlink of its frames: safe, if later than needed
    close(to);    // adopted batches go behind it, and only the newest batch may be open
    while (!from.ring.empty()) {
      batch& b = from.ring.front();
      const std::uint64_t n = b.frames.size();
      if (to.ring.full()) flush_all(to);
      batch& nb = to.ring.push_back();
      nb.domain = b.domain;
      nb.stamp = b.stamp;
      nb.cover = b.cover;
      nb.range = b.range;
      nb.retired_ns = b.retired_ns;
      nb.frames.splice_back(env_.pool, b.frames);
      move_held(from.cpu, to.cpu, n);
      to.frames += n;
      from.frames -= n;
      from.ring.pop_front();
    }
    PTR_ASSERT(from.frames == 0);
    // Over this CPU's share once the dead CPU comes back and fills its own again (S5).
    if (to.frames > per_cpu_budget()) {
      ++counters().backpressure;
      flush_all(to);
    }
  }

  std::uint64_t watermark_;
  // The timer's period while an invalidation is awaited: about two of the model's default
  // invalidations (PSI + wait ~ 1 us), so a frame waits about that long past its completion.
  static constexpr std::uint64_t default_poll_ns = 2'000;
  std::uint64_t poll_ns_;
  runtime::per_cpu<queue> queues_;
  // Per domain: the newest full invalidation any CPU submitted through request_flush(). Relaxed:
  // a hint that saves an invalidation; eligibility always asks the backend.
  std::unique_ptr<std::atomic<epoch_t>[]> full_requested_ =
      std::make_unique<std::atomic<epoch_t>[]>(std::size_t{1} << 16);
  runtime::notifier_id notifier_ = 0;
};

}  // namespace

std::unique_ptr<reclaimer> make_flush_epoch(const reclaim_env& env, const reclaim_config& config) {
  return std::make_unique<flush_epoch_policy>(env, config);
}

}  // namespace ptreclaim::reclaim::detail
