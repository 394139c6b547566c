#pragma once
/// Token bucket for a per-minute limit: holds at most `per_min` units and refills
/// continuously at per_min/60000 units per millisecond. Units may be given back
/// (a call used fewer tokens than estimated) or charged after the fact (it used
/// more), which can drive the level below zero. Time is passed in. Not thread-safe.
#include <cstdint>

namespace troupe::protocols::llm {

class token_bucket {
 public:
  /// per_min <= 0 means unlimited.
  explicit token_bucket(std::int64_t per_min, std::int64_t now_ms = 0);

  bool unlimited() const noexcept { return per_min_ <= 0; }
  /// Takes `n` units (clamped to the capacity) if available now.
  bool try_take(std::int64_t n, std::int64_t now_ms);
  /// Milliseconds until `n` units (clamped to the capacity) are available.
  std::int64_t wait_ms(std::int64_t n, std::int64_t now_ms);
  /// Adds (n > 0) or charges (n < 0) units after the fact.
  void adjust(std::int64_t n, std::int64_t now_ms);
  double level(std::int64_t now_ms);

 private:
  void refill(std::int64_t now_ms);
  std::int64_t per_min_;
  double level_;
  std::int64_t last_ms_;
};

}  // namespace troupe::protocols::llm
