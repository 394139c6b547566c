#pragma once
/// A team workflow compiled into a graph, and the pure functions that move a
/// task through it: which steps are ready, what a finished step or a decision
/// does to the task, when the task is done.
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "troupe/agents/task.hpp"
#include "troupe/config/config.hpp"

namespace troupe::agents {

struct workflow_node {
  std::string id;
  std::string agent;       ///< fixed agent, or
  std::string capability;  ///< any agent with it; for decisions: the deciding agent is in `agent`
  std::string prompt;
  bool is_decision = false;
  bool human = false;      ///< human decision
  config::decision decide; ///< valid when is_decision
  std::vector<std::size_t> deps;               ///< indexes of steps that must succeed first
  std::map<std::string, std::size_t> on;       ///< decision option -> loop target index
  int max_attempts = 0;                        ///< 0: team default
};

/// Immutable, shared by every task of a team (or one-agent tasks).
struct workflow {
  std::vector<workflow_node> nodes;
  std::size_t result_node = 0;  ///< whose output becomes the task result

  /// Builds the graph of a validated team config.
  static std::shared_ptr<const workflow> from_team(const config::team& team);
  /// A one-step workflow running `input` on one agent.
  static std::shared_ptr<const workflow> single_agent(const std::string& agent);
  /// Nodes reachable from `from` through dependency edges (its descendants), including it.
  std::vector<std::size_t> descendants(std::size_t from) const;
};

/// Initializes the task's steps from the workflow (all pending).
void init_steps(task& t, const workflow& wf);

/// Indexes of steps that are pending with every dependency succeeded or skipped.
std::vector<std::size_t> ready_steps(const task& t, const workflow& wf);

/// True when every step has succeeded or was skipped.
bool all_done(const task& t);

/// What a decision's outcome does to the task.
enum class decision_effect { proceed, loop_back, loop_limit };

/// Applies a decision taken at step `node` with `option`: records it on the step
/// (output = option) and, if the option has an `on` edge whose loop budget is not
/// spent, resets the target and every step depending on it to pending. Returns
/// what happened.
decision_effect apply_decision(task& t, const workflow& wf, std::size_t node, const std::string& option);

/// Parses an agent's reply into one of `options`: the first option that appears
/// as a whole word (case-insensitive), preferring one at the start of the reply.
/// Empty when no option matches.
std::string parse_decision(std::string_view reply, const std::vector<std::string>& options);

}  // namespace troupe::agents
