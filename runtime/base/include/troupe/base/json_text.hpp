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

}  // namespace troupe::base
