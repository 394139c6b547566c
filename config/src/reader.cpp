// Typed reads against the declared key table. Messages follow one pattern:
// "expected <what>, got <what arrived>", so every problem reads the same way.
#include "reader.hpp"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <climits>
#include <cmath>
#include <sstream>

#include "key_registry.hpp"

namespace troupe::config::detail {
namespace {

bool plain_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '_' || c == '-';
  });
}

std::string number_text(double v) {
  if (std::floor(v) == v && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  std::ostringstream o;
  o << v;
  return o.str();
}

/// The value as it arrived, short: numbers and booleans as written, strings quoted.
std::string got_text(const json& v) {
  if (v.is_string()) return quote(v.get<std::string>());
  if (v.is_number() || v.is_boolean()) return v.dump();
  return json_type_name(v);
}

}  // namespace

where where::key(std::string_view k) const {
  if (path.empty()) return {std::string(k), std::string(k)};
  return {path + "." + std::string(k), pattern + "." + std::string(k)};
}

where where::index(std::size_t i) const {
  return {path + "[" + std::to_string(i) + "]", pattern + "[]"};
}

std::string member_path(const std::string& parent, const std::string& name) {
  // Names with dots or spaces would make the path ambiguous: bracket them.
  if (!plain_name(name)) return parent + "[" + json(name).dump() + "]";
  return parent.empty() ? name : parent + "." + name;
}

where where::entry(const std::string& name) const {
  return {member_path(path, name), pattern + ".*"};
}

std::string json_type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "value";
  }
}

std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string join(const std::vector<std::string>& items, bool quoted) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + (quoted ? quote(i) : i);
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  // Short words get a tighter limit, or "id" would be suggested for every 2-letter typo.
  const std::size_t limit = word.size() <= 3 ? 1 : 2;
  const std::string* best = nullptr;
  std::size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    // A cut-short key ("timeout" for "timeout_ms") is as likely as a typo.
    const bool prefix = word.size() >= 4 && c.size() > word.size() &&
                        edit_distance(word, c.substr(0, word.size())) == 0;
    const std::size_t d = prefix ? 1 : edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  return best ? "; did you mean " + quote(*best) + "?" : "";
}

void reader::add(std::string path, std::string message) {
  out_.push_back({std::move(path), std::move(message)});
}

const key_info& reader::spec(const where& w, std::string_view key) {
  const key_info* k = find_key(w.key(key).pattern);
  assert(k != nullptr && "key read by the loader is not declared in key_registry.cpp");
  // Release builds: an undeclared key reads as an optional string rather than crash.
  static const key_info undeclared{};
  return k ? *k : undeclared;
}

std::string reader::expected(const key_info& k) {
  std::string range;
  if (k.min && k.max)
    range = " in " + number_text(*k.min) + ".." + number_text(*k.max);
  else if (k.min)
    range = (k.min_exclusive ? " > " : " >= ") + number_text(*k.min);
  switch (k.type) {
    case value_type::string:
      return "a string";
    case value_type::boolean:
      return "a boolean";
    case value_type::integer:
      return "an integer" + range;
    case value_type::number:
      return "a number" + range;
    case value_type::string_array:
      return "an array of strings";
    case value_type::object:
      return "an object";
    case value_type::array:
      return "an array";
    case value_type::map:
      return "an object";
    case value_type::millis:
      return "an integer" + range + " or [min, max]";
    case value_type::choice: {
      std::vector<std::string> q;
      for (const auto& c : k.choices) q.push_back(quote(c));
      return "one of " + join(q);
    }
  }
  return "a value";
}

bool reader::object(const json& j, const where& w) {
  if (!j.is_object()) {
    add(w.path, "expected an object, got " + json_type_name(j));
    return false;
  }
  const std::vector<std::string> known = child_keys(w.pattern);
  for (const auto& [k, v] : j.items()) {
    if (std::find(known.begin(), known.end(), k) != known.end()) continue;
    std::string hint = did_you_mean(k, known);
    if (hint.empty()) hint = "; expected one of: " + join(known);
    add(w.key(k).path, "unknown key " + quote(k) + hint);
  }
  return true;
}

bool reader::array(const json& j, const where& w) {
  if (j.is_array()) return true;
  add(w.path, "expected an array, got " + json_type_name(j));
  return false;
}

const json* reader::member(const json& obj, const where& w, std::string_view key) {
  auto it = obj.find(std::string(key));
  if (it != obj.end()) return &*it;
  if (spec(w, key).required) add(w.key(key).path, "missing required key " + quote(key));
  return nullptr;
}

bool reader::string_value(const json& v, const where& at, std::string& out) {
  if (!v.is_string()) {
    add(at.path, "expected a string, got " + json_type_name(v));
    return false;
  }
  out = v.get<std::string>();
  return true;
}

bool reader::integer_value(const json& v, const where& at, const key_info& k, std::int64_t lo,
                           std::int64_t hi, std::int64_t& out) {
  // 1e3 or 2.0 are integers written as floats; accept them, reject 2.5.
  const bool integral =
      v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()) &&
                                std::floor(v.get<double>()) == v.get<double>());
  if (!integral) {
    add(at.path,
        "expected " + expected(k) + ", got " + (v.is_number() ? got_text(v) : json_type_name(v)));
    return false;
  }
  const double d =
      v.is_number_unsigned() ? static_cast<double>(v.get<std::uint64_t>()) : v.get<double>();
  const bool below = k.min_exclusive ? d <= static_cast<double>(lo) : d < static_cast<double>(lo);
  if (below || d > static_cast<double>(hi)) {
    add(at.path, "expected " + expected(k) + ", got " + got_text(v));
    return false;
  }
  out = v.is_number_float() ? static_cast<std::int64_t>(d) : v.get<std::int64_t>();
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key, std::string& out) {
  const json* v = member(obj, w, key);
  return v && string_value(*v, w.key(key), out);
}

bool reader::read(const json& obj, const where& w, std::string_view key, bool& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  if (!v->is_boolean()) {
    add(w.key(key).path, "expected a boolean, got " + json_type_name(*v));
    return false;
  }
  out = v->get<bool>();
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key, std::int64_t& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  const key_info& k = spec(w, key);
  const auto lo = static_cast<std::int64_t>(k.min.value_or(static_cast<double>(INT64_MIN)));
  const std::int64_t hi = k.max ? static_cast<std::int64_t>(*k.max) : INT64_MAX / 2;
  return integer_value(*v, w.key(key), k, lo, hi, out);
}

bool reader::read(const json& obj, const where& w, std::string_view key, int& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  const key_info& k = spec(w, key);
  const auto lo = static_cast<std::int64_t>(k.min.value_or(INT_MIN));
  const auto hi = static_cast<std::int64_t>(k.max.value_or(INT_MAX));
  std::int64_t wide = 0;
  if (!integer_value(*v, w.key(key), k, lo, hi, wide)) return false;
  out = static_cast<int>(wide);
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key, std::optional<int>& out) {
  int v = 0;
  if (!read(obj, w, key, v)) return false;
  out = v;
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key, std::uint64_t& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  if (v->is_number_unsigned() || (v->is_number_integer() && v->get<std::int64_t>() >= 0)) {
    out = v->get<std::uint64_t>();
    return true;
  }
  const key_info& k = spec(w, key);
  add(w.key(key).path,
      "expected " + expected(k) + ", got " + (v->is_number() ? got_text(*v) : json_type_name(*v)));
  return false;
}

bool reader::read(const json& obj, const where& w, std::string_view key, double& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  const key_info& k = spec(w, key);
  if (!v->is_number()) {
    add(w.key(key).path, "expected " + expected(k) + ", got " + json_type_name(*v));
    return false;
  }
  const double d = v->get<double>();
  const bool below = k.min && (k.min_exclusive ? d <= *k.min : d < *k.min);
  if (below || (k.max && d > *k.max)) {
    add(w.key(key).path, "expected " + expected(k) + ", got " + got_text(*v));
    return false;
  }
  out = d;
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key,
                  std::optional<double>& out) {
  double v = 0;
  if (!read(obj, w, key, v)) return false;
  out = v;
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key,
                  std::vector<std::string>& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  const where at = w.key(key);
  if (!v->is_array()) {
    add(at.path, "expected an array of strings, got " + json_type_name(*v));
    return false;
  }
  out.clear();
  for (std::size_t i = 0; i < v->size(); ++i) {
    std::string s;
    string_value((*v)[i], at.index(i), s);
    out.push_back(std::move(s));
  }
  return true;
}

bool reader::millis_value(const json& v, const where& at, const key_info& k, millis_range& out) {
  const auto lo = static_cast<std::int64_t>(k.min.value_or(0));
  if (v.is_array()) {
    if (v.size() != 2) {
      add(at.path,
          "expected [min, max] with 2 integers, got " + std::to_string(v.size()) + " items");
      return false;
    }
    std::int64_t a = 0, b = 0;
    const bool ok_a = integer_value(v[0], at.index(0), k, lo, INT64_MAX / 2, a);
    const bool ok_b = integer_value(v[1], at.index(1), k, lo, INT64_MAX / 2, b);
    if (!ok_a || !ok_b) return false;
    if (a > b) {
      add(at.path,
          "expected min <= max, got [" + std::to_string(a) + ", " + std::to_string(b) + "]");
      return false;
    }
    out = {a, b};
    return true;
  }
  std::int64_t x = 0;
  if (!integer_value(v, at, k, lo, INT64_MAX / 2, x)) return false;
  out = {x, x};
  return true;
}

bool reader::read(const json& obj, const where& w, std::string_view key, millis_range& out) {
  const json* v = member(obj, w, key);
  return v && millis_value(*v, w.key(key), spec(w, key), out);
}

bool reader::read(const json& obj, const where& w, std::string_view key,
                  std::optional<millis_range>& out) {
  millis_range r;
  if (!read(obj, w, key, r)) return false;
  out = r;
  return true;
}

bool reader::read_choice(const json& obj, const where& w, std::string_view key, std::string& out) {
  const json* v = member(obj, w, key);
  if (!v) return false;
  const key_info& k = spec(w, key);
  if (!v->is_string()) {
    add(w.key(key).path, "expected " + expected(k) + ", got " + json_type_name(*v));
    return false;
  }
  const std::string s = v->get<std::string>();
  if (std::find(k.choices.begin(), k.choices.end(), s) == k.choices.end()) {
    add(w.key(key).path,
        "expected " + expected(k) + ", got " + quote(s) + did_you_mean(s, k.choices));
    return false;
  }
  out = s;
  return true;
}

}  // namespace troupe::config::detail
