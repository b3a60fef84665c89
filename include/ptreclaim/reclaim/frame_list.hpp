// An intrusive FIFO of frames threaded through mem::frame_meta::link (Xen's page_list): queuing
// a retired frame never allocates. Not synchronised: the owner (one CPU, or whoever holds the
// list's lock) is the only user. A frame is on at most one list at a time (asserted in debug
// builds through the link being unset when pushed).
#pragma once

#include <cstdint>

#include "ptreclaim/base/assert.hpp"
#include "ptreclaim/mem/frame_pool.hpp"

namespace ptreclaim::reclaim {

class frame_list {
 public:
  [[nodiscard]] bool empty() const noexcept { return !head_.valid(); }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] mem::frame_id front() const noexcept { return head_; }

  void push_back(mem::frame_pool& pool, mem::frame_id f) noexcept {
    mem::frame_meta& m = pool.meta(f);
    PTR_DASSERT(m.link.load(std::memory_order_relaxed) == mem::no_frame.value);
    m.link.store(mem::no_frame.value, std::memory_order_relaxed);
    if (tail_.valid()) {
      pool.meta(tail_).link.store(f.value, std::memory_order_relaxed);
    } else {
      head_ = f;
    }
    tail_ = f;
    ++size_;
  }
  mem::frame_id pop_front(mem::frame_pool& pool) noexcept {
    const mem::frame_id f = head_;
    if (!f.valid()) return f;
    mem::frame_meta& m = pool.meta(f);
    head_ = mem::frame_id{m.link.load(std::memory_order_relaxed)};
    m.link.store(mem::no_frame.value, std::memory_order_relaxed);
    if (!head_.valid()) tail_ = mem::no_frame;
    --size_;
    return f;
  }
  // Calls fn(frame) for every frame, front to back; fn must not change the list.
  template <class Fn>
  void for_each(const mem::frame_pool& pool, Fn&& fn) const {
    for (mem::frame_id f = head_; f.valid();
         f = mem::frame_id{pool.meta(f).link.load(std::memory_order_relaxed)})
      fn(f);
  }
  // Moves every frame of `other` to the end of this list (page_list_splice); other is empty after.
  void splice_back(mem::frame_pool& pool, frame_list& other) noexcept {
    if (other.empty()) return;
    if (tail_.valid()) {
      pool.meta(tail_).link.store(other.head_.value, std::memory_order_relaxed);
    } else {
      head_ = other.head_;
    }
    tail_ = other.tail_;
    size_ += other.size_;
    other = frame_list{};
  }

 private:
  mem::frame_id head_{};
  mem::frame_id tail_{};
  std::uint64_t size_ = 0;
};

}  // namespace ptreclaim::reclaim
