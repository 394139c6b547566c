#include "troupe/protocols/llm/token_bucket.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::protocols::llm {

token_bucket::token_bucket(std::int64_t per_min, std::int64_t now_ms)
    : per_min_(per_min), level_(static_cast<double>(per_min > 0 ? per_min : 0)), last_ms_(now_ms) {}

void token_bucket::refill(std::int64_t now_ms) {
  if (now_ms <= last_ms_) return;
  double rate = static_cast<double>(per_min_) / 60000.0;
  level_ = std::min(static_cast<double>(per_min_), level_ + rate * static_cast<double>(now_ms - last_ms_));
  last_ms_ = now_ms;
}

bool token_bucket::try_take(std::int64_t n, std::int64_t now_ms) {
  if (unlimited()) return true;
  refill(now_ms);
  // A single request larger than the whole bucket would wait forever: clamp it.
  double need = static_cast<double>(std::min(n, per_min_));
  if (level_ + 1e-9 < need) return false;
  level_ -= static_cast<double>(n);
  return true;
}

std::int64_t token_bucket::wait_ms(std::int64_t n, std::int64_t now_ms) {
  if (unlimited()) return 0;
  refill(now_ms);
  double need = static_cast<double>(std::min(n, per_min_)) - level_;
  if (need <= 0) return 0;
  double rate = static_cast<double>(per_min_) / 60000.0;
  return static_cast<std::int64_t>(std::ceil(need / rate));
}

void token_bucket::adjust(std::int64_t n, std::int64_t now_ms) {
  if (unlimited()) return;
  refill(now_ms);
  level_ = std::min(static_cast<double>(per_min_), level_ + static_cast<double>(n));
}

double token_bucket::level(std::int64_t now_ms) {
  refill(now_ms);
  return level_;
}

}  // namespace troupe::protocols::llm
