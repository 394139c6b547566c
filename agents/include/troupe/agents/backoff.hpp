#pragma once
/// Retry backoff: exponential with full jitter, capped.
#include <cstdint>
#include <random>

namespace troupe::agents {

/// Delay before retry number `attempt` (1 = first retry): a uniform draw in
/// [base*2^(attempt-1)/2, base*2^(attempt-1)], capped at max_ms.
std::int64_t backoff_ms(int attempt, std::int64_t base_ms, std::int64_t max_ms, std::mt19937_64& rng);

}  // namespace troupe::agents
