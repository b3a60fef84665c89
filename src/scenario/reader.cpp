// Strict TOML reading shared by scenario and cost files.
#include "scenario/reader.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

namespace ptreclaim::sim::detail {

namespace {
source_pos pos_of(const toml::source_region& r) {
  return {r.begin.line, r.begin.column};
}

std::string fmt_double(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}
}  // namespace

void read_context::fail(const toml::source_region& at, const std::string& reason) {
  fail_at(pos_of(at), reason);
}

void read_context::fail_at(source_pos at, const std::string& reason) {
  if (failed()) return;
  error_ = Status(errc::parse_error, located(at, reason));
}

std::string read_context::located(source_pos at, const std::string& reason) const {
  if (at.line == 0) return file_ + ": " + reason;
  return file_ + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " + reason;
}

void read_context::remember(const std::string& path, const toml::source_region& at) {
  where_[path] = pos_of(at);
}

source_pos read_context::where(const std::string& path) const {
  std::string p = path;
  while (!p.empty()) {
    if (auto it = where_.find(p); it != where_.end()) return it->second;
    const auto cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  return {};
}

std::string_view toml_type_name(const toml::node& n) noexcept {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

std::string table_reader::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

const toml::node* table_reader::node(std::string_view key) {
  known_.emplace(key);
  const toml::node* n = table_.get(key);
  if (n != nullptr) ctx_.remember(key_path(key), n->source());
  return n;
}

void table_reader::type_error(std::string_view key, const toml::node& n,
                              std::string_view expected) {
  ctx_.fail(n.source(), "'" + key_path(key) + "' must be " + std::string(expected) + ", not " +
                            std::string(toml_type_name(n)));
}

void table_reader::uint(std::string_view key, std::uint64_t& out, std::uint64_t lo,
                        std::uint64_t hi) {
  const toml::node* n = node(key);
  if (n == nullptr) return;
  const auto* i = n->as_integer();
  if (i == nullptr) return type_error(key, *n, "an integer");
  const std::int64_t v = i->get();
  if (v < 0 || static_cast<std::uint64_t>(v) < lo || static_cast<std::uint64_t>(v) > hi) {
    ctx_.fail(n->source(), "'" + key_path(key) + "' = " + std::to_string(v) + " is out of range (" +
                               std::to_string(lo) + " .. " + std::to_string(hi) + ")");
    return;
  }
  out = static_cast<std::uint64_t>(v);
}

void table_reader::real(std::string_view key, double& out, double lo, double hi) {
  const toml::node* n = node(key);
  if (n == nullptr) return;
  double v = 0;
  if (const auto* f = n->as_floating_point()) {
    v = f->get();
  } else if (const auto* i = n->as_integer()) {
    v = static_cast<double>(i->get());
  } else {
    return type_error(key, *n, "a number");
  }
  if (!std::isfinite(v) || v < lo || v > hi) {
    ctx_.fail(n->source(), "'" + key_path(key) + "' = " + fmt_double(v) + " is out of range (" +
                               fmt_double(lo) + " .. " + fmt_double(hi) + ")");
    return;
  }
  out = v;
}

void table_reader::boolean(std::string_view key, bool& out) {
  const toml::node* n = node(key);
  if (n == nullptr) return;
  const auto* b = n->as_boolean();
  if (b == nullptr) return type_error(key, *n, "a boolean (true or false)");
  out = b->get();
}

void table_reader::string(std::string_view key, std::string& out) {
  const toml::node* n = node(key);
  if (n == nullptr) return;
  const auto* s = n->as_string();
  if (s == nullptr) return type_error(key, *n, "a string");
  out = s->get();
}

int table_reader::choice(std::string_view key, std::initializer_list<std::string_view> names) {
  const toml::node* n = node(key);
  if (n == nullptr) return -1;
  const auto* s = n->as_string();
  if (s == nullptr) {
    type_error(key, *n, "a string");
    return -1;
  }
  int index = 0;
  std::string list;
  for (std::string_view name : names) {
    if (s->get() == name) return index;
    ++index;
    if (!list.empty()) list += ", ";
    list += "\"" + std::string(name) + "\"";
  }
  ctx_.fail(n->source(), "'" + key_path(key) + "' = \"" + s->get() + "\" is not one of " + list);
  return -1;
}

void table_reader::uint_list_or_all(std::string_view key, std::vector<unsigned>& out,
                                    std::uint64_t lo, std::uint64_t hi) {
  const toml::node* n = node(key);
  if (n == nullptr) return;
  if (const auto* s = n->as_string()) {
    if (s->get() == "all") {
      out.clear();
      return;
    }
    ctx_.fail(n->source(), "'" + key_path(key) + "' must be \"all\" or an array of integers");
    return;
  }
  const auto* a = n->as_array();
  if (a == nullptr) return type_error(key, *n, "\"all\" or an array of integers");
  if (a->empty()) {
    ctx_.fail(n->source(), "'" + key_path(key) + "' must not be empty (use \"all\")");
    return;
  }
  std::vector<unsigned> values;
  for (const toml::node& e : *a) {
    const auto* i = e.as_integer();
    if (i == nullptr) {
      ctx_.fail(e.source(), "'" + key_path(key) + "' must hold integers, not " +
                                std::string(toml_type_name(e)));
      return;
    }
    const std::int64_t v = i->get();
    if (v < 0 || static_cast<std::uint64_t>(v) < lo || static_cast<std::uint64_t>(v) > hi) {
      ctx_.fail(e.source(), "'" + key_path(key) + "' entry " + std::to_string(v) +
                                " is out of range (" + std::to_string(lo) + " .. " +
                                std::to_string(hi) + ")");
      return;
    }
    for (unsigned seen : values) {
      if (seen == static_cast<unsigned>(v)) {
        ctx_.fail(e.source(), "'" + key_path(key) + "' lists " + std::to_string(v) + " twice");
        return;
      }
    }
    values.push_back(static_cast<unsigned>(v));
  }
  out = std::move(values);
}

const toml::table* table_reader::table(std::string_view key) {
  const toml::node* n = node(key);
  if (n == nullptr) return nullptr;
  const auto* t = n->as_table();
  if (t == nullptr) {
    type_error(key, *n, "a table ([" + key_path(key) + "])");
    return nullptr;
  }
  return t;
}

void table_reader::reject(std::string_view key, const std::string& reason) {
  known_.emplace(key);
  if (const toml::node* n = table_.get(key)) ctx_.fail(n->source(), reason);
}

void table_reader::finish(std::string_view what) {
  if (ctx_.failed()) return;
  for (auto&& [k, v] : table_) {
    if (known_.count(k.str()) != 0) continue;
    std::string known;
    for (const auto& name : known_) {
      if (!known.empty()) known += ", ";
      known += name;
    }
    const bool section = v.is_table() || v.is_array_of_tables();
    const std::string kind = section ? "unknown section [" + key_path(k.str()) + "]"
                                     : "unknown key '" + std::string(k.str()) + "'";
    std::string msg = kind;
    msg += " in ";
    msg += what;
    msg += " (known: " + known + ")";
    ctx_.fail(k.source(), msg);
    return;
  }
}

toml::table parse_toml(read_context& ctx, std::string_view text) {
  try {
    return toml::parse(text, ctx.file());
  } catch (const toml::parse_error& e) {
    ctx.fail(e.source(), std::string(e.description()));
  }
  return {};
}

std::string file_stem(std::string_view path) {
  const auto slash = path.find_last_of('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (base.size() > 5 && base.substr(base.size() - 5) == ".toml") base.remove_suffix(5);
  return std::string(base);
}

std::string dir_of(std::string_view path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash));
}

}  // namespace ptreclaim::sim::detail
