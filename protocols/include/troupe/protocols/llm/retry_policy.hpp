#pragma once
/// Retry timing: exponential backoff with jitter, and the provider's own
/// `retry-after` hints.
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

#include "troupe/config/config.hpp"

namespace troupe::protocols::llm {

/// Delay before retry number `retry` (1 = first retry): base_ms * 2^(retry-1)
/// capped at max_ms, then "equal jitter" (uniform in [d/2, d]) so that a crowd of
/// failed calls does not come back in lockstep.
std::int64_t backoff_ms(const config::retry_policy& policy, int retry, std::mt19937_64& rng);

/// The provider's wait hint in milliseconds: `retry-after-ms` (milliseconds)
/// when it parses, else `retry-after` as seconds (possibly fractional) or as an
/// HTTP-date (RFC 9110 section 5.6.7), counted from `now` (a date in the past
/// gives 0). nullopt when both are absent or unparsable: the caller then uses
/// its normal backoff.
std::optional<std::int64_t> parse_retry_after(
    std::string_view retry_after, std::string_view retry_after_ms,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

/// Parses an HTTP-date in any of the three forms RFC 9110 says a recipient must
/// accept: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850
/// form ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994").
/// A two-digit RFC 850 year more than 50 years after `now` is taken from the
/// previous century. nullopt when the text is none of these or not a real date.
std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view text, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace troupe::protocols::llm
