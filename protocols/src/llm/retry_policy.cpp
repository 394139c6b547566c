#include "troupe/protocols/llm/retry_policy.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

namespace troupe::protocols::llm {

std::int64_t backoff_ms(const config::retry_policy& policy, int retry, std::mt19937_64& rng) {
  double d = static_cast<double>(std::max<std::int64_t>(policy.base_ms, 0));
  for (int i = 1; i < retry && d < static_cast<double>(policy.max_ms); ++i) d *= 2;
  d = std::min(d, static_cast<double>(std::max<std::int64_t>(policy.max_ms, 0)));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return static_cast<std::int64_t>(d * jitter(rng));
}

namespace {
std::optional<double> parse_number(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  // std::from_chars for double is available in GCC 12; no locale involved.
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || !std::isfinite(v) || v < 0) return std::nullopt;
  return v;
}
}  // namespace

std::optional<std::int64_t> parse_retry_after(std::string_view retry_after, std::string_view retry_after_ms,
                                              std::chrono::system_clock::time_point now) {
  // Capped at about a year, so that an absurd hint ("1e300") cannot overflow the cast.
  constexpr double cap_ms = 3.2e10;
  if (auto ms = parse_number(retry_after_ms)) return static_cast<std::int64_t>(std::min(*ms, cap_ms));
  if (auto s = parse_number(retry_after)) return static_cast<std::int64_t>(std::min(*s * 1000.0, cap_ms));
  if (auto at = parse_http_date(retry_after, now))
    return std::clamp<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(*at - now).count(), 0,
                                    static_cast<std::int64_t>(cap_ms));
  return std::nullopt;
}

}  // namespace troupe::protocols::llm
