#pragma once
/// Per-provider circuit breaker: closed -> open after `failures` consecutive
/// failures; open fails calls fast for `open_ms`; then half-open lets exactly one
/// probe through, whose outcome closes or reopens it. Time is passed in, so the
/// state machine is tested without clocks. Not thread-safe (one provider strand).
#include <cstdint>
#include <string_view>

namespace troupe::protocols::llm {

enum class breaker_state { closed, open, half_open };

std::string_view to_string(breaker_state s) noexcept;

class circuit_breaker {
 public:
  circuit_breaker(int failures, std::int64_t open_ms)
      : threshold_(failures < 1 ? 1 : failures), open_ms_(open_ms) {}

  /// May a request start at `now_ms`? In half-open only the first caller gets
  /// true (the probe) until its outcome is recorded.
  bool allow(std::int64_t now_ms);
  void record_success();
  void record_failure(std::int64_t now_ms);
  /// The probe was abandoned (cancelled) without an outcome: let another probe go.
  void release_probe();
  breaker_state state(std::int64_t now_ms) const;
  int consecutive_failures() const noexcept { return failures_; }
  /// Milliseconds until a probe may start (0 when not open).
  std::int64_t remaining_open_ms(std::int64_t now_ms) const;

 private:
  int threshold_;
  std::int64_t open_ms_;
  int failures_ = 0;
  bool open_ = false;
  bool probing_ = false;
  std::int64_t opened_at_ = 0;
};

}  // namespace troupe::protocols::llm
