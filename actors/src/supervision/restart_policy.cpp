#include "troupe/actors/supervision/restart_policy.hpp"

#include <algorithm>

namespace troupe::actors::supervision {

restart_policy::restart_policy(strategy s, int max_restarts, std::int64_t within_ms)
    : strategy_(s), max_restarts_(std::max(0, max_restarts)), within_ms_(std::max<std::int64_t>(1, within_ms)) {}

void restart_policy::slide(std::int64_t now_ms) {
  // A restart exactly `within_ms` ago has left the window (OTP counts the open interval).
  auto first_kept = std::find_if(times_.begin(), times_.end(), [&](std::int64_t t) { return t > now_ms - within_ms_; });
  times_.erase(times_.begin(), first_kept);
}

std::size_t restart_policy::restarts_in_window(std::int64_t now_ms) const {
  return static_cast<std::size_t>(
      std::count_if(times_.begin(), times_.end(), [&](std::int64_t t) { return t > now_ms - within_ms_; }));
}

restart_plan restart_policy::on_failure(std::size_t failed, std::size_t children, std::int64_t now_ms) {
  restart_plan plan;
  slide(now_ms);
  times_.push_back(now_ms);
  if (static_cast<int>(times_.size()) > max_restarts_) {
    plan.escalate = true;
    times_.clear();  // the next life of this supervisor starts with a fresh budget
    return plan;
  }
  switch (strategy_) {
    case strategy::one_for_one: plan.restart.push_back(failed); break;
    case strategy::one_for_all:
      for (std::size_t i = 0; i < children; ++i) plan.restart.push_back(i);
      break;
    case strategy::rest_for_one:
      for (std::size_t i = failed; i < children; ++i) plan.restart.push_back(i);
      break;
  }
  return plan;
}

}  // namespace troupe::actors::supervision
