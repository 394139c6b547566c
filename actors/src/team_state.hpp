#pragma once
// Private: the team actor's state and the operations its handlers call.
#include <deque>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "task_actor.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/actors/supervision/supervisor.hpp"
#include "troupe/actors/team_actor.hpp"
#include "troupe/agents/work_queue.hpp"
#include "troupe/agents/workflow.hpp"

namespace troupe::actors::detail {

struct agent_slot {
  /// Shared with the agent's actor until its first work (an idle agent keeps one copy);
  /// replaced by a reload.
  std::shared_ptr<const agent_spec> spec;
  caf::actor handle;  ///< invalid while stopped (restarting, retired, or the team failed)
  int in_flight = 0;
  bool paused = false;
  bool failed = false;  ///< stopped with its team's failure (or so recovered): until an operator restart
  int restarts = 0;
  double spent_usd = 0;
  std::vector<std::string> selectors;  ///< "a:NAME", "c:CAPABILITY"
  bool retiring = false;  ///< removed by a reload: runs what only it can run, then stops (team_reload.cpp)
  bool retired = false;   ///< stopped; the slot stays so that indexes stay valid
};

/// A step a task actor wants run: its template variables, until its call reports.
struct prepared_step {
  std::size_t step = 0;
  int attempt = 0;
  work_vars_ptr vars;
};

/// What the team keeps of a task while its task actor runs it.
struct running_task {
  caf::actor actor;  ///< invalid while parked (the team failed after the actor crashed)
  std::shared_ptr<task_crash_box> box;
  std::vector<prepared_step> prepared;
};

/// A task as the team knows it. Queued: the task itself. Running (task actor alive):
/// the record as it was when the actor started, kept for what the team decides on
/// (priority, deadline, dependencies, loop guard counters) and for what a team crash
/// leaves behind without a store; queries go to the actor. Terminal: the final record.
struct task_entry {
  agents::task t;
  std::uint32_t slot = 0;  ///< its place in team_state::slots (see task_ref)
  std::uint64_t gen = 0;   ///< unique per entry of the team: a task_ref's check
  std::shared_ptr<const agents::workflow> wf;
  std::uint64_t order = 0;  ///< submission order: FIFO within a priority
  int active_calls = 0;
  std::unique_ptr<running_task> run;  ///< set from start to end (one pointer while queued)
};

/// A pending human decision, as the team's decision actor needs it and `decisions` lists it.
struct pending_decision {
  std::string task_id;
  agents::decision_record record;
  std::string default_option;
};

/// A submit refused because its commit failed with the outcome unknown
/// (base::error::in_doubt): kept until a read of the store tells whether the task was
/// stored after all. A stored one then runs like any other (durability contract 6).
struct in_doubt_submit {
  agents::task t;
  std::shared_ptr<const agents::workflow> wf;
};

struct call_info {
  std::string task_id;
  task_ref ref;
  std::size_t step = 0;
  int attempt = 0;
  std::size_t agent = 0;
  std::int64_t started_ms = 0;
};

struct queued_step {
  std::string task_id;
  task_ref ref;
  std::size_t step = 0;
  int attempt = 0;
};

using self_ptr = caf::stateful_actor<struct team_state>*;

struct team_state {
  static inline const char* name = "troupe.team";
  team_spec spec;
  std::shared_ptr<const agents::workflow> wf;
  std::vector<agent_slot> agents;
  std::unordered_map<std::string, std::size_t> agent_index;
  std::unordered_map<std::string, std::vector<std::size_t>> selector_agents;
  std::unordered_map<std::string, agents::work_queue<queued_step>> queues;
  std::unordered_map<std::string, task_entry> tasks;
  /// Entries of `tasks` by slot (task_ref); freed slots are taken again first.
  std::vector<task_entry*> slots;
  std::vector<std::uint32_t> free_slots;
  std::uint64_t next_gen = 1;
  std::deque<std::string> terminal_order;
  std::unordered_map<std::uint64_t, call_info> calls;
  /// Calls an operator's abort took from an agent that lives on (requeue_in_flight):
  /// the agent reports each once it has cancelled it, and what it cost is booked then.
  /// Those of an agent that stops are forgotten (no report comes).
  std::unordered_map<std::uint64_t, call_info> aborted_calls;
  std::unordered_map<std::string, std::string> idempotency;   ///< key -> task id
  std::unordered_map<std::string, std::vector<std::string>> dependents;
  std::unordered_map<std::string, pending_decision> pending_decisions;  ///< by decision id
  std::map<std::string, in_doubt_submit> in_doubt;  ///< by task id
  bool doubt_reading = false;                       ///< a read of one of them is under way
  std::int64_t doubt_read_ms = 0;                   ///< when that read was sent (actor clock)
  std::uint64_t doubt_reads = 0;                    ///< reads sent; the last one is the one awaited
  /// A read without an answer this long (the store actor gone) is given up and sent again.
  static constexpr std::int64_t doubt_read_timeout_ms = 10000;
  std::int64_t doubt_checked_ms = 0;                ///< when the last round of reads started (actor clock)
  supervision::restart_policy task_policy;  ///< restart intensity of the task actors (one_for_one)
  std::shared_ptr<const task_env> tenv;     ///< shared by the team's task actors
  std::multimap<std::int64_t, std::string> deadlines;  ///< deadline_at_ms -> task id
  std::uint64_t next_call = 1;
  std::uint64_t next_order = 1;
  std::int64_t queued = 0;
  std::int64_t running_tasks = 0;  ///< entries in state running: `status` counts without a scan
  std::int64_t waiting_tasks = 0;  ///< entries in state waiting_decision
  int submits_in_flight = 0;  ///< submits whose commit is under way (a drain waits for their answers)
  double spent_usd = 0;
  bool failed = false;
  bool paused = false;
  bool draining = false;
  std::vector<reply_fn> drain_waiters;
  supervision::supervisor agent_sup;     ///< agents, in config order, with the team's strategy
  supervision::supervisor decision_sup;  ///< one decision actor per pending human decision
  std::shared_ptr<const agent_env> env;  ///< shared by every agent of the team
  // Hot reload (team_reload.cpp).
  bool retiring = false;                   ///< removed from the config: finishing its tasks
  std::function<void()> on_retired;
  bool reload_check_armed = false;
  std::vector<std::string> legacy_selectors;  ///< needed only by tasks accepted before a reload

  // the task table (team_tasks.cpp)
  /// Adds the entry of task `id` (which must not be there yet) with a slot of its own.
  task_entry& admit(std::string id, task_entry e);
  /// Removes an entry (eviction), freeing its slot.
  void forget(std::unordered_map<std::string, task_entry>::iterator it);
  static task_ref ref_of(const task_entry& e) { return {e.slot, e.gen}; }
  /// The entry `ref` names, or null once it was evicted.
  task_entry* find_task(const task_ref& ref);
  // lifecycle (team_actor.cpp)
  void init(self_ptr self, team_spec s);
  void submit(self_ptr self, agents::task_spec spec, reply_fn reply);
  void accept(self_ptr self, agents::task t, std::shared_ptr<const agents::workflow> wf);
  void start(self_ptr self, const std::string& id);
  /// A queued task whose dependencies succeeded: its first step goes into the queue (the
  /// task actor is spawned when an agent takes it), or its actor starts at once.
  void launch(self_ptr self, task_entry& e);
  /// Adds `delta` to the count of state `s` that `status` reports (running,
  /// waiting_decision; other states are not counted here). Every change of an
  /// entry's state, and every entry added or removed, goes through it.
  void tally(agents::task_state s, int delta);
  void enqueue(self_ptr self, task_entry& e, std::size_t step, int attempt);
  // task actors (team_tasks.cpp)
  void refresh_task_env(self_ptr self);
  /// Starts the task's actor; `kick`: no call of it is in flight, so it is sent a first message.
  void spawn_task(self_ptr self, task_entry& e, std::string restarted_after = {}, bool kick = true);
  void on_want_step(self_ptr self, task_ref ref, std::size_t step, int attempt, work_vars_ptr vars);
  void on_task_ended(self_ptr self, agents::task t, bool wait, task_ref ref);
  /// A task actor threw (its exception handler says so, then it ends).
  void on_task_crashed(self_ptr self, const std::string& id, caf::actor_id actor, const std::string& reason);
  void restart_parked_tasks(self_ptr self);
  /// Answers a query about one task: from its actor while it runs, else from the team.
  void answer_task(self_ptr self, const task_entry& e, reply_fn reply, bool existing = false);
  void list_tasks(self_ptr self, const list_filter& f, reply_fn reply);
  /// Makes the agents running calls of task `id` abandon them (cancel_on_agent).
  void cancel_calls(const std::string& id);
  /// Makes agent `agent` abandon its calls of task `task_id`, started or still to start
  /// from a work order in its mailbox.
  void cancel_on_agent(std::size_t agent, const std::string& task_id);
  /// Common end of every task: counters, dependents, decisions, eviction.
  void ended(self_ptr self, task_entry& e);
  void pump_selector(self_ptr self, const std::string& selector);
  void pump_agent(self_ptr self, std::size_t agent);
  bool assign(self_ptr self, std::size_t agent, const queued_step& q);
  void on_step_done(self_ptr self, step_result r);
  /// Books one call's cost: the team's and agent's spend, the counters, its cost row
  /// and spend rows (in the report, with a store), the `llm.call` event. `task`: the
  /// call's task, if the team still holds it (it names the step).
  call_report book_call(const call_info& info, const step_result& r, const task_entry* task);
  /// Commits the cost and spend rows of a report no task actor takes.
  void write_costs(self_ptr self, call_report& rep);
  /// Ends a task: here while queued or parked, through its task actor while running.
  /// Here, the end is announced and `reply` (an operator's cancel of a task without a
  /// task actor; cancel() asks a running task's actor itself) answered once the
  /// terminal state is committed.
  void finish(self_ptr self, task_entry& e, agents::task_state state, std::optional<base::error> err,
              reply_fn reply = nullptr);
  /// Tells the task actor of call `info` that its call failed (agent crash, watchdog).
  void report_failure(self_ptr self, const call_info& info, std::uint64_t call_id, base::error err);
  void cancel(self_ptr self, const std::string& id, reply_fn reply);
  void decide(self_ptr self, decide_cmd cmd, reply_fn reply);
  void on_decision_pending(self_ptr self, const std::string& task_id, agents::decision_record rec,
                           std::string default_option);
  // supervision (team_supervision.cpp)
  void init_supervisors(self_ptr self);
  /// The slot of a supervised agent by name (retiring agents included); agents.size() if none.
  std::size_t slot_of(const std::string& agent) const;
  void on_child_down(self_ptr self, const caf::down_msg& msg);
  void agent_stopped(self_ptr self, std::size_t agent, const supervision::stop_info& info);
  /// Operator `restart`: a failed team starts its stopped children and dispatches again.
  void operator_restart(self_ptr self);
  /// Test hook (fault_atom): throws here, or in the named decision actor.
  void inject_fault(self_ptr self, const std::string& target);
  /// Called by the exception handler: hands the unfinished tasks to the root supervisor.
  void save_leftovers();
  // decision actors (team_decisions.cpp)
  void start_decision(self_ptr self, const std::string& decision_id);
  /// Ends the decision actor of a decision that is no longer pending.
  void end_decision(self_ptr self, const std::string& decision_id);
  /// Starts a decision actor for each pending decision that has none (operator restart).
  void rearm_decisions(self_ptr self);
  /// A running task whose actor crashed while its team failed: it waits for a restart.
  bool parked(const std::string& task_id) const;
  base::error parked_error(const std::string& decision_id, const std::string& task_id) const;
  void on_decided(self_ptr self, const std::string& decision_id, const std::string& option, const std::string& who,
                  const std::string& comment, reply_fn reply);
  /// Aborts the agent's in-flight calls and puts their steps back in the queue
  /// (same attempt: an operator abort is not a failure).
  void requeue_in_flight(self_ptr self, std::size_t agent);
  /// Removes the agent's calls in flight and frees its slots; returns each (call id, call).
  std::vector<std::pair<std::uint64_t, call_info>> take_calls_of(std::size_t agent);
  void tick(self_ptr self);
  /// Reads the store for the first in-doubt submit (at most one read at a time; a new
  /// round at most once a second while the store cannot answer).
  void check_in_doubt(self_ptr self);
  /// The read's answer: a stored task is accepted and runs, an absent one is dropped;
  /// the next one is read at once while the store answers.
  void on_doubt_resolved(self_ptr self, const std::string& id, int stored, std::uint64_t read);
  // entity state: paused, failed, spent (team_entities.cpp)
  /// Applies spec.recovered_entities (and what a crashed incarnation left) before anything runs.
  void apply_entities();
  /// The whole current row of the team (agent empty) or of one agent.
  base::entity_row entity_row_of(std::optional<std::size_t> agent) const;
  /// The team's row and every agent's row.
  std::vector<base::entity_row> all_entity_rows() const;
  /// Commits `rows` (one group commit piece) and calls `then` with the outcome; without a
  /// store at once with success.
  void write_entities(self_ptr self, std::vector<base::entity_row> rows,
                      std::function<void(std::optional<base::error>)> then);
  /// The team goes failed: every agent counts as failed with it, and the rows say so.
  void mark_failed(self_ptr self);
  /// Answers a pause/resume/restart once its rows are committed (acknowledged = committed).
  void ack_after_commit(self_ptr self, std::vector<base::entity_row> rows, const reply_fn& reply);
  void emit_task(const task_entry& e, const char* what, std::optional<std::size_t> step = std::nullopt);
  /// step_started / step_requeued of a running task, from what the team knows of the call.
  void emit_step(const task_entry& e, const char* what, std::size_t step, const std::string& agent, int attempt);
  void emit_agent(std::size_t agent, const std::string& state, const std::string& task = {});
  nlohmann::json status_json() const;
  nlohmann::json agents_json() const;
  std::string selector_of(const agents::workflow_node& n) const;
  void check_drained();
  caf::actor spawn_agent_slot(self_ptr self, std::size_t i);
  /// The team ended (any reason): its task actors end with it.
  ~team_state();
  team_state() = default;
  team_state(const team_state&) = delete;
  team_state& operator=(const team_state&) = delete;
};

/// The team's reload message (team_reload.cpp): an update, or (null update) the
/// periodic check that stops retired agents and a retired team.
void on_reload(self_ptr self, team_update_ptr update, const reply_fn& reply);

}  // namespace troupe::actors::detail
