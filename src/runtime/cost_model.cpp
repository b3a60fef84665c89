#include "ptreclaim/runtime/cost_model.hpp"

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim::runtime {

std::string_view cost_kind_name(cost_kind k) noexcept {
  switch (k) {
    case cost_kind::pte_write:
      return "pte_write";
    case cost_kind::pte_read:
      return "pte_read";
    case cost_kind::frame_alloc:
      return "frame_alloc";
    case cost_kind::frame_free:
      return "frame_free";
    case cost_kind::enqueue:
      return "enqueue";
    case cost_kind::dequeue:
      return "dequeue";
    case cost_kind::inv_submit:
      return "inv_submit";
    case cost_kind::inv_poll:
      return "inv_poll";
    case cost_kind::cache_line_transfer:
      return "cache_line_transfer";
    case cost_kind::lock_uncontended:
      return "lock_uncontended";
    case cost_kind::op_overhead:
      return "op_overhead";
    case cost_kind::table_fill:
      return "table_fill";
    case cost_kind::count_:
      break;
  }
  PTR_ASSERT_MSG(false, "cost_kind_name: not a cost kind");
  return "?";
}

}  // namespace ptreclaim::runtime
