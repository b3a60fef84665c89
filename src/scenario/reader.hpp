// Strict reading of TOML tables for scenario and cost files: every key must be known, of the
// right type and in range; the first problem is kept as "file:line:column: reason". Private to
// the scenario component.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ptreclaim/base/status.hpp"

namespace ptreclaim::sim::detail {

struct source_pos {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

// One parse: the file name, the first error, and where each key path was read (so validation
// errors found later, on the finished struct, can still name a line).
class read_context {
 public:
  explicit read_context(std::string file) : file_(std::move(file)) {}

  [[nodiscard]] bool failed() const noexcept { return !error_.ok(); }
  [[nodiscard]] const Status& error() const noexcept { return error_; }
  [[nodiscard]] const std::string& file() const noexcept { return file_; }

  // Keeps the first error only: later ones are usually consequences.
  void fail(const toml::source_region& at, const std::string& reason);
  void fail_at(source_pos at, const std::string& reason);
  void remember(const std::string& path, const toml::source_region& at);
  // Where `path` (or its closest recorded parent) was read; {0,0} when unknown.
  [[nodiscard]] source_pos where(const std::string& path) const;
  [[nodiscard]] std::string located(source_pos at, const std::string& reason) const;

 private:
  std::string file_;
  Status error_;
  std::map<std::string, source_pos> where_;
};

// A table being read. Every accessor marks its key as known; finish() rejects the rest.
class table_reader {
 public:
  table_reader(read_context& ctx, const toml::table& table, std::string path)
      : ctx_(ctx), table_(table), path_(std::move(path)) {}

  // The raw node (nullptr if absent); marks the key known.
  const toml::node* node(std::string_view key);
  [[nodiscard]] bool has(std::string_view key) const { return table_.contains(key); }
  [[nodiscard]] std::string key_path(std::string_view key) const;

  void uint(std::string_view key, std::uint64_t& out, std::uint64_t lo, std::uint64_t hi);
  template <class U>
  void uint_as(std::string_view key, U& out, std::uint64_t lo, std::uint64_t hi) {
    std::uint64_t v = out;
    uint(key, v, lo, hi);
    out = static_cast<U>(v);
  }
  void real(std::string_view key, double& out, double lo, double hi);
  void boolean(std::string_view key, bool& out);
  void string(std::string_view key, std::string& out);
  // A string that must be one of `names`; returns the index chosen (or -1 if absent/bad).
  int choice(std::string_view key, std::initializer_list<std::string_view> names);
  // An array of integers each in [lo, hi], or the string "all" (-> empty vector).
  void uint_list_or_all(std::string_view key, std::vector<unsigned>& out, std::uint64_t lo,
                        std::uint64_t hi);
  // A sub-table (nullptr if absent or not a table, which is reported).
  const toml::table* table(std::string_view key);

  // Rejects keys no accessor asked for. `what` names the place ("[iommu]", "the top level").
  void finish(std::string_view what);
  // Rejects a key with a reason (e.g. a section that does not apply to this kind).
  void reject(std::string_view key, const std::string& reason);

 private:
  void type_error(std::string_view key, const toml::node& n, std::string_view expected);

  read_context& ctx_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

[[nodiscard]] std::string_view toml_type_name(const toml::node& n) noexcept;

// Parses TOML text; on a syntax error records "file:line:column: reason" in ctx and returns an
// empty table.
[[nodiscard]] toml::table parse_toml(read_context& ctx, std::string_view text);

// "x.toml" -> "x"; "/a/b/x.toml" -> "x".
[[nodiscard]] std::string file_stem(std::string_view path);
// Folder of `path` ("" for a bare name).
[[nodiscard]] std::string dir_of(std::string_view path);

}  // namespace ptreclaim::sim::detail
