#pragma once
/// The restart policy of a supervisor, as a pure value: which children restart
/// when one fails (one_for_one, one_for_all, rest_for_one) and whether the
/// restart intensity (`max_restarts` within `within_ms`) is exceeded, in which
/// case the supervisor gives up and escalates. Time is passed in, so the policy
/// is tested without clocks or actors; the actor-side helper (supervisor.hpp)
/// feeds it the actor clock.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "troupe/config/config.hpp"

namespace troupe::actors::supervision {

using strategy = config::supervision_strategy;

/// What a supervisor does about one failed child.
struct restart_plan {
  bool escalate = false;             ///< intensity exceeded: stop every child, fail upwards
  std::vector<std::size_t> restart;  ///< positions to stop and start again, in start order
};

class restart_policy {
 public:
  restart_policy() = default;
  restart_policy(strategy s, int max_restarts, std::int64_t within_ms);
  explicit restart_policy(const config::supervision& cfg)
      : restart_policy(cfg.strategy, cfg.max_restarts, cfg.within_ms) {}

  /// Records the failure of the child at `failed` (of `children`, in start order)
  /// at `now_ms` and says what to do. Restarts older than `within_ms` no longer
  /// count; the failure that makes the count exceed `max_restarts` escalates.
  restart_plan on_failure(std::size_t failed, std::size_t children, std::int64_t now_ms);
  /// Forgets the restart history (after an operator restart or an escalation).
  void reset() { times_.clear(); }
  /// Restarts counted in the window ending at `now_ms`.
  std::size_t restarts_in_window(std::int64_t now_ms) const;

  strategy kind() const { return strategy_; }

 private:
  void slide(std::int64_t now_ms);

  strategy strategy_ = strategy::one_for_one;
  int max_restarts_ = 5;
  std::int64_t within_ms_ = 60000;
  std::vector<std::int64_t> times_;  ///< restarts in the window, oldest first (empty costs nothing)
};

}  // namespace troupe::actors::supervision
