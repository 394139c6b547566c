#include "migrations.hpp"

#include <array>

#include "troupe/base/store_port.hpp"

namespace troupe::persistence::detail {
namespace {

// Version 5: cheaper appends and terminal snapshots on SQLite.
//
// - The pruning index's `state IN ('succeeded','failed','cancelled')` made
//   SQLite build a temporary table of the three states each time it evaluated
//   the predicate: on every snapshot upsert, twice (old and new row). The same
//   predicate written as comparisons costs three string compares. The pruning
//   query spells it the same way, so the planner still uses the index.
// - costs and audit lose AUTOINCREMENT, which read and rewrote sqlite_sequence
//   on every insert. Their rows are never deleted, so an INTEGER PRIMARY KEY's
//   max(id) + 1 gives the same ids in the same order. SQLite cannot drop the
//   keyword in place: each table is copied into a new one (ids kept), once.
// PostgreSQL evaluates IN lists and BIGSERIAL without either cost: nothing to do.
constexpr const char* v5_sqlite_sql = R"sql(
DROP INDEX tasks_terminal;
CREATE INDEX tasks_terminal ON tasks (created_ms)
  WHERE state = 'succeeded' OR state = 'failed' OR state = 'cancelled';
CREATE TABLE costs_v5 (
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  team TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  tokens_in INTEGER NOT NULL,
  tokens_out INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  usd REAL NOT NULL
);
INSERT INTO costs_v5 (id, task_id, step_id, agent, team, provider, model, outcome, tokens_in,
                      tokens_out, latency_ms, ts_ms, usd)
  SELECT id, task_id, step_id, agent, team, provider, model, outcome, tokens_in, tokens_out,
         latency_ms, ts_ms, usd FROM costs;
DROP TABLE costs;
ALTER TABLE costs_v5 RENAME TO costs;
CREATE INDEX costs_task ON costs (task_id);
CREATE TABLE audit_v5 (
  id INTEGER PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL,
  outcome TEXT NOT NULL DEFAULT ''
);
INSERT INTO audit_v5 (id, ts_ms, principal, action, target, detail, outcome)
  SELECT id, ts_ms, principal, action, target, detail, outcome FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v5 RENAME TO audit;
)sql";
constexpr const char* v5_postgres_sql = "SELECT 1";

// Version 4: commit marks.
//
// A PostgreSQL commit whose connection drops before its answer arrives may or
// may not have landed. Its batch is retried only after a read of this table:
// every commit also writes its id into slot (id modulo 4096), so the last
// commits can be told apart without the table ever growing or being pruned.
// Tasks, journal, snapshots, entities and decisions would survive a blind retry
// (keys, seq checks, whole-row upserts); cost and audit rows would not.
constexpr const char* v4_sql = R"sql(
CREATE TABLE commit_marks (
  slot INTEGER PRIMARY KEY,
  commit_id BIGINT NOT NULL
);
)sql";

// Version 3: snapshot rewrites without index writes.
//
// A snapshot of a running task rewrites its row with a new updated_ms. With
// updated_ms in an index (v1's tasks_state on (state, updated_ms)) every such
// rewrite inserted into every index of the table; PostgreSQL can only update a
// row in place (a heap-only tuple) when no indexed column changes and the page
// has room. So pruning gets a partial index on created_ms, which never changes,
// over terminal tasks only (a task reaches that index once, when it ends), and
// PostgreSQL leaves 20 % of each tasks page free for the new row versions.
// Recovery never used tasks_state: `state NOT IN (...)` is a full scan either way.
constexpr const char* v3_sqlite_sql = R"sql(
DROP INDEX tasks_state;
CREATE INDEX tasks_terminal ON tasks (created_ms) WHERE state IN ('succeeded','failed','cancelled');
)sql";
constexpr const char* v3_postgres_sql = R"sql(
DROP INDEX tasks_state;
CREATE INDEX tasks_terminal ON tasks (created_ms) WHERE state IN ('succeeded','failed','cancelled');
ALTER TABLE tasks SET (fillfactor = 80);
)sql";

// Version 2: agent and team state across restarts, and audit outcomes.
//
// - entity_state replaces v1's untyped `entities` (kind, name, JSON state),
//   which no daemon wrote: paused, failed and spent_usd become columns keyed by
//   (team, agent), agent '' being the team itself, because an agent listed by
//   two teams runs one instance per team with its own spend. Rows of the old
//   table are carried over into `detail` (a team row as (name, ''), an agent
//   row as ('', name)) so an upgrade loses nothing.
// - audit.outcome records how a command ended ("ok" or the error code).
constexpr const char* v2_sql = R"sql(
CREATE TABLE entity_state (
  team TEXT NOT NULL,
  agent TEXT NOT NULL,
  paused INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
  detail TEXT NOT NULL DEFAULT '{}',
  updated_ms BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (team, agent)
);
INSERT INTO entity_state (team, agent, detail)
  SELECT CASE WHEN kind = 'team' THEN name ELSE '' END,
         CASE WHEN kind = 'team' THEN '' ELSE name END, state
  FROM entities WHERE true ON CONFLICT DO NOTHING;
DROP TABLE entities;
ALTER TABLE audit ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
)sql";

// Version 1: the initial schema. The two dialects keep the same tables and
// columns so the conformance suite can hold both to one contract.
//
// - tasks: one row per task with its latest snapshot. The partial unique index
//   enforces idempotency only where a key was given; (state, updated_ms) serves
//   both recovery (non-terminal states) and pruning (terminal and old).
// - journal: deltas after the snapshot; the primary key orders them per task.
//   On SQLite it stays a rowid table: rows then append in insertion order and
//   only the small key goes into the index, about twice as fast for journal
//   appends spread over many tasks as WITHOUT ROWID (measured).
// - audit: the autoincrement id keeps insertion order for "newest first".
constexpr std::array<migration, 5> all_migrations{{
    {1, "initial schema",
     R"sql(
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  team TEXT NOT NULL,
  agent TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '',
  snapshot TEXT NOT NULL,
  seq INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (team, agent, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX tasks_state ON tasks (state, updated_ms);
CREATE TABLE journal (
  task_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  PRIMARY KEY (task_id, seq)
);
CREATE TABLE costs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  team TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  tokens_in INTEGER NOT NULL,
  tokens_out INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL,
  usd REAL NOT NULL
);
CREATE INDEX costs_task ON costs (task_id);
CREATE TABLE audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_ms INTEGER NOT NULL,
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE TABLE entities (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE decisions (
  id TEXT PRIMARY KEY,
  task_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  state TEXT NOT NULL,
  record TEXT NOT NULL,
  deadline_ms INTEGER NOT NULL
);
CREATE INDEX decisions_state ON decisions (state);
CREATE INDEX decisions_task ON decisions (task_id);
)sql",
     R"sql(
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  team TEXT NOT NULL,
  agent TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '',
  snapshot TEXT NOT NULL,
  seq BIGINT NOT NULL,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX tasks_idempotency ON tasks (team, agent, idempotency_key)
  WHERE idempotency_key <> '';
CREATE INDEX tasks_state ON tasks (state, updated_ms);
CREATE TABLE journal (
  task_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,
  ts_ms BIGINT NOT NULL,
  PRIMARY KEY (task_id, seq)
);
CREATE TABLE costs (
  id BIGSERIAL PRIMARY KEY,
  task_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  team TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  outcome TEXT NOT NULL,
  tokens_in BIGINT NOT NULL,
  tokens_out BIGINT NOT NULL,
  latency_ms BIGINT NOT NULL,
  ts_ms BIGINT NOT NULL,
  usd DOUBLE PRECISION NOT NULL
);
CREATE INDEX costs_task ON costs (task_id);
CREATE TABLE audit (
  id BIGSERIAL PRIMARY KEY,
  ts_ms BIGINT NOT NULL,
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE TABLE entities (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE decisions (
  id TEXT PRIMARY KEY,
  task_id TEXT NOT NULL,
  step_id TEXT NOT NULL,
  state TEXT NOT NULL,
  record TEXT NOT NULL,
  deadline_ms BIGINT NOT NULL
);
CREATE INDEX decisions_state ON decisions (state);
CREATE INDEX decisions_task ON decisions (task_id);
)sql"},
    // One text for both dialects: SQLite maps BIGINT and DOUBLE PRECISION to
    // its integer and real affinities; paused/failed are 0/1 integers on both.
    {2, "entity_state table, audit outcome", v2_sql, v2_sql},
    {3, "pruning index on created_ms of terminal tasks", v3_sqlite_sql, v3_postgres_sql},
    {4, "commit marks", v4_sql, v4_sql},
    {5, "no temporary table per snapshot, no sqlite_sequence per append (SQLite)", v5_sqlite_sql,
     v5_postgres_sql},
}};

static_assert(all_migrations.back().version == base::store_schema_version,
              "the last migration step must produce base::store_schema_version");
static_assert(all_migrations.front().version == 1, "migration steps are numbered from 1");

}  // namespace

std::span<const migration> migrations() noexcept { return all_migrations; }

std::string newer_schema_message(int database_version) {
  return "database schema version " + std::to_string(database_version) +
         " is newer than this build understands (" + std::to_string(base::store_schema_version) +
         "); upgrade troupe";
}

bool is_terminal_state(std::string_view state) noexcept {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

}  // namespace troupe::persistence::detail
