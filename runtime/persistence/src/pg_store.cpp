#include "pg_store.hpp"

#include <cstdint>
#include <pqxx/pqxx>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "batch_dedup.hpp"
#include "migrations.hpp"
#include "pg_arrays.hpp"
#include "store_url.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence::detail {
namespace {

using base::errc;

// Every batch writes one multi-row statement per row kind: the rows travel as
// array parameters and unnest() turns them back into rows on the server, so a
// batch of 512 costs a handful of round trips instead of 512.
constexpr const char* insert_tasks_sql =
    "INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, seq, "
    "created_ms, updated_ms) "
    "SELECT id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, "
    "updated_ms FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[]) WITH ORDINALITY "
    "AS u(id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, "
    "updated_ms, ord) ORDER BY ord ON CONFLICT DO NOTHING RETURNING id";
// A snapshot never moves a task back to an older seq (see the SQLite store).
constexpr const char* upsert_tasks_sql =
    "INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, seq, "
    "created_ms, updated_ms) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[]) "
    "ON CONFLICT (id) DO UPDATE SET team = excluded.team, agent = excluded.agent, "
    "priority = excluded.priority, state = excluded.state, "
    "idempotency_key = excluded.idempotency_key, snapshot = excluded.snapshot, "
    "seq = excluded.seq, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms "
    "WHERE excluded.seq >= tasks.seq";
constexpr const char* trim_journal_sql =
    "DELETE FROM journal j USING unnest($1::text[], $2::bigint[]) AS s(task_id, seq) "
    "WHERE j.task_id = s.task_id AND j.seq <= s.seq";
constexpr const char* insert_journal_sql =
    "INSERT INTO journal (task_id, seq, kind, payload, ts_ms) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) "
    "ON CONFLICT DO NOTHING";
constexpr const char* insert_costs_sql =
    "INSERT INTO costs (task_id, step_id, agent, team, provider, model, outcome, tokens_in, "
    "tokens_out, latency_ms, ts_ms, usd) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], "
    "$12::float8[])";
// ORDER BY the ordinality so the serial ids keep the batch's audit order.
constexpr const char* insert_audit_sql =
    "INSERT INTO audit (ts_ms, principal, action, target, detail, outcome) "
    "SELECT ts_ms, principal, action, target, detail, outcome FROM unnest($1::bigint[], "
    "$2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY "
    "AS u(ts_ms, principal, action, target, detail, outcome, ord) ORDER BY ord";
constexpr const char* upsert_entities_sql =
    "INSERT INTO entity_state (team, agent, paused, failed, spent_usd, detail, updated_ms) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::float8[], "
    "$6::text[], $7::bigint[]) ON CONFLICT (team, agent) DO UPDATE SET "
    "paused = excluded.paused, failed = excluded.failed, spent_usd = excluded.spent_usd, "
    "detail = excluded.detail, updated_ms = excluded.updated_ms";
constexpr const char* select_entities =
    "SELECT team, agent, paused, failed, spent_usd, detail, updated_ms FROM entity_state";
constexpr const char* upsert_decisions_sql =
    "INSERT INTO decisions (id, task_id, step_id, state, record, deadline_ms) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::bigint[]) ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, "
    "step_id = excluded.step_id, state = excluded.state, record = excluded.record, "
    "deadline_ms = excluded.deadline_ms";
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
      pqxx::work w{c};
      if (!batch.new_tasks.empty()) insert_new_tasks(w, batch.new_tasks, outcome);
      // Journal before snapshots: a snapshot in the same batch then trims the
      // deltas it already contains.
      if (!batch.journal.empty()) {
        text_array task_id, kind, payload;
        int_array seq, ts;
        for (const auto& j : batch.journal) {
          task_id.add(j.task_id), seq.add(j.seq), kind.add(j.kind), payload.add(j.payload),
              ts.add(j.ts_ms);
        }
        w.exec_prepared("journal", task_id.str(), seq.str(), kind.str(), payload.str(), ts.str());
      }
      if (!batch.snapshots.empty()) upsert_snapshots(w, batch.snapshots);
      if (!batch.costs.empty()) insert_costs(w, batch.costs);
      if (!batch.audit.empty()) {
        int_array ts;
        text_array principal, action, target, detail, result;
        for (const auto& a : batch.audit) {
          ts.add(a.ts_ms), principal.add(a.principal), action.add(a.action), target.add(a.target),
              detail.add(a.detail), result.add(a.outcome);
        }
        w.exec_prepared("audit", ts.str(), principal.str(), action.str(), target.str(),
                        detail.str(), result.str());
      }
      if (!batch.entities.empty()) upsert_entities(w, batch.entities);
      if (!batch.decisions.empty()) {
        text_array id, task_id, step_id, state, record;
        int_array deadline;
        for (std::size_t i : last_of_each(batch.decisions, [](const auto& d) { return d.id; })) {
          const auto& d = batch.decisions[i];
          id.add(d.id), task_id.add(d.task_id), step_id.add(d.step_id), state.add(d.state),
              record.add(d.record), deadline.add(d.deadline_ms);
        }
        w.exec_prepared("decisions", id.str(), task_id.str(), step_id.str(), state.str(),
                        record.str(), deadline.str());
      }
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
    c.prepare("insert_tasks", insert_tasks_sql);
    c.prepare("upsert_tasks", upsert_tasks_sql);
    c.prepare("trim_journal", trim_journal_sql);
    c.prepare("journal", insert_journal_sql);
    c.prepare("costs", insert_costs_sql);
    c.prepare("audit", insert_audit_sql);
    c.prepare("entities", upsert_entities_sql);
    c.prepare("decisions", upsert_decisions_sql);
    c.prepare("find_key", find_key_sql);
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
                           " AND updated_ms < $1 ORDER BY updated_ms LIMIT $2 "
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
    try {
      if (!conn_ || !conn_->is_open()) {
        conn_.reset();
        conn_ = std::make_unique<pqxx::connection>(url_);
        prepare_all();
      }
      return f(*conn_);
    } catch (const pqxx::in_doubt_error& e) {
      conn_.reset();
      return result_type(tl::unexpect,
                         base::make_error(errc::unavailable,
                                          where +
                                              ": connection lost during COMMIT, outcome "
                                              "unknown: " +
                                              clean(e.what()),
                                          true));
    } catch (const pqxx::broken_connection& e) {
      conn_.reset();
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

  void insert_new_tasks(pqxx::work& w, const std::vector<base::task_row>& tasks,
                        base::commit_outcome& outcome) {
    task_arrays a;
    for (const auto& t : tasks) a.add(t);
    auto inserted = w.exec_prepared("insert_tasks", a.id.str(), a.team.str(), a.agent.str(),
                                    a.priority.str(), a.state.str(), a.key.str(), a.snapshot.str(),
                                    a.seq.str(), a.created.str(), a.updated.str());
    // RETURNING lists the rows that went in; each id marks its first unmarked
    // occurrence in the batch, everything left over was a conflict.
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
            w.exec_prepared("find_key", tasks[i].team, tasks[i].agent, tasks[i].idempotency_key);
        if (!r.empty()) holder = r[0][0].as<std::string>();
      }
      outcome.conflicts.push_back({i, std::move(holder)});
    }
  }

  void upsert_snapshots(pqxx::work& w, const std::vector<base::task_row>& snapshots) {
    task_arrays a;
    for (std::size_t i : last_of_each(snapshots, [](const auto& t) { return t.id; })) {
      a.add(snapshots[i]);
    }
    w.exec_prepared("upsert_tasks", a.id.str(), a.team.str(), a.agent.str(), a.priority.str(),
                    a.state.str(), a.key.str(), a.snapshot.str(), a.seq.str(), a.created.str(),
                    a.updated.str());
    w.exec_prepared("trim_journal", a.id.str(), a.seq.str());
  }

  void insert_costs(pqxx::work& w, const std::vector<base::cost_row>& costs) {
    text_array task_id, step_id, agent, team, provider, model, outcome;
    int_array tokens_in, tokens_out, latency, ts;
    float_array usd;
    for (const auto& c : costs) {
      task_id.add(c.task_id), step_id.add(c.step_id), agent.add(c.agent), team.add(c.team);
      provider.add(c.provider), model.add(c.model), outcome.add(c.outcome);
      tokens_in.add(c.tokens_in), tokens_out.add(c.tokens_out), latency.add(c.latency_ms);
      ts.add(c.ts_ms), usd.add(c.usd);
    }
    w.exec_prepared("costs", task_id.str(), step_id.str(), agent.str(), team.str(), provider.str(),
                    model.str(), outcome.str(), tokens_in.str(), tokens_out.str(), latency.str(),
                    ts.str(), usd.str());
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

  void upsert_entities(pqxx::work& w, const std::vector<base::entity_row>& entities) {
    text_array team, agent, detail;
    int_array paused, failed, updated;
    float_array spent;
    for (std::size_t i :
         last_of_each(entities, [](const auto& e) { return e.team + '\x1f' + e.agent; })) {
      const auto& e = entities[i];
      team.add(e.team), agent.add(e.agent), paused.add(e.paused ? 1 : 0);
      failed.add(e.failed ? 1 : 0), spent.add(e.spent_usd), detail.add(e.detail);
      updated.add(e.updated_ms);
    }
    w.exec_prepared("entities", team.str(), agent.str(), paused.str(), failed.str(), spent.str(),
                    detail.str(), updated.str());
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
