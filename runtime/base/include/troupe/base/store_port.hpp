#pragma once
/// snapshot_store: the port the runtime programs against for durability.
///
/// Implementations (runtime/persistence: SQLite, PostgreSQL) are blocking and
/// not thread-safe; exactly one owner (the store actor, on its own thread) calls
/// them. Payloads are JSON documents carried as strings, so this header stays free
/// of any JSON library.
///
/// Model: a task has one snapshot row (its full state at journal sequence `seq`)
/// and a journal of small deltas with seq > snapshot seq. Writing a snapshot at
/// seq N deletes the task's journal rows with seq <= N, so storage grows with the
/// work, not with the number of rewrites.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "troupe/base/result.hpp"

namespace troupe::base {

/// The schema version this build writes and understands.
/// 1: initial schema; 2: typed entity_state table (paused, failed, spent per
/// team and per agent of a team), audit outcome column; 3: pruning index on
/// (created_ms) of terminal tasks instead of (state, updated_ms); 4: commit_marks,
/// which tells whether a commit whose outcome was lost landed after all; 5 (SQLite
/// only): that index's predicate as comparisons, costs and audit without AUTOINCREMENT.
inline constexpr int store_schema_version = 5;

/// How many commit marks a store keeps (a ring: commit id modulo this count picks
/// the slot). Only the last few commits are ever asked about.
inline constexpr std::int64_t commit_mark_slots = 4096;
inline constexpr std::int64_t commit_mark_slot(std::uint64_t commit_id) noexcept {
  return static_cast<std::int64_t>(commit_id % static_cast<std::uint64_t>(commit_mark_slots));
}

struct task_row {
  std::string id;
  std::string team;             ///< team name; empty for a task sent to one agent
  std::string agent;            ///< agent name for a one-agent task
  int priority = 5;
  std::string state;            ///< queued|running|waiting_decision|succeeded|failed|cancelled
  std::string idempotency_key;  ///< empty when none; unique per (team, agent) when set
  std::string snapshot;         ///< JSON document of the whole task state at `seq`
  std::int64_t seq = 0;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
};

struct journal_row {
  std::string task_id;
  std::int64_t seq = 0;  ///< strictly increasing per task
  std::string kind;      ///< e.g. "step_finished", "decision", "state"
  std::string payload;   ///< JSON
  std::int64_t ts_ms = 0;
};

struct cost_row {
  std::string task_id, step_id, agent, team, provider, model, outcome;
  std::int64_t tokens_in = 0, tokens_out = 0, latency_ms = 0, ts_ms = 0;
  double usd = 0;
};

struct audit_row {
  std::int64_t ts_ms = 0;
  std::string principal;  ///< token name or "system"
  std::string action;     ///< e.g. "submit", "cancel", "decide", "reload"
  std::string target;     ///< task / decision / agent / team id
  std::string detail;     ///< JSON: the command's arguments, secrets removed
  std::string outcome;    ///< "ok", or the error code ("not_found", "unavailable", ...)
};

/// State of a team, or of one agent within a team, that matters across
/// restarts. Keyed by (team, agent); agent is empty for the team's own row. An
/// agent listed by two teams has one row per team (each team runs its own
/// instance of it and keeps its own spend).
struct entity_row {
  std::string team;
  std::string agent;         ///< empty: the team itself
  bool paused = false;       ///< paused by an operator; stays paused after a restart
  bool failed = false;       ///< gave up (restart intensity exceeded) until an operator restart
  double spent_usd = 0;      ///< cumulative spend counted against budget_usd
  std::string detail = "{}"; ///< JSON object for anything else worth keeping (free form)
  std::int64_t updated_ms = 0;
};

struct decision_row {
  std::string id;
  std::string task_id;
  std::string step_id;
  std::string state;  ///< "pending" | "resolved"
  std::string record;  ///< JSON decision record
  std::int64_t deadline_ms = 0;  ///< 0 = none
};

/// One group commit: everything in it is written in a single transaction.
struct write_batch {
  std::vector<task_row> new_tasks;       ///< inserted; idempotency conflicts are reported, not fatal
  std::vector<task_row> snapshots;       ///< upserted; journal rows with seq <= row.seq are deleted
  std::vector<journal_row> journal;      ///< appended
  std::vector<cost_row> costs;           ///< appended
  std::vector<audit_row> audit;          ///< appended
  std::vector<entity_row> entities;      ///< upserted by (team, agent), whole row
  std::vector<decision_row> decisions;   ///< upserted by id
  /// Non-zero: the commit also records this id (see snapshot_store::committed), so
  /// that a commit whose outcome was lost can be looked up before it is retried.
  /// Not a row: empty() and size() leave it out.
  std::uint64_t commit_id = 0;
  /// Nobody waits for this commit but the announcement of a task's end (its terminal
  /// state, the cost of its last call): the store actor may hold it for company up to
  /// store_options::end_us. Not a row either.
  bool can_wait = false;
  bool empty() const noexcept {
    return new_tasks.empty() && snapshots.empty() && journal.empty() && costs.empty() &&
           audit.empty() && entities.empty() && decisions.empty();
  }
  std::size_t size() const noexcept {
    return new_tasks.size() + snapshots.size() + journal.size() + costs.size() + audit.size() +
           entities.size() + decisions.size();
  }
};

/// A new task whose idempotency key was already taken: the batch's other rows are
/// still committed; `existing_id` is the task that holds the key.
struct idempotency_conflict {
  std::size_t index = 0;  ///< index into write_batch::new_tasks
  std::string existing_id;
};

struct commit_outcome {
  std::vector<idempotency_conflict> conflicts;
};

/// Everything needed to resume after a restart.
struct recovered_state {
  std::vector<task_row> active_tasks;    ///< non-terminal tasks (snapshot as of row.seq)
  std::vector<journal_row> journal;      ///< their deltas with seq > snapshot seq, ordered by (task_id, seq)
  std::vector<decision_row> pending_decisions;
  std::vector<entity_row> entities;      ///< every entity row, ordered by (team, agent)
};

class snapshot_store {
 public:
  virtual ~snapshot_store() = default;

  /// Creates or upgrades the schema to store_schema_version. Fails with
  /// errc::invalid_config when the database holds a newer schema than we know.
  [[nodiscard]] virtual result<int> migrate() = 0;
  /// Schema version in the database; 0 when there is no schema yet.
  [[nodiscard]] virtual result<int> schema_version() = 0;
  /// Writes the batch in one transaction. errc::unavailable when the database
  /// cannot be reached (retryable); nothing of the batch is then committed, unless
  /// the error is marked in_doubt (the connection was lost during the COMMIT): the
  /// whole batch may then have been committed, and only a read can tell.
  [[nodiscard]] virtual result<commit_outcome> commit(const write_batch& batch) = 0;
  /// Whether the commit of the batch stamped with `commit_id` landed: what settles
  /// an in_doubt failure. Retrying such a batch blindly would append its cost and
  /// audit rows twice if it had landed. Answers for the last commit_mark_slots
  /// commits; an older id reads as not committed.
  [[nodiscard]] virtual result<bool> committed(std::uint64_t commit_id) = 0;
  [[nodiscard]] virtual result<recovered_state> recover() = 0;
  [[nodiscard]] virtual result<std::optional<task_row>> load_task(const std::string& id) = 0;
  /// Journal rows of one task with seq > after_seq, ordered by seq.
  [[nodiscard]] virtual result<std::vector<journal_row>> load_journal(const std::string& task_id,
                                                                      std::int64_t after_seq) = 0;
  /// Deletes at most `limit` terminal tasks (and their journal) last updated
  /// before `before_ms`; returns how many were deleted.
  [[nodiscard]] virtual result<std::size_t> prune_terminal(std::int64_t before_ms,
                                                           std::size_t limit) = 0;
  /// Entity rows of one team (its own row and its agents'), ordered by agent;
  /// what a team restarted by its supervisor reloads.
  [[nodiscard]] virtual result<std::vector<entity_row>> load_entities(const std::string& team) = 0;
  /// Newest audit entries first, at most `limit`.
  [[nodiscard]] virtual result<std::vector<audit_row>> load_audit(std::size_t limit) = 0;
  /// Cheap liveness probe (reconnects if needed).
  [[nodiscard]] virtual result<bool> ping() = 0;
  /// Human-readable description without secrets ("sqlite:./troupe.db").
  virtual std::string describe() const = 0;
};

}  // namespace troupe::base
