#pragma once
/// Private: typed, path-tracking reads of a JSON document against the declared
/// key table. Every problem is collected; a read never stops the load.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/config/config.hpp"

namespace troupe::config::detail {

using json = nlohmann::json;

/// A place in the document: the real path ("teams[0].workflow[2]") and the
/// declared-key pattern it matches ("teams[].workflow[]").
struct where {
  std::string path;
  std::string pattern;

  where key(std::string_view k) const;
  where index(std::size_t i) const;
  /// An entry of a map of names (providers, models, decision.on).
  where entry(const std::string& name) const;
};

/// `parent` + ".name", or + "[\"odd name\"]" when the name is not plain.
std::string member_path(const std::string& parent, const std::string& name);

/// "null", "boolean", "integer", "number", "string", "array" or "object".
std::string json_type_name(const json& j);
/// 'text'
std::string quote(std::string_view s);
/// "a, b, c" (each quoted when `quoted`).
std::string join(const std::vector<std::string>& items, bool quoted = false);
/// Optimal-string-alignment distance (adjacent swaps count 1), case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);
/// "; did you mean 'x'?" for the closest candidate within a small distance, else "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

/// Reads values at declared keys, checking type and bounds from key_info, and
/// appends a problem for each mismatch. Readers return true when `out` was set.
class reader {
 public:
  explicit reader(std::vector<problem>& out) : out_(out) {}

  void add(std::string path, std::string message);
  std::size_t problem_count() const { return out_.size(); }

  /// False (with a problem) when `j` is not an object; otherwise reports every
  /// key not declared under w.pattern, with a suggestion.
  bool object(const json& j, const where& w);
  /// False (with a problem) when `j` is not an array.
  bool array(const json& j, const where& w);

  /// The member `key` of `obj`, or nullptr; a missing required key is reported.
  const json* member(const json& obj, const where& w, std::string_view key);

  bool read(const json& obj, const where& w, std::string_view key, std::string& out);
  bool read(const json& obj, const where& w, std::string_view key, bool& out);
  bool read(const json& obj, const where& w, std::string_view key, int& out);
  bool read(const json& obj, const where& w, std::string_view key, std::int64_t& out);
  bool read(const json& obj, const where& w, std::string_view key, std::uint64_t& out);
  bool read(const json& obj, const where& w, std::string_view key, double& out);
  bool read(const json& obj, const where& w, std::string_view key, std::optional<double>& out);
  bool read(const json& obj, const where& w, std::string_view key, std::optional<int>& out);
  /// Bad items are reported and kept as "" so indices still match the document.
  bool read(const json& obj, const where& w, std::string_view key, std::vector<std::string>& out);
  bool read(const json& obj, const where& w, std::string_view key, millis_range& out);
  bool read(const json& obj, const where& w, std::string_view key,
            std::optional<millis_range>& out);
  /// A value_type::choice key; `out` gets the (valid) choice.
  bool read_choice(const json& obj, const where& w, std::string_view key, std::string& out);

  /// The declared key at w.pattern + "." + key (asserts it is declared).
  static const key_info& spec(const where& w, std::string_view key);
  /// "an integer in 1..64", "a number > 0", "one of 'a', 'b'".
  static std::string expected(const key_info& k);

 private:
  bool integer_value(const json& v, const where& at, const key_info& k, std::int64_t lo,
                     std::int64_t hi, std::int64_t& out);
  bool string_value(const json& v, const where& at, std::string& out);
  bool millis_value(const json& v, const where& at, const key_info& k, millis_range& out);

  std::vector<problem>& out_;
};

}  // namespace troupe::config::detail
