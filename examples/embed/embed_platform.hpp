// The platform a VMM would write to embed the flush-epoch core, here in plain C++ threads:
//
//   CPUs        std::threads, one per simulated CPU (the CPU number is a thread_local);
//   timers      one deadline per CPU, armed by the core, fired by that CPU's thread at its safe
//               points (as softirqs run on return from a hypercall), killed when it goes down;
//   backend     an asynchronous IOMMU queue: invalidations are numbered per domain at submission
//               and a separate completer thread finishes each about latency_ns later, in order;
//   frames      indices into the example's frame table, IOVAs ranges of the domain's address
//               space (lazy DMA: reusable only once no IOTLB can hold them); the checker below
//               says whether each free was safe.
//
// The checker is independent of the core: at each unlink (or IOVA unmap) the example records the
// newest invalidation number of the domain (unlinked_at); at each free it asks the backend's own
// log whether an invalidation numbered after that completed and was full or contained the
// frame's IOVA range (or the IOVA range itself). Anything else is a violation, printed, and the
// example exits non-zero.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ptreclaim/core/flush_epoch_core.hpp"

namespace embed {

using ptreclaim::core::domain_id;
using ptreclaim::core::epoch_t;
using ptreclaim::core::iova_range;

constexpr unsigned no_cpu = ~0u;
inline thread_local unsigned this_cpu = no_cpu;

inline std::uint64_t now_ns() {
  static const auto start = std::chrono::steady_clock::now();
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
}

// One domain's invalidation queue. Submissions and completions are numbered 1, 2, ...; the log
// keeps every invalidation's range and times (the checker's evidence).
class iommu_queue {
 public:
  static constexpr std::size_t capacity = 1u << 18;  // invalidations one run may submit

  iommu_queue() : log_(capacity) {}

  epoch_t submit(iova_range r) {
    const epoch_t e = started_.fetch_add(1, std::memory_order_seq_cst) + 1;  // [core-7]
    if (e >= capacity) {
      std::fprintf(stderr, "embed: more than %zu invalidations\n", capacity);
      std::abort();
    }
    entry& x = log_[e];
    x.range = r;
    x.submitted_ns.store(now_ns(), std::memory_order_relaxed);
    x.ready.store(true, std::memory_order_release);  // (1) pairs with (2)
    return e;
  }
  epoch_t started() const { return started_.load(std::memory_order_seq_cst); }
  epoch_t stamp() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // [core-1]
    return started_.load(std::memory_order_relaxed);
  }
  epoch_t completed() const { return completed_.load(std::memory_order_acquire); }  // [core-2]
  epoch_t completed_full() const { return completed_full_.load(std::memory_order_acquire); }

  // The completer: finishes invalidation completed+1 once it is latency_ns old. Returns whether
  // it finished one.
  bool complete_next(std::uint64_t latency_ns) {
    const epoch_t next = completed_.load(std::memory_order_relaxed) + 1;
    if (next >= capacity) return false;
    entry& x = log_[next];
    if (!x.ready.load(std::memory_order_acquire)) return false;  // (2) pairs with (1)
    const std::uint64_t now = now_ns();
    if (now < x.submitted_ns.load(std::memory_order_relaxed) + latency_ns) return false;
    x.completed_ns.store(now, std::memory_order_relaxed);
    // completed_ first: a thread that saw completed_full_ = next (acquire) then sees completed_
    // >= next, so the checker finds invalidation `next` in the log whichever counter the core
    // read. (In the other order a core that freed on completed_full_ could meet a checker still
    // reading the older completed_ and report a false early free.)
    completed_.store(next, std::memory_order_release);                            // [core-2]
    if (x.range.whole()) completed_full_.store(next, std::memory_order_release);  // [core-2]
    return true;
  }

  // The checker: an invalidation numbered after `after`, completed, full or containing r; its
  // number, or 0.
  epoch_t covering(epoch_t after, iova_range r) const {
    const epoch_t done = completed();
    for (epoch_t e = done; e > after; --e) {
      const entry& x = log_[e];
      if (x.range.whole() || x.range.contains(r)) return e;
    }
    return 0;
  }
  std::uint64_t completed_at(epoch_t e) const {
    return log_[e].completed_ns.load(std::memory_order_relaxed);
  }

 private:
  struct entry {
    iova_range range;
    std::atomic<std::uint64_t> submitted_ns{0};
    std::atomic<std::uint64_t> completed_ns{0};
    std::atomic<bool> ready{false};
  };
  alignas(64) std::atomic<epoch_t> started_{0};
  alignas(64) std::atomic<epoch_t> completed_{0};
  std::atomic<epoch_t> completed_full_{0};
  std::vector<entry> log_;
};

// What happened to one frame (or IOVA range), for the checker and the printout.
struct freed_event {
  std::uint64_t at_ns;
  unsigned cpu;  // no_cpu: freed by the final drain
  domain_id d;
  std::uint64_t what;  // frame number or IOVA
  bool iova;
  epoch_t by;  // the covering invalidation
  std::uint64_t inv_done_ns;
  std::uint64_t retired_ns;
};

class platform {
 public:
  using frame = std::uint32_t;

  platform(unsigned cpus, unsigned domains, std::uint32_t frames)
      : timers_(cpus), queues_(domains), frames_(frames) {}

  // ---- the core's platform interface (include/ptreclaim/core/platform.hpp) ----
  unsigned current_cpu() const { return this_cpu; }
  std::uint64_t now_ns() const { return embed::now_ns(); }
  void arm_timer(unsigned cpu, std::uint64_t at) {
    timers_[cpu].at.store(at, std::memory_order_relaxed);
    timers_[cpu].armed.store(true, std::memory_order_release);  // (3) pairs with (4)
  }
  epoch_t invalidate(domain_id d, iova_range r) { return queues_[d].submit(r); }
  epoch_t stamp(domain_id d) { return queues_[d].stamp(); }
  epoch_t completed(domain_id d) { return queues_[d].completed(); }
  epoch_t completed_full(domain_id d) { return queues_[d].completed_full(); }
  epoch_t completed_seen(domain_id d) { return queues_[d].completed(); }
  epoch_t completed_full_seen(domain_id d) { return queues_[d].completed_full(); }
  bool wait(domain_id d, epoch_t e) {
    const std::uint64_t deadline = embed::now_ns() + 1'000'000'000;  // 1 s: a stuck queue
    while (queues_[d].completed() < e)
      if (embed::now_ns() > deadline) return false;
    return true;
  }
  void free_frames(unsigned, domain_id d, const frame* f, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      frame_state& s = frames_[f[i]];
      if (s.d != d) violation("frame " + std::to_string(f[i]) + " freed as another domain's");
      check(s.d, s.range, s.unlinked_at, s.retired_ns, f[i], false);
      s.state.store(state_free, std::memory_order_release);
    }
  }
  // Lazy DMA: the IOVA ranges go back to the allocator (here: the record of them is dropped).
  void free_iovas(unsigned, domain_id d, const iova_range* r, std::size_t k) {
    for (std::size_t i = 0; i < k; ++i) {
      unmapped u{};
      {
        std::lock_guard g(mu_);
        const auto it = iovas_.find(r[i].first);
        if (it == iovas_.end() || it->second.d != d || it->second.last != r[i].last) {
          violations_.push_back("IOVA " + std::to_string(r[i].first) +
                                " freed but never unmapped (or twice)");
          continue;
        }
        u = it->second;
        iovas_.erase(it);
      }
      check(d, r[i], u.unlinked_at, u.retired_ns, r[i].first, true);
    }
  }
  void core_bug(const char* what) { violation(std::string("core bug: ") + what); }

  // ---- the example's side ----
  iommu_queue& queue(domain_id d) { return queues_[d]; }
  unsigned domains() const { return static_cast<unsigned>(queues_.size()); }

  // Frame f of domain d was unlinked from the page table covering r: from now on only an
  // invalidation numbered after unlinked_at makes it safe to free.
  void unlinked(frame f, domain_id d, iova_range r) {
    frame_state& s = frames_[f];
    s.d = d;
    s.range = r;
    s.unlinked_at = queues_[d].started();
    s.retired_ns = embed::now_ns();
    s.state.store(state_retired, std::memory_order_relaxed);
  }
  // IOVA range r of d was unmapped (its PTEs cleared): it may be reused only after an
  // invalidation numbered after unlinked_at completes.
  void unmapped_iova(domain_id d, iova_range r) {
    const unmapped u{d, r.last, queues_[d].started(), embed::now_ns()};
    std::lock_guard g(mu_);
    iovas_[r.first] = u;
  }
  std::size_t iovas_outstanding() {
    std::lock_guard g(mu_);
    return iovas_.size();
  }
  bool is_free(frame f) const {
    return frames_[f].state.load(std::memory_order_acquire) == state_free;
  }
  // The example's allocator: a frame, marked live, or false.
  bool take(frame f) {
    int expect = state_free;
    return frames_[f].state.compare_exchange_strong(expect, state_live, std::memory_order_acq_rel);
  }
  std::uint32_t frames() const { return static_cast<std::uint32_t>(frames_.size()); }

  // CPU c's timer: fires (disarmed, true) if armed and due; the caller runs on_timer(c) on c.
  bool take_due_timer(unsigned c) {
    timer& t = timers_[c];
    if (!t.armed.load(std::memory_order_acquire)) return false;  // (4) pairs with (3)
    if (t.at.load(std::memory_order_relaxed) > embed::now_ns()) return false;
    return t.armed.exchange(false, std::memory_order_acq_rel);
  }
  void kill_timer(unsigned c) { timers_[c].armed.store(false, std::memory_order_release); }

  // Every free so far (under the log's lock) and the violations.
  std::vector<freed_event> events() {
    std::lock_guard g(mu_);
    return events_;
  }
  std::vector<std::string> violations() {
    std::lock_guard g(mu_);
    return violations_;
  }

  // An IOVA range the core hands back (after the lead's IOVA change, free_iova calls this).
  void check(domain_id d, iova_range r, epoch_t unlinked_at, std::uint64_t retired_ns,
             std::uint64_t what, bool iova) {
    const epoch_t by = queues_[d].covering(unlinked_at, r);
    const std::uint64_t now = embed::now_ns();
    std::lock_guard g(mu_);
    if (by == 0) {
      violations_.push_back(std::string(iova ? "IOVA " : "frame ") + std::to_string(what) +
                            " of domain " + std::to_string(d) +
                            " freed before an invalidation after its unmap (" +
                            std::to_string(unlinked_at) + ") covering it completed");
      return;
    }
    events_.push_back({now, this_cpu, d, what, iova, by, queues_[d].completed_at(by), retired_ns});
  }

 private:
  void violation(std::string what) {
    std::lock_guard g(mu_);
    violations_.push_back(std::move(what));
  }

  static constexpr int state_free = 0, state_live = 1, state_retired = 2;
  struct alignas(64) timer {
    std::atomic<bool> armed{false};
    std::atomic<std::uint64_t> at{0};
  };
  struct frame_state {
    std::atomic<int> state{state_free};
    domain_id d = 0;
    iova_range range;
    epoch_t unlinked_at = 0;
    std::uint64_t retired_ns = 0;
  };

  struct unmapped {
    domain_id d;
    std::uint64_t last;
    epoch_t unlinked_at;
    std::uint64_t retired_ns;
  };

  std::vector<timer> timers_;
  std::vector<iommu_queue> queues_;
  std::vector<frame_state> frames_;
  std::mutex mu_;
  std::vector<freed_event> events_;
  std::unordered_map<std::uint64_t, unmapped> iovas_;  // unmapped, not yet freed, by first
  std::vector<std::string> violations_;
};

}  // namespace embed
