// The mechanism benchmark's frames: a per-thread free list of pre-faulted 4 KiB frames, the
// cheapest allocator a hypervisor could have, so that what a reclaimer adds on top is visible.
//
// Frames live in one anonymous mapping (2 MiB aligned, MADV_HUGEPAGE: Xen's and Linux's direct
// maps use superpages, so a frame does not cost a TLB miss of its own), touched once at start.
// Each frame has a 64-byte metadata entry in a dense array beside it, the struct page_info /
// struct page of this pool: the retire time of a sampled frame, the remote stack's link, and a
// peer's intrusive node (rcu_head, xenium's node), as Linux keeps an rcu_head in struct page.
// The frame itself gets one word written per allocation (the page-table page's use); nothing
// else touches it, so a free reads metadata only, as a hypervisor's does.
//
// Thread t owns frames [t * per_thread, (t + 1) * per_thread). Its free list is a plain array
// stack (no atomics on the owner's path); a frame freed by another thread (a liburcu worker, the
// mutex list's worker, a drain) goes to the owner's remote stack, a lock-free push-only list
// linked through the metadata that the owner empties whole with one exchange (no ABA: nothing is
// popped singly).
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>

#include "ptreclaim/base/histogram.hpp"

namespace ptreclaim::bench::mech {

using frame_index = std::uint32_t;
constexpr frame_index no_frame = ~frame_index{0};
constexpr std::size_t frame_bytes = 4096;
constexpr std::size_t node_bytes = 48;  // a peer's node, in the frame's metadata
constexpr unsigned max_threads = 2;

inline std::uint64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// A spin-wait hint (x86 PAUSE), nothing elsewhere.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Which pool owner the calling thread is (its benchmark thread index), or none (a worker).
inline thread_local unsigned tls_owner = ~0u;

// Retire-to-free latency of sampled frames, recorded by whichever thread frees them: relaxed
// atomic buckets (log_histogram's layout, 1/16 resolution), so no lock on any free path.
class latency_buckets {
 public:
  void record(std::uint64_t ns) noexcept {
    b_[log_histogram::bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
  }
  void clear() noexcept {
    for (auto& b : b_)
      b.store(0, std::memory_order_relaxed);
  }
  [[nodiscard]] log_histogram snapshot() const noexcept {
    log_histogram h;
    for (unsigned i = 0; i < log_histogram::bucket_count; ++i) {
      const std::uint64_t n = b_[i].load(std::memory_order_relaxed);
      if (n != 0) h.record(log_histogram::bucket_lower(i), n);
    }
    return h;
  }

 private:
  std::atomic<std::uint64_t> b_[log_histogram::bucket_count] = {};
};

class frame_pool {
 public:
  frame_pool(unsigned threads, frame_index per_thread) : threads_(threads), per_(per_thread) {
    constexpr std::size_t huge = std::size_t{2} << 20;
    bytes_ = std::size_t{threads} * per_thread * frame_bytes;
    void* m =
        mmap(nullptr, bytes_ + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("mechanism_benchmark: mmap of the frame pool");
      std::exit(1);
    }
    map_ = m;
    const auto a = reinterpret_cast<std::uintptr_t>(m);
    base_ = reinterpret_cast<unsigned char*>((a + huge - 1) / huge * huge);
    (void)madvise(base_, bytes_, MADV_HUGEPAGE);  // a hint: without it the figures still hold
    meta_ = std::make_unique<frame_meta[]>(std::size_t{threads} * per_thread);
    owners_ = std::make_unique<owner[]>(threads);
    for (unsigned t = 0; t < threads; ++t) {
      owner& o = owners_[t];
      o.stack = std::make_unique<frame_index[]>(per_thread);
      for (frame_index i = 0; i < per_thread; ++i) {
        const frame_index f = t * per_thread + (per_thread - 1 - i);  // low frames on top
        use(f) = 0;                                                   // pre-fault
        o.stack[i] = f;
      }
      o.top.store(per_thread, std::memory_order_relaxed);
    }
  }
  ~frame_pool() { munmap(map_, bytes_ + (std::size_t{2} << 20)); }
  frame_pool(const frame_pool&) = delete;
  frame_pool& operator=(const frame_pool&) = delete;

  [[nodiscard]] unsigned threads() const noexcept { return threads_; }
  [[nodiscard]] frame_index per_thread() const noexcept { return per_; }
  // The frame's first word (its use).
  [[nodiscard]] std::uint64_t& use(frame_index f) noexcept {
    return *reinterpret_cast<std::uint64_t*>(base_ + std::size_t{f} * frame_bytes);
  }
  // The retire time of a sampled frame, 0 if not sampled.
  [[nodiscard]] std::uint64_t& sample(frame_index f) noexcept { return meta_[f].retired_ns; }
  [[nodiscard]] void* node(frame_index f) noexcept { return meta_[f].node; }
  [[nodiscard]] frame_index of_node(const void* n) const noexcept {
    const auto off = static_cast<std::size_t>(static_cast<const unsigned char*>(n) -
                                              reinterpret_cast<const unsigned char*>(meta_.get()));
    return static_cast<frame_index>(off / sizeof(frame_meta));
  }

  // A frame of the calling owner's, or no_frame when all of them are out.
  [[nodiscard]] frame_index alloc() noexcept {
    owner& o = owners_[tls_owner];
    std::uint32_t top = o.top.load(std::memory_order_relaxed);
    if (top == 0) top = take_remote(o);
    if (top == 0) return no_frame;
    --top;
    o.top.store(top, std::memory_order_relaxed);  // single writer: a plain store on x86
    return o.stack[top];
  }

  // Frees f from any thread (after the sampled latency, if f was sampled).
  void free(frame_index f) noexcept {
    std::uint64_t& sampled = meta_[f].retired_ns;
    if (sampled != 0) {
      const std::uint64_t t = now_ns();
      latency_.record(t >= sampled ? t - sampled : 0);
      sampled = 0;
    }
    // Own frame? A subtraction and a compare (no division on the free path).
    if (tls_owner < threads_ && f - tls_owner * per_ < per_) {
      owner& o = owners_[tls_owner];
      const std::uint32_t top = o.top.load(std::memory_order_relaxed);
      o.stack[top] = f;
      o.top.store(top + 1, std::memory_order_relaxed);
      return;
    }
    owner& o = owners_[f / per_];
    frame_index& link = meta_[f].link;
    frame_index head = o.remote.load(std::memory_order_relaxed);
    do {
      link = head;
    } while (!o.remote.compare_exchange_weak(head, f, std::memory_order_release,
                                             std::memory_order_relaxed));  // (1) pairs with (2)
    o.remote_count.fetch_add(1, std::memory_order_release);                // (3) pairs with (4)
  }

  // Frames of owner t not back in the pool (t's own view: exact when read by t).
  [[nodiscard]] std::uint64_t outstanding(unsigned t) const noexcept {
    const owner& o = owners_[t];
    const std::uint32_t top = o.top.load(std::memory_order_acquire);     // (6) pairs with (5)
    return per_ - top - o.remote_count.load(std::memory_order_acquire);  // (4) pairs with (3)
  }
  [[nodiscard]] bool all_home() const noexcept {
    for (unsigned t = 0; t < threads_; ++t)
      if (outstanding(t) != 0) return false;
    return true;
  }

  latency_buckets& latency() noexcept { return latency_; }

 private:
  struct alignas(64) frame_meta {
    std::uint64_t retired_ns = 0;
    frame_index link = no_frame;
    alignas(8) unsigned char node[node_bytes];
  };
  static_assert(sizeof(frame_meta) == 64, "one cache line of metadata per frame");

  struct alignas(64) owner {
    std::unique_ptr<frame_index[]> stack;
    std::atomic<std::uint32_t> top{0};  // written by the owner only
    alignas(64) std::atomic<frame_index> remote{no_frame};
    std::atomic<std::uint64_t> remote_count{0};
  };

  // Moves o's remote stack onto its free list; the new top.
  std::uint32_t take_remote(owner& o) noexcept {
    frame_index f = o.remote.exchange(no_frame, std::memory_order_acquire);  // (2) pairs with (1)
    std::uint32_t top = o.top.load(std::memory_order_relaxed);
    std::uint64_t n = 0;
    for (; f != no_frame; ++n) {
      o.stack[top++] = f;
      f = meta_[f].link;
    }
    // The count first, then the top: outstanding() may briefly miss a frame that is home (and
    // wait a little longer), never count one twice and see the pool full too early.
    o.remote_count.fetch_sub(n, std::memory_order_relaxed);
    o.top.store(top, std::memory_order_release);  // (5) pairs with (6)
    return top;
  }

  unsigned threads_;
  frame_index per_;
  std::size_t bytes_ = 0;
  void* map_ = nullptr;
  unsigned char* base_ = nullptr;
  std::unique_ptr<frame_meta[]> meta_;
  std::unique_ptr<owner[]> owners_;
  latency_buckets latency_;
};

}  // namespace ptreclaim::bench::mech
