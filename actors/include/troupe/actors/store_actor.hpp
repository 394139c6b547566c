#pragma once
/// The store actor: owns the snapshot_store (blocking I/O, so it runs detached
/// on its own thread) and turns the writes of many actors into group commits.
///
/// Batching: a write piece is queued and, if no flush is pending, the actor sends
/// itself a `flush` message. That message lands behind every write already in the
/// mailbox, so one commit takes all of them (up to `max_batch` rows, which forces
/// an early flush). When idle a lone write commits at once; right after a commit
/// (under load) the flush waits until store_options::linger_us after the previous
/// commit ended, so more writes join.
///
/// Overlap (store_options::extra_writers): commits run on committer threads, so
/// several can wait for the database at once; answers keep arrival order.
///
/// Outage: when a commit fails, pieces that create tasks are answered with the
/// error (the submit is refused, never acknowledged without a commit); all other
/// pieces are kept and retried with backoff until the database is back, and are
/// answered only then. A commit whose outcome is unknown (base::error::in_doubt)
/// is looked up by its commit id before anything is committed again: answered as
/// committed if it landed, re-sent only if not (cost and audit rows are appends).
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "troupe/actors/messages.hpp"
#include "troupe/base/histogram.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::actors {

/// Request to the store actor: `(entities_atom, team)` answers an
/// `entities_reply` with the team's own entity row and its agents' rows as
/// committed (what a team restarted by its supervisor reloads; at daemon start
/// the runtime hands them over in `team_spec::recovered_entities` instead).
using entities_atom = caf::atom_constant<caf::atom("entities")>;
struct entities_reply {
  bool ok = false;
  base::error error;
  std::vector<base::entity_row> rows;
};

/// Counters shared with the host (readyz, metrics). Written by the store thread.
struct store_stats {
  std::atomic<bool> healthy{true};
  std::atomic<std::uint64_t> commits{0};
  std::atomic<std::uint64_t> rows{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> last_batch_rows{0};
  std::atomic<std::uint64_t> last_commit_us{0};
  std::atomic<std::uint64_t> total_commit_us{0};
  std::atomic<std::uint64_t> backlog_rows{0};
  std::atomic<std::uint64_t> pruned_tasks{0};
  /// Times the store's thread went to sleep through a window of task ends
  /// (store_options::end_us) instead of waiting for its mailbox.
  std::atomic<std::uint64_t> end_naps{0};
  base::histogram commit_seconds{base::histogram::commit_seconds()};  ///< successful commits
  base::histogram batch_rows{base::histogram::sizes()};               ///< rows per successful commit
};

struct store_options {
  std::size_t max_batch = 512;
  std::int64_t retry_ms = 500;       ///< first retry after a failed commit
  std::int64_t retry_max_ms = 5000;
  /// Terminal tasks last updated longer ago than this are pruned (0: keep forever).
  std::int64_t retention_ms = 0;
  /// Pruning runs this often, in batches of prune_batch tasks; a full batch is
  /// followed by the next one right after the writes already queued, so pruning
  /// never holds the database for long and never stalls writers.
  std::int64_t prune_every_ms = 60000;
  std::size_t prune_batch = 500;
  /// More connections to the same database (PostgreSQL). With any, every
  /// commit runs on a committer actor of its own thread and connection, and
  /// the store actor dispatches the next batch while earlier ones still wait
  /// for their WAL flush: up to extra_writers.size() commits overlap. Batches
  /// holding entity or decision upserts run alone, so upserts keep their order.
  /// Empty: commits run on the store actor's own connection, one at a time.
  std::vector<std::shared_ptr<base::snapshot_store>> extra_writers;
  /// Group commit window (one connection only). A write that finds the
  /// store idle (no commit ended in the last linger_us) commits at once;
  /// under load the next commit waits until linger_us after the previous one
  /// ended, so more writes join it. The store actor waits that out on its own
  /// (detached) thread: writes arriving meanwhile queue without waking it, and
  /// a read queued behind them waits as long. A commit's fixed cost (on SQLite: lock, WAL
  /// frames of every page it touches) then spreads over more rows, which is
  /// most of the store thread's CPU at thousands of small writes per second.
  /// 0 commits every batch as soon as the mailbox is drained.
  /// TROUPE_COMMIT_LINGER_US in the environment overrides it (for A/B runs).
  std::int64_t linger_us = 1000;
  /// The window of writes marked write_batch::can_wait (a task's end): while only
  /// such writes are pending, one timer commits them end_us after the first (one
  /// connection only; not above linger_us: no difference). A write someone waits on
  /// takes them along in its own commit.
  std::int64_t end_us = 0;
};

/// The arguments of a control-plane command as the audit log keeps them: a JSON
/// text with every value under a key that names a secret (token, password,
/// secret, api key, authorization, credential) replaced by "***" and strings
/// longer than 256 bytes cut (their full length noted), so a large task input
/// costs the log a few hundred bytes at most.
std::string audit_args(const nlohmann::json& args);

/// The audit row of a command that succeeded: now, the principal, action, target,
/// `{"args": args_json}` as detail, outcome "ok". `audited` amends it for an error or
/// an existing task; a submit's row committed with its task is this row as is.
base::audit_row audit_row_ok(std::string principal, std::string action, std::string target,
                             const std::string& args_json);

/// Wraps a command's reply so that, when the command is answered, its audit row
/// (time, principal, action, target, arguments, outcome "ok" or the error code)
/// goes to the store actor. The row joins the next group commit; nothing waits
/// for it, so auditing costs the command no latency. `args_json` comes from
/// audit_args (computed by the caller, off the actor threads). For an empty
/// `target` the reply's "id" (the new task of a submit) is used. Without a
/// store actor the reply is returned unchanged.
reply_fn audited(const caf::actor& store, std::string principal, std::string action,
                 std::string target, std::string args_json, reply_fn reply);

/// Spawns the store actor on its own thread.
caf::actor spawn_store(caf::actor_system& sys, std::shared_ptr<base::snapshot_store> store,
                       std::shared_ptr<store_stats> stats, store_options opts);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::entities_reply)
