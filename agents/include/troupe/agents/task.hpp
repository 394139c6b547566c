#pragma once
/// Task, step and decision value types: the state a team keeps for every task it
/// owns, snapshotted to the store and shown on the control plane.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/base/error.hpp"

namespace troupe::agents {

enum class task_state : std::uint8_t { queued, running, waiting_decision, succeeded, failed, cancelled };
enum class step_state : std::uint8_t { pending, running, succeeded, failed, skipped };

std::string_view to_string(task_state s) noexcept;
std::string_view to_string(step_state s) noexcept;
std::optional<task_state> task_state_from(std::string_view s) noexcept;
std::optional<step_state> step_state_from(std::string_view s) noexcept;
inline bool is_terminal(task_state s) noexcept {
  return s == task_state::succeeded || s == task_state::failed || s == task_state::cancelled;
}

/// Priority names of DESIGN §2: low=2, normal=5, high=7, urgent=9; digits 0-9.
std::optional<int> parse_priority(std::string_view text) noexcept;

/// What a client submits.
/// A submit's audit row as the control plane prepared it, to be committed in the
/// same group commit as the new task (a crash then keeps both or neither).
struct submit_audit {
  std::string principal;
  std::string args_json;           ///< the command's arguments, secrets removed
  std::atomic<bool> committed{false};  ///< set by the team when the row went in with the task
};

struct task_spec {
  std::string team;   ///< run the team workflow, or
  std::string agent;  ///< run one step on this agent
  std::string input;
  int priority = 5;
  std::string idempotency_key;
  std::int64_t deadline_ms = 0;  ///< relative to submission; 0 = none
  int max_attempts = 0;          ///< 0 = the team's setting
  std::vector<std::string> depends_on;
  std::string metadata = "{}";   ///< JSON object, stored and echoed as is
  std::shared_ptr<submit_audit> audit;  ///< null: the caller audits the submit itself
};

struct usage_cost {
  std::int64_t tokens_in = 0;
  std::int64_t tokens_out = 0;
  double usd = 0;
  std::int64_t calls = 0;
  void add(const usage_cost& o) {
    tokens_in += o.tokens_in;
    tokens_out += o.tokens_out;
    usd += o.usd;
    calls += o.calls;
  }
};

struct step_run {
  std::string id;
  step_state state = step_state::pending;
  std::string agent;   ///< agent that ran it last
  std::string output;
  int attempts = 0;
  int loops = 0;       ///< times a decision loop reset this step
  std::optional<base::error> error;
  usage_cost cost;
  std::int64_t started_ms = 0;
  std::int64_t finished_ms = 0;
};

struct decision_record {
  std::string id;
  std::string step;
  std::string by;  ///< "human" or "agent:NAME"
  std::vector<std::string> options;
  std::string chosen;
  std::string decided_by;  ///< agent name, token name, or "timeout"/"default"
  std::string comment;     ///< operator comment or agent rationale
  bool pending = true;
  std::int64_t created_ms = 0;
  std::int64_t resolved_ms = 0;
  std::int64_t deadline_ms = 0;  ///< absolute; 0 = none
};

struct task {
  std::string id;
  std::string team;
  std::string agent;  ///< one-agent task
  std::string input;
  int priority = 5;
  std::string idempotency_key;
  std::int64_t deadline_at_ms = 0;  ///< absolute; 0 = none
  int max_attempts = 0;
  std::vector<std::string> depends_on;
  std::string metadata = "{}";
  task_state state = task_state::queued;
  std::vector<step_run> steps;
  std::vector<decision_record> decisions;
  std::string result;
  std::optional<base::error> error;
  usage_cost cost;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::int64_t seq = 0;            ///< journal sequence of the last change
  std::int64_t snapshot_seq = 0;   ///< seq of the last full snapshot written

  step_run* find_step(std::string_view step_id);
  decision_record* find_decision(std::string_view decision_id);
};

}  // namespace troupe::agents
