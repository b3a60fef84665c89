// Operating errors as values: Status (an error code plus an optional message) and Result<T>.
// Programmer errors are assertions (assert.hpp), never Status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "ptreclaim/base/assert.hpp"

namespace ptreclaim {

enum class errc : std::uint8_t {
  ok = 0,
  invalid_argument,  // a parameter is out of its documented domain
  out_of_range,      // an address or index beyond what the object covers
  address_in_use,    // mapping over something present, where the caller asked to refuse
  not_mapped,        // unmap/lookup of nothing
  no_memory,         // a bounded pool or allocation limit is exhausted
  queue_full,        // a bounded queue has no room; the submitter decides what to do
  busy,              // try again later (e.g. a lock-free race was lost)
  not_supported,     // the format or hardware cannot do this
  ledger_violation,  // the frame ledger refused an operation (double free, freeing a linked frame)
  parse_error,       // malformed configuration input
};

[[nodiscard]] std::string_view errc_name(errc code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(errc code) : code_(code) {}  // NOLINT(google-explicit-constructor): `return errc::x;`
  Status(errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }
  [[nodiscard]] bool ok() const noexcept { return code_ == errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] errc code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  // "no_memory: frame pool exhausted (capacity 1024)"
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const Status& a, errc b) noexcept { return a.code_ == b; }

 private:
  errc code_ = errc::ok;
  std::string message_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    PTR_ASSERT_MSG(!std::get<Status>(v_).ok(), "Result built from an ok Status has no value");
  }
  Result(errc code) : Result(Status(code)) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] T& value() & {
    PTR_ASSERT_MSG(ok(), "value() of a failed Result");
    return std::get<T>(v_);
  }
  [[nodiscard]] const T& value() const& {
    PTR_ASSERT_MSG(ok(), "value() of a failed Result");
    return std::get<T>(v_);
  }
  [[nodiscard]] T&& value() && {
    PTR_ASSERT_MSG(ok(), "value() of a failed Result");
    return std::get<T>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  [[nodiscard]] Status status() const { return ok() ? Status() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ptreclaim

// Propagates a failed Status out of the calling function.
#define PTR_TRY(expr)                                  \
  do {                                                 \
    ::ptreclaim::Status ptr_try_status_ = (expr);      \
    if (!ptr_try_status_.ok()) return ptr_try_status_; \
  } while (0)
