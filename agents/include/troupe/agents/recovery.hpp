#pragma once
/// Rebuilding unfinished tasks from what the store recovered: each task's
/// snapshot plus the journal deltas written after it. Used at start (every team)
/// and when the root supervisor restarts one team from its last committed state.
#include <string>
#include <vector>

#include "troupe/agents/task.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::agents {

struct rebuilt_tasks {
  std::vector<task> tasks;
  /// Tasks that could not be rebuilt ("task=ID error=..."); they stay stored, untouched.
  std::vector<std::string> problems;
};

/// Rebuilds the non-terminal tasks of `state`; with a non-empty `team`, only that team's.
rebuilt_tasks rebuild_tasks(const base::recovered_state& state, const std::string& team = {});

}  // namespace troupe::agents
