#include "troupe/agents/backoff.hpp"

#include <algorithm>

namespace troupe::agents {

std::int64_t backoff_ms(int attempt, std::int64_t base_ms, std::int64_t max_ms, std::mt19937_64& rng) {
  if (base_ms <= 0) return 0;
  auto shift = std::clamp(attempt - 1, 0, 30);
  auto ceiling = std::min<std::int64_t>(max_ms, base_ms << shift);
  // "Equal jitter": half fixed, half random, so retries spread out but never collapse to 0.
  auto half = ceiling / 2;
  return half + std::uniform_int_distribution<std::int64_t>(0, ceiling - half)(rng);
}

}  // namespace troupe::agents
