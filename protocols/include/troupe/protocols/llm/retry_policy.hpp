#pragma once
/// Retry timing: exponential backoff with jitter, and the provider's own
/// `retry-after` hints.
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

/// Parses the `retry-after-ms` (milliseconds) or `retry-after` header (seconds,
/// possibly fractional; HTTP dates are not honoured). nullopt when absent or
/// unparsable.
std::optional<std::int64_t> parse_retry_after(std::string_view retry_after,
                                              std::string_view retry_after_ms);

}  // namespace troupe::protocols::llm
