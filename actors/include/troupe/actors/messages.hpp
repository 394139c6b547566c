#pragma once
/// Message vocabulary of the actor layer. Everything here is local to one
/// process; payload structs are allowed as unsafe (non-serialisable) message
/// types because they never cross a node boundary yet.
///
/// Control-plane requests carry a reply_fn: the actor that finishes the request
/// calls it exactly once (from its own thread); the network side posts it back
/// onto its session. This keeps request/response state out of a router actor.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "troupe/agents/task.hpp"
#include "troupe/base/result.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::actors {

using reply_fn = std::function<void(base::result<nlohmann::json>)>;

// Work
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using assign_atom = caf::atom_constant<caf::atom("assign")>;
using step_done_atom = caf::atom_constant<caf::atom("stepdone")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using scripted_atom = caf::atom_constant<caf::atom("scripted")>;
// Queries
using task_atom = caf::atom_constant<caf::atom("task")>;
using tasks_atom = caf::atom_constant<caf::atom("tasks")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using decisions_atom = caf::atom_constant<caf::atom("decisions")>;
// Control (sent with message_priority::high)
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using decide_atom = caf::atom_constant<caf::atom("decide")>;
using pause_atom = caf::atom_constant<caf::atom("pause")>;
using resume_atom = caf::atom_constant<caf::atom("resume")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using restart_atom = caf::atom_constant<caf::atom("restart")>;
// Store
using write_atom = caf::atom_constant<caf::atom("write")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using audit_atom = caf::atom_constant<caf::atom("audit")>;
using ping_atom = caf::atom_constant<caf::atom("storeping")>;
using recover_atom = caf::atom_constant<caf::atom("recover")>;
// Team -> itself: whether a submit refused with its commit in doubt was stored (1), was
// not (0), or the store could not say (-1).
using doubt_atom = caf::atom_constant<caf::atom("indoubt")>;
// Decisions: decision actor -> team (resolved), team -> decision actor (finish)
using decided_atom = caf::atom_constant<caf::atom("decided")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
// Supervision
using ready_atom = caf::atom_constant<caf::atom("supready")>;
// Task actors (task_actor.cpp): task -> team (a step to dispatch, a pending human
// decision, the terminal state), team -> task (a call's report, a failure it must
// take: budget, deadline)
using want_step_atom = caf::atom_constant<caf::atom("wantstep")>;
using pending_atom = caf::atom_constant<caf::atom("dpending")>;
using task_ended_atom = caf::atom_constant<caf::atom("taskended")>;
using fail_atom = caf::atom_constant<caf::atom("taskfail")>;
using task_crashed_atom = caf::atom_constant<caf::atom("taskcrash")>;
/// Test hook, never mapped to a control-plane op: (fault_atom, target) makes the
/// receiving team throw ("" = the team itself, "decision:ID" = that decision actor,
/// "task:ID" = the task actor running that task, "call:AGENT" = one LLM call actor
/// of that agent).
using fault_atom = caf::atom_constant<caf::atom("fault")>;

/// One LLM call an agent performs for a task step.
struct work_order {
  std::uint64_t call_id = 0;
  std::string task_id;
  std::size_t step = 0;
  std::string step_id;
  int attempt = 1;
  int priority = 5;
  std::string prompt;  ///< rendered
  /// Template variables for scripted replies: "input", "step.ID", "agent", "attempt"
  /// (empty for network providers: their prompt is rendered already).
  std::vector<std::pair<std::string, std::string>> vars;
};

/// What an agent reports back for a work_order.
struct step_result {
  std::uint64_t call_id = 0;
  std::string agent;
  bool ok = false;
  std::string text;
  base::error error;
  std::int64_t tokens_in = 0;
  std::int64_t tokens_out = 0;
  std::int64_t latency_ms = 0;
  std::string provider;
  std::string model;
};

/// Template variables of a work order, prepared by the task actor that wants the step run.
using work_vars = std::vector<std::pair<std::string, std::string>>;
using work_vars_ptr = std::shared_ptr<const work_vars>;

/// A call's outcome as the team forwards it to the task actor: the agent's result with
/// what the team added (cost, and the rows that must commit with the step's journal entry).
struct call_report {
  step_result r;
  std::size_t step = 0;
  int attempt = 0;
  double usd = 0;
  std::int64_t started_ms = 0;
  std::vector<base::cost_row> costs;      ///< empty without a store
  std::vector<base::entity_row> spend;    ///< the team's and the agent's spend after this call
  /// A call an operator's abort took from its agent (its step was requeued): only what
  /// it cost counts, to the step and the task.
  bool aborted = false;
};

/// A JSON document as a message or response. Wrapped: CAF copies message elements with
/// brace initialisation, which turns a bare nlohmann::json into a one-element array.
struct json_reply {
  nlohmann::json value;
};

struct decide_cmd {
  std::string decision_id;
  std::string option;
  std::string comment;
  std::string who;
};

struct list_filter {
  std::string state;  ///< empty: any
  std::size_t limit = 100;
};

/// A piece of a group commit; the store merges many into one transaction.
using batch_ptr = std::shared_ptr<base::write_batch>;

/// The store's answer to one piece.
struct commit_reply {
  bool ok = false;
  base::error error;
  std::vector<base::idempotency_conflict> conflicts;  ///< indexes into the piece's new_tasks
};

/// The store's answer to (recover_atom, team): the team's unfinished tasks as
/// last committed, rebuilt like recovery at start.
struct recovered_tasks {
  bool ok = false;
  base::error error;
  std::vector<agents::task> tasks;
};

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::recovered_tasks)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::reply_fn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::work_order)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::step_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::call_report)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::work_vars_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::agents::task)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::agents::decision_record)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::json_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::base::error)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::decide_cmd)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::list_filter)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::batch_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::commit_reply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::agents::task_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<troupe::base::snapshot_store>)
