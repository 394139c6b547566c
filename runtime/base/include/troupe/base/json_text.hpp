#pragma once
/// Writing JSON text directly, without a JSON tree: for the documents the daemon
/// writes on every LLM call or task (request bodies, stored snapshots and journal
/// deltas), where building and then dumping an nlohmann tree cost more than the
/// rest of the work. Readers parse the result with nlohmann as usual.
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::base {

/// Appends `s` as a JSON string (quoted, escaped). UTF-8 passes through; a byte that
/// does not start or continue a valid UTF-8 sequence becomes U+FFFD, so the text is
/// always valid JSON whatever `s` holds.
void append_json_string(std::string& out, std::string_view s);

/// Appends `"key":`; the key must need no escaping (a name chosen in the code).
inline void append_json_key(std::string& out, std::string_view key) {
  out += '"';
  out += key;
  out += "\":";
}

void append_json_int(std::string& out, std::int64_t v);

/// The shortest form that reads back as the same double; a NaN or an infinity,
/// which JSON cannot hold, is written as 0.
void append_json_double(std::string& out, double v);

/// Writes nested objects and arrays into `out`, placing the commas: open('{'),
/// then str / num / dbl members (or key() before a nested open), close('}').
/// In an array, next() before each element written with the append_* functions.
struct json_text_writer {
  std::string out;
  bool first = true;  ///< nothing written yet at this level: no comma before the next item

  void next() {
    if (!first) out += ',';
    first = false;
  }
  void open(char c) {
    out += c;
    first = true;
  }
  void close(char c) {
    out += c;
    first = false;
  }
  /// A member's key; its value follows without a comma.
  void key(std::string_view k) {
    next();
    append_json_key(out, k);
    first = true;
  }
  /// A member whose value is JSON text already (e.g. stored metadata).
  void raw(std::string_view k, std::string_view json) {
    key(k);
    out += json;
    first = false;
  }
  void str(std::string_view k, std::string_view v) {
    key(k);
    append_json_string(out, v);
    first = false;
  }
  void num(std::string_view k, std::int64_t v) {
    key(k);
    append_json_int(out, v);
    first = false;
  }
  void dbl(std::string_view k, double v) {
    key(k);
    append_json_double(out, v);
    first = false;
  }
};

}  // namespace troupe::base
