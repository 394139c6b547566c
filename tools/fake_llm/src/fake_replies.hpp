#pragma once
/// Private to troupe_fake_llm: what the fake answers to one request (status,
/// body or SSE events, faults), decided from the request and the knobs. No
/// Beast here, so the reply logic builds and reads on its own.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "troupe/fake_llm/fake_llm.hpp"

namespace troupe::fake_llm::detail {

/// The parts of an HTTP request the fake looks at.
struct request_view {
  std::string path;
  bool is_post = true;
  std::string authorization;  ///< Authorization header
  std::string x_api_key;      ///< x-api-key header
  std::string body;
};

/// What the server decided to answer to one request.
struct plan {
  int status = 200;
  std::string body;                  ///< non-streaming body (or the error body)
  std::vector<std::string> events;   ///< SSE events, each ending with a blank line
  bool stream = false;
  bool truncate = false;
  bool hang = false;
  std::int64_t retry_after_ms = -1;
  bool retry_after_date = false;     ///< send retry-after as an HTTP-date
  std::int64_t latency_ms = 0;
  std::int64_t token_delay_ms = 0;
};

/// The IMF-fixdate (RFC 9110) of the first whole second at least `ms` from now,
/// as a provider puts in `retry-after`.
std::string http_date_after(std::int64_t ms);

/// Decides the answer and counts the request in `c`. The caller holds the lock
/// that guards `k`, `rng` and `c`.
plan make_plan(const request_view& r, const fake_knobs& k, std::mt19937_64& rng, fake_counters& c);

}  // namespace troupe::fake_llm::detail
