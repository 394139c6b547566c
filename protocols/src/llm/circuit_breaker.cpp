#include "troupe/protocols/llm/circuit_breaker.hpp"

namespace troupe::protocols::llm {

std::string_view to_string(breaker_state s) noexcept {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
  }
  return "closed";
}

bool circuit_breaker::allow(std::int64_t now_ms) {
  if (!open_) return true;
  if (now_ms - opened_at_ < open_ms_) return false;
  // Half-open: exactly one probe at a time decides whether the provider is back.
  if (probing_) return false;
  probing_ = true;
  return true;
}

void circuit_breaker::record_success() {
  failures_ = 0;
  open_ = false;
  probing_ = false;
}

void circuit_breaker::record_failure(std::int64_t now_ms) {
  ++failures_;
  if (probing_ || (!open_ && failures_ >= threshold_)) {
    open_ = true;
    opened_at_ = now_ms;
  }
  probing_ = false;
}

void circuit_breaker::release_probe() { probing_ = false; }

breaker_state circuit_breaker::state(std::int64_t now_ms) const {
  if (!open_) return breaker_state::closed;
  return now_ms - opened_at_ < open_ms_ ? breaker_state::open : breaker_state::half_open;
}

std::int64_t circuit_breaker::remaining_open_ms(std::int64_t now_ms) const {
  if (!open_) return 0;
  auto left = open_ms_ - (now_ms - opened_at_);
  return left > 0 ? left : 0;
}

}  // namespace troupe::protocols::llm
