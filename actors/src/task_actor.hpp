#pragma once
// Private: the task actor, one per *running* task of a team (task_actor.cpp).
//
// A queued task is plain data in its team's queue; the team spawns the task's actor
// when the task starts (its first step is dispatched to an agent, or its first step is
// a human decision, or the task was already under way when recovered) and the actor
// lives until the task is terminal. It owns the task record while it runs: it drives
// the workflow (sequential, DAG `after`, decision steps, `on` loops), retries failed
// steps with backoff, commits every change (journal patch, snapshot every N), emits
// the task's events and reports the terminal state to its team.
//
// The team stays the dispatcher: a step the task actor wants run goes to the team
// (want_step_atom), which queues it by priority, picks an agent with a free slot,
// checks budgets, sends the work order and forwards the agent's result to the task
// actor as a call_report. The team supervises its task actors: see team_tasks.cpp.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/team_actor.hpp"
#include "troupe/agents/event.hpp"
#include "troupe/agents/workflow.hpp"

namespace troupe::actors::detail {

/// What every task actor of one team shares; replaced (never edited) by a reload.
struct task_env {
  std::string team;
  caf::actor team_actor;
  caf::actor store;  ///< invalid: no persistence
  std::shared_ptr<agents::event_bus> bus;
  std::shared_ptr<team_stats> stats;
  int snapshot_every = 16;
  int max_attempts = 3;  ///< the team's default
  std::int64_t backoff_ms = 500;
  std::int64_t backoff_max_ms = 30000;
};

/// Written by a task actor's exception handler (on its own thread, before it ends);
/// read by the team after the exit message: the task as it was when it threw.
struct task_crash_box {
  std::mutex mutex;
  std::optional<agents::task> task;
};

/// The team's entry of a task as its calls, queued steps and task actor hold it: found
/// again in team_state::slots without hashing the id into a table of thousands of cold
/// entries (a lookup there cost ~1 us in cache and TLB misses). An entry evicted
/// meanwhile frees its slot, and a slot taken again has another gen, so a stale
/// reference finds nothing instead of the wrong task.
struct task_ref {
  std::uint32_t slot = 0;
  std::uint64_t gen = 0;  ///< from 1: no entry has 0
};

struct task_start {
  agents::task t;
  std::shared_ptr<const agents::workflow> wf;
  std::shared_ptr<const task_env> env;
  std::shared_ptr<task_crash_box> box;
  /// Set when this incarnation replaces one that crashed: why.
  std::string restarted_after;
  task_ref ref;  ///< sent back with the actor's messages to the team
};

/// Spawns a task actor for `team`. Not linked: a crash reaches the team as
/// task_crashed_atom from the actor's exception handler; the team stops its task
/// actors when it ends.
caf::actor spawn_task_actor(caf::local_actor* team, task_start start);

/// Commits one change of `t` through the store actor (journal patch of `steps` and
/// `decisions`, or a full snapshot every `snapshot_every` changes and at the end),
/// with the cost and spend rows that belong to it; then calls `then`. Without a
/// store it calls `then` at once. `can_wait`: nobody but the task's own announcement
/// waits for this commit (write_batch::can_wait).
void persist_task(caf::event_based_actor* self, const task_env& env, agents::task& t,
                  const std::vector<std::size_t>& steps, const std::vector<std::size_t>& decisions,
                  std::vector<base::cost_row> costs, std::vector<base::entity_row> spend, std::function<void()> then,
                  bool can_wait = false);

/// Publishes a task.update event about `t` (and one of its steps).
void emit_task_event(const task_env& env, const agents::task& t, const char* what,
                     std::optional<std::size_t> step = std::nullopt);

/// Attempts a step may take: the step's own setting, else the task's, else the team's.
int max_attempts_for(const agents::task& t, const agents::workflow_node& node, int team_default);

}  // namespace troupe::actors::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::detail::task_ref)
