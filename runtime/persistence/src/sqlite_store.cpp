#include "sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "batch_dedup.hpp"
#include "migrations.hpp"

namespace troupe::persistence::detail {
namespace {

using base::errc;

/// Thrown inside this file only; every public method converts it to an error value.
struct sqlite_failure {
  int rc = SQLITE_ERROR;
  std::string message;
};

/// Busy/locked means another writer holds the database past our busy timeout;
/// I/O trouble and a full disk may clear up. Both are worth a retry.
base::error to_error(const sqlite_failure& f, std::string_view operation, const std::string& path) {
  const int primary = f.rc & 0xff;
  const bool retryable = primary == SQLITE_BUSY || primary == SQLITE_LOCKED ||
                         primary == SQLITE_IOERR || primary == SQLITE_FULL ||
                         primary == SQLITE_CANTOPEN;
  return base::make_error(retryable ? errc::unavailable : errc::internal,
                          "sqlite store " + path + ": " + std::string(operation) +
                              " failed: " + f.message,
                          retryable);
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
    "tokens_out, latency_ms, ts_ms, usd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
constexpr const char* insert_audit_sql =
    "INSERT INTO audit (ts_ms, principal, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
constexpr const char* upsert_entity_sql =
    "INSERT INTO entities (kind, name, state) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (kind, name) DO UPDATE SET state = excluded.state";
constexpr const char* upsert_decision_sql =
    "INSERT INTO decisions (id, task_id, step_id, state, record, deadline_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, "
    "step_id = excluded.step_id, state = excluded.state, record = excluded.record, "
    "deadline_ms = excluded.deadline_ms";
constexpr const char* task_columns =
    "id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, updated_ms";

std::int64_t clamp_limit(std::size_t limit) {
  return static_cast<std::int64_t>(
      std::min<std::size_t>(limit, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

class sqlite_store final : public base::snapshot_store {
 public:
  sqlite_store(sqlite3* db, sqlite_options options) : db_(db), options_(std::move(options)) {}
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  ~sqlite_store() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  base::result<int> migrate() override {
    return guarded("migrate", [&]() -> base::result<int> {
      exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
      for (const migration& step : migrations()) {
        transaction tx{*this};
        // Re-read inside the write lock: another process may have migrated meanwhile.
        const int current = read_version();
        if (current > base::store_schema_version) {
          return base::fail(errc::invalid_config, "sqlite store " + options_.path + ": " +
                                                      newer_schema_message(current));
        }
        if (current >= step.version) continue;
        exec(step.sqlite_sql);
        exec("DELETE FROM schema_version");
        exec("INSERT INTO schema_version (version) VALUES (" + std::to_string(step.version) + ")");
        tx.commit();
      }
      return base::store_schema_version;
    });
  }

  base::result<int> schema_version() override {
    return guarded("schema_version", [&]() -> base::result<int> {
      sqlite3_stmt* s = stmt(
          "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'");
      step_row(s);
      if (sqlite3_column_int64(s, 0) == 0) return 0;
      return read_version();
    });
  }

  base::result<base::commit_outcome> commit(const base::write_batch& batch) override {
    return guarded("commit", [&]() -> base::result<base::commit_outcome> {
      base::commit_outcome outcome;
      if (batch.empty()) return outcome;
      transaction tx{*this};
      // Each statement is looked up once per batch; run() resets it per row.
      sqlite3_stmt* insert_task = stmt(insert_task_sql);
      for (std::size_t i = 0; i < batch.new_tasks.size(); ++i) {
        const auto& t = batch.new_tasks[i];
        run(insert_task, t.id, t.team, t.agent, t.priority, t.state, t.idempotency_key,
            t.snapshot, t.seq, t.created_ms, t.updated_ms);
        if (sqlite3_changes(db_) == 0) outcome.conflicts.push_back({i, existing_holder(t)});
      }
      // Journal before snapshots: a snapshot in the same batch then trims the
      // deltas it already contains.
      sqlite3_stmt* insert_journal = stmt(insert_journal_sql);
      for (const auto& j : batch.journal) {
        run(insert_journal, j.task_id, j.seq, j.kind, j.payload, j.ts_ms);
      }
      sqlite3_stmt* upsert_task = stmt(upsert_task_sql);
      sqlite3_stmt* trim_journal = stmt(trim_journal_sql);
      for (std::size_t i : last_of_each(batch.snapshots, [](const auto& t) { return t.id; })) {
        const auto& t = batch.snapshots[i];
        run(upsert_task, t.id, t.team, t.agent, t.priority, t.state, t.idempotency_key,
            t.snapshot, t.seq, t.created_ms, t.updated_ms);
        run(trim_journal, t.id, t.seq);
      }
      sqlite3_stmt* insert_cost = stmt(insert_cost_sql);
      for (const auto& c : batch.costs) {
        run(insert_cost, c.task_id, c.step_id, c.agent, c.team, c.provider, c.model,
            c.outcome, c.tokens_in, c.tokens_out, c.latency_ms, c.ts_ms, c.usd);
      }
      sqlite3_stmt* insert_audit = stmt(insert_audit_sql);
      for (const auto& a : batch.audit) {
        run(insert_audit, a.ts_ms, a.principal, a.action, a.target, a.detail);
      }
      sqlite3_stmt* upsert_entity = stmt(upsert_entity_sql);
      for (const auto& e : batch.entities) run(upsert_entity, e.kind, e.name, e.state);
      sqlite3_stmt* upsert_decision = stmt(upsert_decision_sql);
      for (const auto& d : batch.decisions) {
        run(upsert_decision, d.id, d.task_id, d.step_id, d.state, d.record,
            d.deadline_ms);
      }
      tx.commit();
      return outcome;
    });
  }

  base::result<base::recovered_state> recover() override {
    return guarded("recover", [&]() -> base::result<base::recovered_state> {
      base::recovered_state out;
      // One read transaction so tasks and journal come from the same snapshot.
      exec("BEGIN");
      transaction_guard guard{*this};
      sqlite3_stmt* s = stmt(std::string("SELECT ") + task_columns +
                             " FROM tasks WHERE state NOT IN " + terminal_states_sql);
      while (step_row(s)) out.active_tasks.push_back(read_task(s));
      // The journal's primary key order is (task_id, seq), so this is one
      // ordered scan with a task lookup per row, no sort.
      s = stmt(std::string("SELECT j.task_id, j.seq, j.kind, j.payload, j.ts_ms FROM journal j "
                           "JOIN tasks t ON t.id = j.task_id WHERE t.state NOT IN ") +
               terminal_states_sql + " AND j.seq > t.seq ORDER BY j.task_id, j.seq");
      while (step_row(s)) out.journal.push_back(read_journal(s));
      s = stmt(
          "SELECT id, task_id, step_id, state, record, deadline_ms FROM decisions "
          "WHERE state = 'pending' ORDER BY id");
      while (step_row(s)) {
        out.pending_decisions.push_back({column_text(s, 0), column_text(s, 1), column_text(s, 2),
                                         column_text(s, 3), column_text(s, 4),
                                         sqlite3_column_int64(s, 5)});
      }
      s = stmt("SELECT kind, name, state FROM entities ORDER BY kind, name");
      while (step_row(s)) {
        out.entities.push_back({column_text(s, 0), column_text(s, 1), column_text(s, 2)});
      }
      guard.release();
      exec("COMMIT");
      return out;
    });
  }

  base::result<std::optional<base::task_row>> load_task(const std::string& id) override {
    return guarded("load_task", [&]() -> base::result<std::optional<base::task_row>> {
      sqlite3_stmt* s = stmt(std::string("SELECT ") + task_columns + " FROM tasks WHERE id = ?1");
      bind_all(s, id);
      std::optional<base::task_row> row;
      if (step_row(s)) row = read_task(s);
      sqlite3_reset(s);
      return row;
    });
  }

  base::result<std::vector<base::journal_row>> load_journal(const std::string& task_id,
                                                            std::int64_t after_seq) override {
    return guarded("load_journal", [&]() -> base::result<std::vector<base::journal_row>> {
      sqlite3_stmt* s = stmt(
          "SELECT task_id, seq, kind, payload, ts_ms FROM journal WHERE task_id = ?1 AND seq > ?2 "
          "ORDER BY seq");
      bind_all(s, task_id, after_seq);
      std::vector<base::journal_row> rows;
      while (step_row(s)) rows.push_back(read_journal(s));
      return rows;
    });
  }

  base::result<std::size_t> prune_terminal(std::int64_t before_ms, std::size_t limit) override {
    return guarded("prune_terminal", [&]() -> base::result<std::size_t> {
      if (limit == 0) return std::size_t{0};
      transaction tx{*this};
      std::vector<std::string> victims;
      sqlite3_stmt* s = stmt(std::string("SELECT id FROM tasks WHERE state IN ") +
                             terminal_states_sql +
                             " AND updated_ms < ?1 ORDER BY updated_ms LIMIT ?2");
      bind_all(s, before_ms, clamp_limit(limit));
      while (step_row(s)) victims.push_back(column_text(s, 0));
      for (const auto& id : victims) {
        run(stmt("DELETE FROM journal WHERE task_id = ?1"), id);
        run(stmt("DELETE FROM decisions WHERE task_id = ?1"), id);
        run(stmt("DELETE FROM tasks WHERE id = ?1"), id);
      }
      tx.commit();
      return victims.size();
    });
  }

  base::result<std::vector<base::audit_row>> load_audit(std::size_t limit) override {
    return guarded("load_audit", [&]() -> base::result<std::vector<base::audit_row>> {
      sqlite3_stmt* s = stmt(
          "SELECT ts_ms, principal, action, target, detail FROM audit ORDER BY id DESC LIMIT ?1");
      bind_all(s, clamp_limit(limit));
      std::vector<base::audit_row> rows;
      while (step_row(s)) {
        rows.push_back({sqlite3_column_int64(s, 0), column_text(s, 1), column_text(s, 2),
                        column_text(s, 3), column_text(s, 4)});
      }
      return rows;
    });
  }

  base::result<bool> ping() override {
    return guarded("ping", [&]() -> base::result<bool> {
      sqlite3_stmt* s = stmt("SELECT count(*) FROM sqlite_master");
      step_row(s);
      sqlite3_reset(s);
      return true;
    });
  }

  std::string describe() const override { return "sqlite:" + options_.path; }

 private:
  /// Rolls back on scope exit unless released; used around reads and writes.
  class transaction_guard {
   public:
    explicit transaction_guard(sqlite_store& store) : store_(&store) {}
    transaction_guard(const transaction_guard&) = delete;
    transaction_guard& operator=(const transaction_guard&) = delete;
    ~transaction_guard() {
      if (store_ != nullptr) store_->rollback_quietly();
    }
    void release() noexcept { store_ = nullptr; }

   private:
    sqlite_store* store_;
  };

  /// BEGIN IMMEDIATE takes the write lock up front, so a busy database fails
  /// here (after the busy timeout) instead of half-way through the batch.
  class transaction {
   public:
    explicit transaction(sqlite_store& store) : store_(store), guard_(store) {
      store_.exec("BEGIN IMMEDIATE");
    }
    void commit() {
      store_.exec("COMMIT");
      guard_.release();
    }

   private:
    sqlite_store& store_;
    transaction_guard guard_;
  };

  template <class F>
  auto guarded(std::string_view operation, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const sqlite_failure& failure) {
      return tl::unexpected<base::error>(to_error(failure, operation, options_.path));
    }
  }

  [[noreturn]] void raise(int rc, std::string_view what) const {
    throw sqlite_failure{rc, std::string(what) + ": " + sqlite3_errmsg(db_)};
  }

  void rollback_quietly() noexcept {
    // Nothing to do when SQLite already rolled back (e.g. after SQLITE_FULL).
    if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  void exec(const std::string& sql) {
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) raise(rc, sql.substr(0, 60));
  }

  /// A cached prepared statement, reset and with cleared bindings.
  sqlite3_stmt* stmt(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) raise(rc, "prepare " + sql.substr(0, 60));
    cache_.emplace(sql, s);
    return s;
  }

  void bind_one(sqlite3_stmt* s, int i, const std::string& v) {
    check_bind(sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  void bind_one(sqlite3_stmt* s, int i, std::int64_t v) { check_bind(sqlite3_bind_int64(s, i, v)); }
  void bind_one(sqlite3_stmt* s, int i, int v) { check_bind(sqlite3_bind_int64(s, i, v)); }
  void bind_one(sqlite3_stmt* s, int i, double v) { check_bind(sqlite3_bind_double(s, i, v)); }
  void check_bind(int rc) {
    if (rc != SQLITE_OK) raise(rc, "bind");
  }

  template <class... Args>
  void bind_all(sqlite3_stmt* s, const Args&... args) {
    int i = 0;
    (bind_one(s, ++i, args), ...);
  }

  /// Binds, runs to completion and resets a statement that returns no rows.
  template <class... Args>
  void run(sqlite3_stmt* s, const Args&... args) {
    bind_all(s, args...);
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) raise(rc, sqlite3_sql(s));
  }

  /// Steps once: true with a row, false when done.
  bool step_row(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    sqlite3_reset(s);
    raise(rc, sqlite3_sql(s));
  }

  static std::string column_text(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p == nullptr ? std::string{} : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
  }

  static base::task_row read_task(sqlite3_stmt* s) {
    base::task_row t;
    t.id = column_text(s, 0);
    t.team = column_text(s, 1);
    t.agent = column_text(s, 2);
    t.priority = sqlite3_column_int(s, 3);
    t.state = column_text(s, 4);
    t.idempotency_key = column_text(s, 5);
    t.snapshot = column_text(s, 6);
    t.seq = sqlite3_column_int64(s, 7);
    t.created_ms = sqlite3_column_int64(s, 8);
    t.updated_ms = sqlite3_column_int64(s, 9);
    return t;
  }

  static base::journal_row read_journal(sqlite3_stmt* s) {
    return {column_text(s, 0), sqlite3_column_int64(s, 1), column_text(s, 2), column_text(s, 3),
            sqlite3_column_int64(s, 4)};
  }

  int read_version() {
    sqlite3_stmt* s = stmt("SELECT coalesce(max(version), 0) FROM schema_version");
    step_row(s);
    const int v = sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return v;
  }

  /// The id of the task that holds a new task's idempotency key (or its id).
  std::string existing_holder(const base::task_row& t) {
    if (!t.idempotency_key.empty()) {
      sqlite3_stmt* s = stmt(find_key_sql);
      bind_all(s, t.team, t.agent, t.idempotency_key);
      if (step_row(s)) {
        std::string id = column_text(s, 0);
        sqlite3_reset(s);
        return id;
      }
    }
    return t.id;  // the conflict was on the task id itself
  }

  sqlite3* db_;
  sqlite_options options_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;
};

}  // namespace

base::result<std::unique_ptr<base::snapshot_store>> open_sqlite_store(
    const sqlite_options& options) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(options.path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                           nullptr);
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
    return base::fail(errc::unavailable, "sqlite store " + options.path +
                                             ": the file system refused WAL mode (journal_mode=" +
                                             mode + ")");
  }
  // NORMAL in WAL mode syncs at checkpoints only: a committed transaction
  // survives a crash of the process, the last ones may be lost on power loss.
  const char* sync = options.sync == sqlite_sync::full ? "PRAGMA synchronous=FULL"
                                                       : "PRAGMA synchronous=NORMAL";
  rc = sqlite3_exec(db, sync, nullptr, nullptr, nullptr);
  if (rc == SQLITE_OK) {
    // Keep the WAL file from growing without bound after big batches.
    rc = sqlite3_exec(db, "PRAGMA journal_size_limit=67108864", nullptr, nullptr, nullptr);
  }
  if (rc != SQLITE_OK) return fail_open("cannot configure the connection");
  return std::unique_ptr<base::snapshot_store>(std::make_unique<sqlite_store>(db, options));
}

}  // namespace troupe::persistence::detail
