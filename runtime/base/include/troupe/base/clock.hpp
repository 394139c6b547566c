#pragma once
/// Wall-clock helpers. Actors use their own (virtual in tests) clock for timers;
/// these stamps are only for records (created/updated times, events).
#include <chrono>
#include <cstdint>
#include <string>

namespace troupe::base {

/// Milliseconds since the Unix epoch.
inline std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. "2026-01-02T03:04:05.678Z".
std::string format_rfc3339(std::int64_t ms_since_epoch);

}  // namespace troupe::base
