#include "sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <utility>

#include "batch_dedup.hpp"
#include "migrations.hpp"
#include "sqlite_db.hpp"

namespace troupe::persistence::detail {
namespace {

using base::errc;

/// Busy/locked means another writer holds the database past our busy timeout;
/// I/O trouble and a full disk may clear up. Both are worth a retry.
base::error to_error(const sqlite_failure& f, std::string_view operation, const std::string& path) {
  const int primary = f.rc & 0xff;
  const bool retryable = primary == SQLITE_BUSY || primary == SQLITE_LOCKED ||
                         primary == SQLITE_IOERR || primary == SQLITE_FULL ||
                         primary == SQLITE_CANTOPEN;
  return base::make_error(
      retryable ? errc::unavailable : errc::internal,
      "sqlite store " + path + ": " + std::string(operation) + " failed: " + f.message, retryable);
}

constexpr const char* insert_task_sql =
    "INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, seq, "
    "created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
    "ON CONFLICT DO NOTHING";
// A snapshot never moves a task back to an older seq: a late, stale snapshot
// would otherwise resurrect journal rows that were already folded in.
constexpr const char* upsert_task_sql =
    "INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, seq, "
    "created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
    "ON CONFLICT (id) DO UPDATE SET team = excluded.team, agent = excluded.agent, "
    "priority = excluded.priority, state = excluded.state, "
    "idempotency_key = excluded.idempotency_key, snapshot = excluded.snapshot, "
    "seq = excluded.seq, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms "
    "WHERE excluded.seq >= tasks.seq";
constexpr const char* find_key_sql =
    "SELECT id FROM tasks WHERE team = ?1 AND agent = ?2 AND idempotency_key = ?3";
constexpr const char* trim_journal_sql = "DELETE FROM journal WHERE task_id = ?1 AND seq <= ?2";
// Journal appends are idempotent (first write wins) so that re-sending a batch
// whose outcome was unknown cannot fail the whole group commit.
constexpr const char* insert_journal_sql =
    "INSERT INTO journal (task_id, seq, kind, payload, ts_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT DO NOTHING";
constexpr const char* insert_cost_sql =
    "INSERT INTO costs (task_id, step_id, agent, team, provider, model, outcome, tokens_in, "
    "tokens_out, latency_ms, ts_ms, usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
    "?12)";
constexpr const char* insert_audit_sql =
    "INSERT INTO audit (ts_ms, principal, action, target, detail, outcome) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
constexpr const char* upsert_entity_sql =
    "INSERT INTO entity_state (team, agent, paused, failed, spent_usd, detail, updated_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (team, agent) DO UPDATE SET "
    "paused = excluded.paused, failed = excluded.failed, spent_usd = excluded.spent_usd, "
    "detail = excluded.detail, updated_ms = excluded.updated_ms";
constexpr const char* select_entities =
    "SELECT team, agent, paused, failed, spent_usd, detail, updated_ms FROM entity_state";
constexpr const char* upsert_decision_sql =
    "INSERT INTO decisions (id, task_id, step_id, state, record, deadline_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, "
    "step_id = excluded.step_id, state = excluded.state, record = excluded.record, "
    "deadline_ms = excluded.deadline_ms";
constexpr const char* upsert_mark_sql =
    "INSERT INTO commit_marks (slot, commit_id) VALUES (?1, ?2) "
    "ON CONFLICT (slot) DO UPDATE SET commit_id = excluded.commit_id";
constexpr const char* task_columns =
    "id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, updated_ms";

std::int64_t clamp_limit(std::size_t limit) {
  return static_cast<std::int64_t>(std::min<std::size_t>(
      limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

class sqlite_store final : public base::snapshot_store {
 public:
  sqlite_store(sqlite3* db, sqlite_options options) : db_(db), options_(std::move(options)) {}

  base::result<int> migrate() override {
    return guarded("migrate", [&]() -> base::result<int> {
      db_.reset_all();  // a migration step may drop a table an idle statement still reads
      db_.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
      for (const migration& step : migrations()) {
        sqlite_db::transaction tx{db_};
        // Re-read inside the write lock: another process may have migrated meanwhile.
        const int current = read_version();
        if (current > base::store_schema_version) {
          return base::fail(errc::invalid_config,
                            "sqlite store " + options_.path + ": " + newer_schema_message(current));
        }
        if (current >= step.version) continue;
        db_.exec(step.sqlite_sql);
        db_.exec("DELETE FROM schema_version");
        db_.exec("INSERT INTO schema_version (version) VALUES (" + std::to_string(step.version) +
                 ")");
        tx.commit();
      }
      return base::store_schema_version;
    });
  }

  base::result<int> schema_version() override {
    return guarded("schema_version", [&]() -> base::result<int> {
      sqlite3_stmt* s = db_.stmt(
          "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
      db_.step_row(s);
      const bool exists = sqlite3_column_int64(s, 0) != 0;
      sqlite3_reset(s);
      return exists ? read_version() : 0;
    });
  }

  base::result<base::commit_outcome> commit(const base::write_batch& batch) override {
    return guarded("commit", [&]() -> base::result<base::commit_outcome> {
      base::commit_outcome outcome;
      if (batch.empty()) return outcome;
      sqlite_db::transaction tx{db_};
      // Each statement is looked up once per batch; run() resets it per row.
      sqlite3_stmt* insert_task = db_.stmt(insert_task_sql);
      for (std::size_t i = 0; i < batch.new_tasks.size(); ++i) {
        const auto& t = batch.new_tasks[i];
        db_.run(insert_task, t.id, t.team, t.agent, t.priority, t.state, t.idempotency_key,
                t.snapshot, t.seq, t.created_ms, t.updated_ms);
        if (sqlite3_changes(db_.handle()) == 0)
          outcome.conflicts.push_back({i, existing_holder(t)});
      }
      // Journal before snapshots: a snapshot in the same batch then trims the
      // deltas it already contains.
      sqlite3_stmt* insert_journal = db_.stmt(insert_journal_sql);
      for (const auto& j : batch.journal) {
        db_.run(insert_journal, j.task_id, j.seq, j.kind, j.payload, j.ts_ms);
      }
      sqlite3_stmt* upsert_task = db_.stmt(upsert_task_sql);
      sqlite3_stmt* trim_journal = db_.stmt(trim_journal_sql);
      for (std::size_t i : last_of_each(batch.snapshots, [](const auto& t) { return t.id; })) {
        const auto& t = batch.snapshots[i];
        db_.run(upsert_task, t.id, t.team, t.agent, t.priority, t.state, t.idempotency_key,
                t.snapshot, t.seq, t.created_ms, t.updated_ms);
        db_.run(trim_journal, t.id, t.seq);
      }
      sqlite3_stmt* insert_cost = db_.stmt(insert_cost_sql);
      for (const auto& c : batch.costs) {
        db_.run(insert_cost, c.task_id, c.step_id, c.agent, c.team, c.provider, c.model, c.outcome,
                c.tokens_in, c.tokens_out, c.latency_ms, c.ts_ms, c.usd);
      }
      sqlite3_stmt* insert_audit = db_.stmt(insert_audit_sql);
      for (const auto& a : batch.audit) {
        db_.run(insert_audit, a.ts_ms, a.principal, a.action, a.target, a.detail, a.outcome);
      }
      sqlite3_stmt* upsert_entity = db_.stmt(upsert_entity_sql);
      for (const auto& e : batch.entities) {
        db_.run(upsert_entity, e.team, e.agent, int{e.paused}, int{e.failed}, e.spent_usd, e.detail,
                e.updated_ms);
      }
      sqlite3_stmt* upsert_decision = db_.stmt(upsert_decision_sql);
      for (const auto& d : batch.decisions) {
        db_.run(upsert_decision, d.id, d.task_id, d.step_id, d.state, d.record, d.deadline_ms);
      }
      if (batch.commit_id != 0)
        db_.run(db_.stmt(upsert_mark_sql), base::commit_mark_slot(batch.commit_id),
                static_cast<std::int64_t>(batch.commit_id));
      tx.commit();
      return outcome;
    });
  }

  base::result<bool> committed(std::uint64_t commit_id) override {
    return guarded("committed", [&]() -> base::result<bool> {
      sqlite3_stmt* s = db_.stmt("SELECT 1 FROM commit_marks WHERE slot = ?1 AND commit_id = ?2");
      db_.bind_all(s, base::commit_mark_slot(commit_id), static_cast<std::int64_t>(commit_id));
      const bool found = db_.step_row(s);
      sqlite3_reset(s);
      return found;
    });
  }

  base::result<base::recovered_state> recover() override {
    return guarded("recover", [&]() -> base::result<base::recovered_state> {
      base::recovered_state out;
      // One read transaction so tasks and journal come from the same snapshot.
      db_.exec("BEGIN");
      sqlite_db::transaction_guard guard{db_};
      sqlite3_stmt* s = db_.stmt(std::string("SELECT ") + task_columns +
                                 " FROM tasks WHERE state NOT IN " + terminal_states_sql);
      while (db_.step_row(s)) out.active_tasks.push_back(read_task(s));
      // The journal's primary key order is (task_id, seq), so this is one
      // ordered scan with a task lookup per row, no sort.
      s = db_.stmt(std::string("SELECT j.task_id, j.seq, j.kind, j.payload, j.ts_ms FROM journal j "
                               "JOIN tasks t ON t.id = j.task_id WHERE t.state NOT IN ") +
                   terminal_states_sql + " AND j.seq > t.seq ORDER BY j.task_id, j.seq");
      while (db_.step_row(s)) out.journal.push_back(read_journal(s));
      s = db_.stmt(
          "SELECT id, task_id, step_id, state, record, deadline_ms FROM decisions "
          "WHERE state = 'pending' ORDER BY id");
      while (db_.step_row(s)) {
        out.pending_decisions.push_back({sqlite_db::text(s, 0), sqlite_db::text(s, 1),
                                         sqlite_db::text(s, 2), sqlite_db::text(s, 3),
                                         sqlite_db::text(s, 4), sqlite3_column_int64(s, 5)});
      }
      s = db_.stmt(std::string(select_entities) + " ORDER BY team, agent");
      while (db_.step_row(s)) out.entities.push_back(read_entity(s));
      guard.release();
      db_.exec("COMMIT");
      return out;
    });
  }

  base::result<std::optional<base::task_row>> load_task(const std::string& id) override {
    return guarded("load_task", [&]() -> base::result<std::optional<base::task_row>> {
      sqlite3_stmt* s =
          db_.stmt(std::string("SELECT ") + task_columns + " FROM tasks WHERE id = ?1");
      db_.bind_all(s, id);
      std::optional<base::task_row> row;
      if (db_.step_row(s)) row = read_task(s);
      sqlite3_reset(s);
      return row;
    });
  }

  base::result<std::vector<base::journal_row>> load_journal(const std::string& task_id,
                                                            std::int64_t after_seq) override {
    return guarded("load_journal", [&]() -> base::result<std::vector<base::journal_row>> {
      sqlite3_stmt* s = db_.stmt(
          "SELECT task_id, seq, kind, payload, ts_ms FROM journal WHERE task_id = ?1 AND seq > ?2 "
          "ORDER BY seq");
      db_.bind_all(s, task_id, after_seq);
      std::vector<base::journal_row> rows;
      while (db_.step_row(s)) rows.push_back(read_journal(s));
      return rows;
    });
  }

  base::result<std::size_t> prune_terminal(std::int64_t before_ms, std::size_t limit) override {
    return guarded("prune_terminal", [&]() -> base::result<std::size_t> {
      if (limit == 0) return std::size_t{0};
      sqlite_db::transaction tx{db_};
      std::vector<std::string> victims;
      sqlite3_stmt* s =
          db_.stmt(std::string("SELECT id FROM tasks WHERE ") + sqlite_terminal_sql +
                   " AND updated_ms < ?1 ORDER BY created_ms LIMIT ?2");
      db_.bind_all(s, before_ms, clamp_limit(limit));
      while (db_.step_row(s)) victims.push_back(sqlite_db::text(s, 0));
      for (const auto& id : victims) {
        db_.run(db_.stmt("DELETE FROM journal WHERE task_id = ?1"), id);
        db_.run(db_.stmt("DELETE FROM decisions WHERE task_id = ?1"), id);
        db_.run(db_.stmt("DELETE FROM tasks WHERE id = ?1"), id);
      }
      tx.commit();
      return victims.size();
    });
  }

  base::result<std::vector<base::entity_row>> load_entities(const std::string& team) override {
    return guarded("load_entities", [&]() -> base::result<std::vector<base::entity_row>> {
      sqlite3_stmt* s =
          db_.stmt(std::string(select_entities) + " WHERE team = ?1 ORDER BY agent");
      db_.bind_all(s, team);
      std::vector<base::entity_row> rows;
      while (db_.step_row(s)) rows.push_back(read_entity(s));
      return rows;
    });
  }

  base::result<std::vector<base::audit_row>> load_audit(std::size_t limit) override {
    return guarded("load_audit", [&]() -> base::result<std::vector<base::audit_row>> {
      sqlite3_stmt* s = db_.stmt(
          "SELECT ts_ms, principal, action, target, detail, outcome FROM audit "
          "ORDER BY id DESC LIMIT ?1");
      db_.bind_all(s, clamp_limit(limit));
      std::vector<base::audit_row> rows;
      while (db_.step_row(s)) {
        rows.push_back({sqlite3_column_int64(s, 0), sqlite_db::text(s, 1), sqlite_db::text(s, 2),
                        sqlite_db::text(s, 3), sqlite_db::text(s, 4), sqlite_db::text(s, 5)});
      }
      return rows;
    });
  }

  base::result<bool> ping() override {
    return guarded("ping", [&]() -> base::result<bool> {
      sqlite3_stmt* s = db_.stmt("SELECT count(*) FROM sqlite_master");
      db_.step_row(s);
      sqlite3_reset(s);
      return true;
    });
  }

  std::string describe() const override { return "sqlite:" + options_.path; }

 private:
  template <class F>
  auto guarded(std::string_view operation, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const sqlite_failure& failure) {
      return tl::unexpected<base::error>(to_error(failure, operation, options_.path));
    }
  }

  static base::task_row read_task(sqlite3_stmt* s) {
    base::task_row t;
    t.id = sqlite_db::text(s, 0);
    t.team = sqlite_db::text(s, 1);
    t.agent = sqlite_db::text(s, 2);
    t.priority = sqlite3_column_int(s, 3);
    t.state = sqlite_db::text(s, 4);
    t.idempotency_key = sqlite_db::text(s, 5);
    t.snapshot = sqlite_db::text(s, 6);
    t.seq = sqlite3_column_int64(s, 7);
    t.created_ms = sqlite3_column_int64(s, 8);
    t.updated_ms = sqlite3_column_int64(s, 9);
    return t;
  }

  static base::entity_row read_entity(sqlite3_stmt* s) {
    return {sqlite_db::text(s, 0),          sqlite_db::text(s, 1),
            sqlite3_column_int(s, 2) != 0,  sqlite3_column_int(s, 3) != 0,
            sqlite3_column_double(s, 4),    sqlite_db::text(s, 5),
            sqlite3_column_int64(s, 6)};
  }

  static base::journal_row read_journal(sqlite3_stmt* s) {
    return {sqlite_db::text(s, 0), sqlite3_column_int64(s, 1), sqlite_db::text(s, 2),
            sqlite_db::text(s, 3), sqlite3_column_int64(s, 4)};
  }

  int read_version() {
    sqlite3_stmt* s = db_.stmt("SELECT coalesce(max(version), 0) FROM schema_version");
    db_.step_row(s);
    const int v = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return v;
  }

  /// The id of the task that holds a new task's idempotency key (or its id).
  std::string existing_holder(const base::task_row& t) {
    if (!t.idempotency_key.empty()) {
      sqlite3_stmt* s = db_.stmt(find_key_sql);
      db_.bind_all(s, t.team, t.agent, t.idempotency_key);
      if (db_.step_row(s)) {
        std::string id = sqlite_db::text(s, 0);
        sqlite3_reset(s);
        return id;
      }
    }
    return t.id;  // the conflict was on the task id itself
  }

  sqlite_db db_;
  sqlite_options options_;
};

}  // namespace

base::result<std::unique_ptr<base::snapshot_store>> open_sqlite_store(
    const sqlite_options& options) {
  // SQLite's allocation statistics take a global mutex per allocation; troupe never
  // reads them. This must precede the library's initialisation; if something else
  // initialised it first, the call fails harmlessly and the statistics stay on.
  static const bool memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  (void)memstatus_off;
  sqlite3* db = nullptr;
  // NOMUTEX: a connection is only ever used by one thread at a time (the runtime
  // migrates and recovers before it spawns the store actor, which then owns the
  // connection), so the serialized mode's per-call mutex is pure overhead.
  int rc = sqlite3_open_v2(options.path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto fail_open = [&](std::string what) -> base::result<std::unique_ptr<base::snapshot_store>> {
    std::string reason = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return base::fail(errc::unavailable,
                      "sqlite store " + options.path + ": " + what + ": " + reason, false);
  };
  if (rc != SQLITE_OK) return fail_open("cannot open the database file");
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  sqlite3_extended_result_codes(db, 1);
  // Reading the schema catches "file is not a database" now rather than at the
  // first commit; then WAL lets readers proceed while the store actor writes.
  rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return fail_open("cannot read the database");
  std::string mode;
  rc = sqlite3_exec(
      db, "PRAGMA journal_mode=WAL",
      [](void* out, int, char** values, char**) {
        *static_cast<std::string*>(out) = values[0] != nullptr ? values[0] : "";
        return 0;
      },
      &mode, nullptr);
  if (rc != SQLITE_OK) return fail_open("cannot switch to WAL mode");
  if (mode != "wal" && mode != "memory") {
    sqlite3_close_v2(db);
    return base::fail(errc::unavailable,
                      "sqlite store " + options.path +
                          ": the file system refused WAL mode (journal_mode=" + mode + ")");
  }
  // NORMAL in WAL mode syncs at checkpoints only: a committed transaction
  // survives a crash of the process, the last ones may be lost on power loss.
  const char* sync =
      options.sync == sqlite_sync::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  rc = sqlite3_exec(db, sync, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    // Keep the WAL file from growing without bound after big batches.
    rc = sqlite3_exec(db, "PRAGMA journal_size_limit=67108864", nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) return fail_open("cannot configure the connection");
  return std::unique_ptr<base::snapshot_store>(std::make_unique<sqlite_store>(db, options));
}

}  // namespace troupe::persistence::detail
