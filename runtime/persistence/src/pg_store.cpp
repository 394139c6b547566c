#include "pg_store.hpp"

#include <array>
#include <cstdint>
#include <pqxx/pqxx>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "migrations.hpp"
#include "pg_batch.hpp"
#include "store_url.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence::detail {
namespace {

using base::errc;

constexpr const char* select_entities =
    "SELECT team, agent, paused, failed, spent_usd, detail, updated_ms FROM entity_state";
constexpr const char* find_key_sql =
    "SELECT id FROM tasks WHERE team = $1 AND agent = $2 AND idempotency_key = $3";
constexpr const char* task_columns =
    "id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, updated_ms";
// Serialises concurrent `troupe migrate` runs against one database.
constexpr const char* migrate_lock_sql = "SELECT pg_advisory_xact_lock(7402775401)";

/// One line, no tabs: libpq's messages span lines with hints.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

/// Bad URL syntax reported by libpq while connecting (not a network failure).
bool is_bad_conninfo(std::string_view message) {
  return message.starts_with("invalid ") || message.starts_with("missing \"=\"") ||
         message.starts_with("unexpected spaces") ||
         message.find("connection option") != std::string_view::npos;
}

class pg_store final : public base::snapshot_store {
 public:
  pg_store(std::string url, std::unique_ptr<pqxx::connection> conn)
      : url_(std::move(url)),
        redacted_(redact_store_url(url_)),
        password_(url_password(url_)),
        conn_(std::move(conn)) {
    prepare_all();
  }

  base::result<int> migrate() override {
    return guarded("migrate", [&](pqxx::connection& c) -> base::result<int> {
      for (const migration& step : migrations()) {
        pqxx::work w{c};
        w.exec(migrate_lock_sql);
        w.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
        const int current =
            w.exec1("SELECT coalesce(max(version), 0) FROM schema_version")[0].as<int>();
        if (current > base::store_schema_version) {
          return base::fail(errc::invalid_config,
                            "postgres store " + redacted_ + ": " + newer_schema_message(current));
        }
        if (current >= step.version) {
          w.commit();
          continue;
        }
        w.exec(step.postgres_sql);
        w.exec("DELETE FROM schema_version");
        w.exec("INSERT INTO schema_version (version) VALUES (" + std::to_string(step.version) +
               ")");
        w.commit();
      }
      return base::store_schema_version;
    });
  }

  base::result<int> schema_version() override {
    return guarded("schema_version", [&](pqxx::connection& c) -> base::result<int> {
      pqxx::read_transaction r{c};
      if (r.exec1("SELECT to_regclass('schema_version') IS NULL")[0].as<bool>()) return 0;
      return r.exec1("SELECT coalesce(max(version), 0) FROM schema_version")[0].as<int>();
    });
  }

  base::result<base::commit_outcome> commit(const base::write_batch& batch) override {
    return guarded("commit", [&](pqxx::connection& c) -> base::result<base::commit_outcome> {
      base::commit_outcome outcome;
      if (batch.empty()) return outcome;
      // A snapshot of a task that is new in the same batch must see its row:
      // those snapshots go in a second statement of one transaction. Otherwise
      // the batch is one statement, committed on its own (one round trip).
      std::vector<bool> late(batch.snapshots.size(), false);
      bool any_late = false;
      if (!batch.new_tasks.empty() && !batch.snapshots.empty()) {
        std::unordered_set<std::string_view> fresh;
        for (const auto& t : batch.new_tasks) fresh.insert(t.id);
        for (std::size_t i = 0; i < batch.snapshots.size(); ++i)
          if (fresh.count(batch.snapshots[i].id)) late[i] = any_late = true;
      }
      auto cols = columns_of(batch, any_late ? late : std::vector<bool>{});
      if (!any_late) {
        pqxx::nontransaction n{c};
        statement_in_flight_ = true;
        auto inserted = exec_batch(n, cols);
        statement_in_flight_ = false;
        resolve_conflicts(n, batch.new_tasks, inserted, outcome);
        return outcome;
      }
      pqxx::work w{c};
      auto inserted = exec_batch(w, cols);
      auto rest = snapshot_columns(batch.snapshots, late);
      exec_batch(w, rest);
      resolve_conflicts(w, batch.new_tasks, inserted, outcome);
      w.commit();
      return outcome;
    });
  }

  base::result<base::recovered_state> recover() override {
    return guarded("recover", [&](pqxx::connection& c) -> base::result<base::recovered_state> {
      base::recovered_state out;
      // Repeatable read: tasks and their journal come from one snapshot.
      pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> r{c};
      auto tasks = r.exec(std::string("SELECT ") + task_columns +
                          " FROM tasks WHERE state NOT IN " + terminal_states_sql);
      out.active_tasks.reserve(tasks.size());
      for (const auto& row : tasks) out.active_tasks.push_back(read_task(row));
      // COLLATE "C" gives the same byte order as SQLite whatever the database locale.
      auto journal = r.exec(std::string("SELECT j.task_id, j.seq, j.kind, j.payload, j.ts_ms "
                                        "FROM journal j JOIN tasks t ON t.id = j.task_id "
                                        "WHERE t.state NOT IN ") +
                            terminal_states_sql +
                            " AND j.seq > t.seq ORDER BY j.task_id COLLATE \"C\", j.seq");
      out.journal.reserve(journal.size());
      for (const auto& row : journal) out.journal.push_back(read_journal(row));
      for (const auto& row : r.exec("SELECT id, task_id, step_id, state, record, deadline_ms "
                                    "FROM decisions WHERE state = 'pending' "
                                    "ORDER BY id COLLATE \"C\"")) {
        out.pending_decisions.push_back({row[0].as<std::string>(), row[1].as<std::string>(),
                                         row[2].as<std::string>(), row[3].as<std::string>(),
                                         row[4].as<std::string>(), row[5].as<std::int64_t>()});
      }
      for (const auto& row : r.exec(std::string(select_entities) +
                                    " ORDER BY team COLLATE \"C\", agent COLLATE \"C\"")) {
        out.entities.push_back(read_entity(row));
      }
      r.commit();
      return out;
    });
  }

  base::result<std::optional<base::task_row>> load_task(const std::string& id) override {
    return guarded("load_task",
                   [&](pqxx::connection& c) -> base::result<std::optional<base::task_row>> {
                     pqxx::read_transaction r{c};
                     auto rows = r.exec_prepared("load_task", id);
                     std::optional<base::task_row> out;
                     if (!rows.empty()) out = read_task(rows[0]);
                     return out;
                   });
  }

  base::result<std::vector<base::journal_row>> load_journal(const std::string& task_id,
                                                            std::int64_t after_seq) override {
    return guarded("load_journal",
                   [&](pqxx::connection& c) -> base::result<std::vector<base::journal_row>> {
                     pqxx::read_transaction r{c};
                     std::vector<base::journal_row> out;
                     for (const auto& row : r.exec_prepared("load_journal", task_id, after_seq)) {
                       out.push_back(read_journal(row));
                     }
                     return out;
                   });
  }

  base::result<std::size_t> prune_terminal(std::int64_t before_ms, std::size_t limit) override {
    return guarded("prune_terminal", [&](pqxx::connection& c) -> base::result<std::size_t> {
      if (limit == 0) return std::size_t{0};
      pqxx::work w{c};
      auto r = w.exec_prepared("prune", before_ms, clamp(limit));
      w.commit();
      return static_cast<std::size_t>(r.affected_rows());
    });
  }

  base::result<std::vector<base::entity_row>> load_entities(const std::string& team) override {
    return guarded("load_entities",
                   [&](pqxx::connection& c) -> base::result<std::vector<base::entity_row>> {
                     pqxx::read_transaction r{c};
                     std::vector<base::entity_row> out;
                     for (const auto& row : r.exec_prepared("load_entities", team)) {
                       out.push_back(read_entity(row));
                     }
                     return out;
                   });
  }

  base::result<std::vector<base::audit_row>> load_audit(std::size_t limit) override {
    return guarded("load_audit",
                   [&](pqxx::connection& c) -> base::result<std::vector<base::audit_row>> {
                     pqxx::read_transaction r{c};
                     std::vector<base::audit_row> out;
                     for (const auto& row : r.exec_prepared("load_audit", clamp(limit))) {
                       out.push_back({row[0].as<std::int64_t>(), row[1].as<std::string>(),
                                      row[2].as<std::string>(), row[3].as<std::string>(),
                                      row[4].as<std::string>(), row[5].as<std::string>()});
                     }
                     return out;
                   });
  }

  base::result<bool> committed(std::uint64_t commit_id) override {
    return guarded("committed", [&](pqxx::connection& c) -> base::result<bool> {
      pqxx::nontransaction n{c};
      return !n.exec_prepared("committed", base::commit_mark_slot(commit_id), static_cast<std::int64_t>(commit_id))
                  .empty();
    });
  }

  base::result<bool> ping() override {
    return guarded("ping", [&](pqxx::connection& c) -> base::result<bool> {
      pqxx::nontransaction n{c};
      n.exec1("SELECT 1");
      return true;
    });
  }

  std::string describe() const override { return redacted_; }

 private:
  static std::int64_t clamp(std::size_t limit) {
    constexpr auto max = static_cast<std::size_t>(INT64_MAX);
    return static_cast<std::int64_t>(limit > max ? max : limit);
  }

  void prepare_all() {
    pqxx::connection& c = *conn_;
    // The batch statements take whole columns as arrays. A generic plan guesses
    // 10 rows per unnest() and then joins the journal by a full scan (6 ms per
    // batch with 50,000 journal rows); a plan made for the actual arrays probes
    // the primary key per row (under 1 ms). Planning these statements costs
    // tens of microseconds, so every execution gets its own plan.
    pqxx::nontransaction{c}.exec("SET plan_cache_mode = force_custom_plan");
    c.prepare("batch", batch_sql);
    c.prepare("find_key", find_key_sql);
    c.prepare("committed", "SELECT 1 FROM commit_marks WHERE slot = $1 AND commit_id = $2");
    c.prepare("load_task", std::string("SELECT ") + task_columns + " FROM tasks WHERE id = $1");
    c.prepare("load_journal",
              "SELECT task_id, seq, kind, payload, ts_ms FROM journal "
              "WHERE task_id = $1 AND seq > $2 ORDER BY seq");
    c.prepare("load_audit",
              "SELECT ts_ms, principal, action, target, detail, outcome FROM audit "
              "ORDER BY id DESC LIMIT $1");
    c.prepare("load_entities",
              std::string(select_entities) + " WHERE team = $1 ORDER BY agent COLLATE \"C\"");
    c.prepare("prune", std::string("WITH victims AS (SELECT id FROM tasks WHERE state IN ") +
                           terminal_states_sql +
                           " AND updated_ms < $1 ORDER BY created_ms LIMIT $2 "
                           "FOR UPDATE SKIP LOCKED), "
                           "j AS (DELETE FROM journal WHERE task_id IN (SELECT id FROM victims)), "
                           "d AS (DELETE FROM decisions WHERE task_id IN (SELECT id FROM victims)) "
                           "DELETE FROM tasks WHERE id IN (SELECT id FROM victims)");
  }

  /// Runs `f` on a live connection, reconnecting first if the last call broke
  /// it, and turns every libpqxx exception into an error value.
  template <class F>
  auto guarded(std::string_view operation, F&& f)
      -> decltype(f(std::declval<pqxx::connection&>())) {
    using result_type = decltype(f(std::declval<pqxx::connection&>()));
    const std::string where = "postgres store " + redacted_ + ": " + std::string(operation);
    statement_in_flight_ = false;
    try {
      if (!conn_ || !conn_->is_open()) {
        conn_.reset();
        conn_ = std::make_unique<pqxx::connection>(url_);
        prepare_all();
      }
      return f(*conn_);
    } catch (const pqxx::in_doubt_error& e) {
      conn_.reset();
      return result_type(tl::unexpect, in_doubt(where + ": connection lost during COMMIT, outcome unknown: " +
                                                clean(e.what())));
    } catch (const pqxx::broken_connection& e) {
      conn_.reset();
      if (std::exchange(statement_in_flight_, false)) {
        // The batch statement commits itself: like a lost COMMIT, it may have.
        return result_type(tl::unexpect,
                           in_doubt(where + ": connection lost during the batch statement, outcome unknown: " +
                                    clean(e.what())));
      }
      return result_type(
          tl::unexpect,
          base::make_error(errc::unavailable, where + ": database unreachable: " + clean(e.what()),
                           true));
    } catch (const pqxx::sql_error& e) {
      const std::string state = e.sqlstate();
      // Class 08 is a connection exception, 57P0x an administrator shutdown or
      // a server still starting; 40001/40P01 are serialisation failures and
      // deadlocks. All of them may pass on retry.
      const bool connection_lost = state.starts_with("08") || state.starts_with("57P0");
      if (connection_lost) conn_.reset();
      const bool retryable = connection_lost || state == "40001" || state == "40P01";
      return result_type(
          tl::unexpect,
          base::make_error(retryable ? errc::unavailable : errc::internal,
                           where + " failed (SQLSTATE " + state + "): " + clean(e.what()),
                           retryable));
    } catch (const std::exception& e) {
      return result_type(tl::unexpect,
                         base::make_error(errc::internal, where + " failed: " + clean(e.what())));
    }
  }

  std::string clean(const char* what) const { return one_line(scrub(what, password_)); }

  /// Retryable, and the write may have landed (base::error::in_doubt).
  static base::error in_doubt(std::string message) {
    auto e = base::make_error(errc::unavailable, std::move(message), true);
    e.in_doubt = true;
    return e;
  }

  /// Runs batch_sql with the batch's columns; returns the ids of the new
  /// tasks that went in.
  static pqxx::result exec_batch(pqxx::transaction_base& t, batch_columns& c) {
    auto& n = c.new_tasks;
    auto& s = c.snapshots;
    const pqxx::binarystring n_snapshots{n.snapshot.bytes()}, s_snapshots{s.snapshot.bytes()};
    return t.exec_prepared(
        "batch", n.id.str(), n.team.str(), n.agent.str(), n.priority.str(), n.state.str(),
        n.key.str(), n_snapshots, n.seq.str(), n.created.str(), n.updated.str(), c.j_task.str(),
        c.j_seq.str(), c.j_kind.str(), c.j_payload.str(), c.j_ts.str(), s.id.str(), s.team.str(),
        s.agent.str(), s.priority.str(), s.state.str(), s.key.str(), s_snapshots, s.seq.str(),
        s.created.str(), s.updated.str(), c.c_task.str(), c.c_step.str(), c.c_agent.str(),
        c.c_team.str(), c.c_provider.str(), c.c_model.str(), c.c_outcome.str(), c.c_in.str(),
        c.c_out.str(), c.c_latency.str(), c.c_ts.str(), c.c_usd.str(), c.a_ts.str(),
        c.a_principal.str(), c.a_action.str(), c.a_target.str(), c.a_detail.str(),
        c.a_outcome.str(), c.e_team.str(), c.e_agent.str(), c.e_paused.str(), c.e_failed.str(),
        c.e_spent.str(), c.e_detail.str(), c.e_updated.str(), c.d_id.str(), c.d_task.str(),
        c.d_step.str(), c.d_state.str(), c.d_record.str(), c.d_deadline.str(),
        n.snapshot.offset.str(), n.snapshot.length.str(), s.snapshot.offset.str(),
        s.snapshot.length.str(), base::commit_mark_slot(c.commit_id), static_cast<std::int64_t>(c.commit_id));
  }

  /// RETURNING lists the new tasks that went in; each id marks its first
  /// unmarked occurrence in the batch, everything left over was a conflict.
  static void resolve_conflicts(pqxx::transaction_base& t, const std::vector<base::task_row>& tasks,
                                const pqxx::result& inserted, base::commit_outcome& outcome) {
    if (static_cast<std::size_t>(inserted.size()) == tasks.size()) return;
    std::unordered_map<std::string, int> inserted_count;
    for (const auto& row : inserted) ++inserted_count[row[0].as<std::string>()];
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      auto it = inserted_count.find(tasks[i].id);
      if (it != inserted_count.end() && it->second > 0) {
        --it->second;
        continue;
      }
      std::string holder = tasks[i].id;  // the conflict was on the task id itself
      if (!tasks[i].idempotency_key.empty()) {
        auto r =
            t.exec_prepared("find_key", tasks[i].team, tasks[i].agent, tasks[i].idempotency_key);
        if (!r.empty()) holder = r[0][0].as<std::string>();
      }
      outcome.conflicts.push_back({i, std::move(holder)});
    }
  }

  static base::task_row read_task(const pqxx::row& row) {
    base::task_row t;
    t.id = row[0].as<std::string>();
    t.team = row[1].as<std::string>();
    t.agent = row[2].as<std::string>();
    t.priority = row[3].as<int>();
    t.state = row[4].as<std::string>();
    t.idempotency_key = row[5].as<std::string>();
    t.snapshot = row[6].as<std::string>();
    t.seq = row[7].as<std::int64_t>();
    t.created_ms = row[8].as<std::int64_t>();
    t.updated_ms = row[9].as<std::int64_t>();
    return t;
  }

  static base::entity_row read_entity(const pqxx::row& row) {
    return {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int>() != 0,
            row[3].as<int>() != 0,    row[4].as<double>(),      row[5].as<std::string>(),
            row[6].as<std::int64_t>()};
  }

  static base::journal_row read_journal(const pqxx::row& row) {
    return {row[0].as<std::string>(), row[1].as<std::int64_t>(), row[2].as<std::string>(),
            row[3].as<std::string>(), row[4].as<std::int64_t>()};
  }

  std::string url_;
  std::string redacted_;
  std::string password_;
  std::unique_ptr<pqxx::connection> conn_;
  bool statement_in_flight_ = false;  ///< the self-committing batch statement was sent
};

}  // namespace

base::result<std::unique_ptr<base::snapshot_store>> open_pg_store(const std::string& url) {
  const std::string redacted = redact_store_url(url);
  const std::string password = url_password(url);
  try {
    auto conn = std::make_unique<pqxx::connection>(url);
    return std::unique_ptr<base::snapshot_store>(std::make_unique<pg_store>(url, std::move(conn)));
  } catch (const std::exception& e) {
    const std::string reason = one_line(scrub(e.what(), password));
    if (is_bad_conninfo(reason)) {
      return base::fail(errc::invalid_config,
                        "store URL '" + redacted + "' is not a valid PostgreSQL URL: " + reason);
    }
    return base::fail(errc::unavailable,
                      "postgres store " + redacted + ": cannot connect: " + reason, true);
  }
}

}  // namespace troupe::persistence::detail
