// Deferred-work objects owned by client code: tasklets (Xen), work items (Linux workqueue) and
// per-CPU timers (Xen). They are intrusive: scheduling one links the object itself into its
// CPU's queue, so scheduling never allocates. All operations on them go through a kernel
// (kernel.hpp); the fields here are private to the executor (executor.hpp), and other kernel
// implementations keep their own state beside them.
//
// Where each kind runs (the rules the reclamation policies rely on):
//   plain tasklet    only at its CPU's scheduler/idle point (never inside
//                    process_pending_softirqs()): Xen's default tasklet, run by do_tasklet().
//   softirq tasklet  at any softirq point of its CPU, including process_pending_softirqs()
//                    (Xen's softirq_tasklet_init()).
//   work item        at its CPU's scheduler point, in process context (Linux system_wq: bound
//                    to the queuing CPU).
//   timer            in softirq context on its CPU, at the first softirq point whose platform
//                    time is >= its expiry.
// A queued object must stay alive and must not move until it has run or been killed/stopped;
// destroying one that is queued or running is a programmer error (asserted).
#pragma once

#include <cstdint>
#include <functional>

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim::runtime {

class executor;

// What the calling code is, as far as the executor knows (executor::context()).
enum class exec_context : std::uint8_t {
  none,      // no executor entity: the controller (test body, run() caller)
  process,   // a CPU's program step
  softirq,   // a softirq tasklet or a timer callback
  tasklet,   // a plain tasklet
  work,      // a work item
  notifier,  // a CPU hotplug notifier
  actor,     // a non-CPU actor (device, IOMMU engine)
};
[[nodiscard]] const char* exec_context_name(exec_context c) noexcept;

enum class tasklet_kind : std::uint8_t { plain, softirq };

inline constexpr unsigned no_cpu = ~0u;

namespace detail {
// Doubly linked FIFO threaded through T::q_next_ / T::q_prev_ (T befriends it).
template <class T>
class fifo {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }
  [[nodiscard]] T* front() const noexcept { return head_; }
  void push_back(T* t) noexcept {
    t->q_prev_ = tail_;
    t->q_next_ = nullptr;
    if (tail_)
      tail_->q_next_ = t;
    else
      head_ = t;
    tail_ = t;
    ++size_;
  }
  void remove(T* t) noexcept {
    if (t->q_prev_)
      t->q_prev_->q_next_ = t->q_next_;
    else
      head_ = t->q_next_;
    if (t->q_next_)
      t->q_next_->q_prev_ = t->q_prev_;
    else
      tail_ = t->q_prev_;
    t->q_next_ = t->q_prev_ = nullptr;
    --size_;
  }
  T* pop_front() noexcept {
    T* t = head_;
    if (t) remove(t);
    return t;
  }
  template <class F>
  void for_each(F&& f) const {
    for (T* t = head_; t; t = t->q_next_)
      f(t);
  }

 private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
  std::uint32_t size_ = 0;
};
}  // namespace detail

// A Xen tasklet. States: uninitialised -> (tasklet_init) idle <-> scheduled <-> running;
// tasklet_kill makes it dead (scheduling is ignored) until the next tasklet_init.
class tasklet {
 public:
  tasklet() = default;
  tasklet(const tasklet&) = delete;
  tasklet& operator=(const tasklet&) = delete;
  ~tasklet() {
    PTR_ASSERT_MSG(!queued_ && !running_, "tasklet destroyed while scheduled or running");
  }

 private:
  friend class executor;
  friend class detail::fifo<tasklet>;
  std::function<void()> fn_;
  tasklet_kind kind_ = tasklet_kind::plain;
  bool initialised_ = false;
  bool queued_ = false;            // linked on cpu_'s queue
  bool running_ = false;           // its function is executing (on cpu_)
  bool dead_ = false;              // killed: schedule requests are ignored until re-init
  unsigned cpu_ = no_cpu;          // CPU it is queued on or running on
  unsigned resched_cpu_ = no_cpu;  // scheduled while running: requeue here afterwards
  tasklet* q_next_ = nullptr;
  tasklet* q_prev_ = nullptr;
};

// A Linux work item on the system workqueue (bound: it runs on the CPU that queued it).
class work_item {
 public:
  work_item() = default;
  work_item(const work_item&) = delete;
  work_item& operator=(const work_item&) = delete;
  ~work_item() {
    PTR_ASSERT_MSG(!queued_ && !running_, "work_item destroyed while pending or running");
  }

 private:
  friend class executor;
  friend class detail::fifo<work_item>;
  std::function<void()> fn_;
  bool initialised_ = false;
  bool queued_ = false;  // PENDING: linked on cpu_'s queue
  bool running_ = false;
  unsigned cpu_ = no_cpu;
  unsigned resched_cpu_ = no_cpu;  // queued while running: requeue here (same CPU) afterwards
  // The clock of cpu_ when the last run ended. The deterministic executor runs a work item ahead
  // of other CPUs' clocks: to a CPU whose clock is earlier, it is still running.
  std::uint64_t ran_until_ns_ = 0;
  work_item* q_next_ = nullptr;
  work_item* q_prev_ = nullptr;
};

// A Xen per-CPU timer: armed at an absolute platform time, fires once in softirq context on
// its CPU. Re-arming an armed timer moves its expiry.
class timer {
 public:
  timer() = default;
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;
  ~timer() { PTR_ASSERT_MSG(!queued_ && !running_, "timer destroyed while armed or running"); }

 private:
  friend class executor;
  friend class detail::fifo<timer>;
  std::function<void()> fn_;
  bool initialised_ = false;
  bool queued_ = false;  // armed
  bool running_ = false;
  bool dead_ = false;
  unsigned cpu_ = no_cpu;
  std::uint64_t expires_ns_ = 0;
  timer* q_next_ = nullptr;
  timer* q_prev_ = nullptr;
};

}  // namespace ptreclaim::runtime
