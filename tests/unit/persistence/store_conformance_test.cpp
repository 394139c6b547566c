// The snapshot_store conformance suite, part 1: schema, row kinds, idempotency,
// journal trimming, recovery, pruning, audit. Instantiated for both stores here.
#include "migrations.hpp"  // private: the version 1 schema text, to build an old database
#include "store_conformance.hpp"

namespace troupe::persistence::conformance {
namespace {

TEST_P(store_conformance, migrate_creates_the_schema_and_is_idempotent) {
  EXPECT_EQ(version_before_migrate_, 0);
  EXPECT_EQ(store_->schema_version().value(), base::store_schema_version);
  base::write_batch b;
  b.new_tasks.push_back(task("t1"));
  commit_ok(b);
  auto again = store_->migrate();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, base::store_schema_version);
  // A second store on the same database migrates to a no-op too.
  auto other = open();
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->migrate().value(), base::store_schema_version);
  EXPECT_TRUE(task_of("t1").has_value());
  EXPECT_EQ(count("SELECT count(*) FROM schema_version"), 1);
}

TEST_P(store_conformance, migrate_refuses_a_newer_schema) {
  backend_->exec("UPDATE schema_version SET version = 99");
  auto r = open()->migrate();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_config);
  EXPECT_NE(
      r.error().message.find("database schema version 99 is newer than this build understands (" +
                             std::to_string(base::store_schema_version) + "); upgrade troupe"),
      std::string::npos)
      << r.error().message;
  EXPECT_EQ(store_->schema_version().value(), 99);
}

TEST_P(store_conformance, commit_and_recover_round_trip_every_row_kind) {
  base::write_batch b;
  auto t = task("t1", "running", 0, "key-1");
  t.agent = "researcher";
  b.new_tasks.push_back(t);
  b.journal = {delta("t1", 1), delta("t1", 2)};
  b.costs.push_back({"t1", "research", "researcher", "newsroom", "offline", "haiku", "ok", 120, 45,
                     33, 5000, 0.000123456789});
  b.audit.push_back({5000, "ops", "submit", "t1", R"({"team":"newsroom"})", "ok"});
  b.entities.push_back({"newsroom", "researcher", true, false, 0.25, R"({"why":"ops"})", 5000});
  b.entities.push_back({"newsroom", "", false, true, 1.5, "{}", 5001});
  b.decisions.push_back({"d1", "t1", "publish", "pending", R"({"options":["a","b"]})", 90000});
  auto outcome = commit_ok(b);
  EXPECT_TRUE(outcome.conflicts.empty());

  auto loaded = task_of("t1");
  ASSERT_TRUE(loaded);
  expect_same_task(*loaded, t);
  EXPECT_EQ(seqs(journal_of("t1")), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(seqs(journal_of("t1", 1)), (std::vector<std::int64_t>{2}));
  EXPECT_FALSE(task_of("missing").has_value());

  auto rec = recover_ok();
  ASSERT_EQ(rec.active_tasks.size(), 1u);
  expect_same_task(rec.active_tasks[0], t);
  ASSERT_EQ(rec.journal.size(), 2u);
  EXPECT_EQ(rec.journal[1].task_id, "t1");
  EXPECT_EQ(rec.journal[1].kind, "step_finished");
  EXPECT_EQ(rec.journal[1].payload, R"({"step":2})");
  EXPECT_EQ(rec.journal[1].ts_ms, 2002);
  ASSERT_EQ(rec.pending_decisions.size(), 1u);
  const auto& d = rec.pending_decisions[0];
  EXPECT_EQ(d.id, "d1");
  EXPECT_EQ(d.task_id, "t1");
  EXPECT_EQ(d.step_id, "publish");
  EXPECT_EQ(d.record, R"({"options":["a","b"]})");
  EXPECT_EQ(d.deadline_ms, 90000);
  ASSERT_EQ(rec.entities.size(), 2u);
  // Ordered by (team, agent): the team's own row (agent "") first.
  const auto& team_row = rec.entities[0];
  EXPECT_EQ(team_row.team, "newsroom");
  EXPECT_EQ(team_row.agent, "");
  EXPECT_FALSE(team_row.paused);
  EXPECT_TRUE(team_row.failed);
  EXPECT_DOUBLE_EQ(team_row.spent_usd, 1.5);
  EXPECT_EQ(team_row.updated_ms, 5001);
  const auto& agent_row = rec.entities[1];
  EXPECT_EQ(agent_row.agent, "researcher");
  EXPECT_TRUE(agent_row.paused);
  EXPECT_FALSE(agent_row.failed);
  EXPECT_DOUBLE_EQ(agent_row.spent_usd, 0.25);
  EXPECT_EQ(agent_row.detail, R"({"why":"ops"})");
  EXPECT_EQ(agent_row.updated_ms, 5000);

  auto audit = store_->load_audit(10);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].principal, "ops");
  EXPECT_EQ((*audit)[0].detail, R"({"team":"newsroom"})");
  EXPECT_EQ((*audit)[0].outcome, "ok");
  EXPECT_EQ((*audit)[0].action, "submit");
  EXPECT_EQ((*audit)[0].ts_ms, 5000);

  EXPECT_EQ(count("SELECT count(*) FROM costs WHERE task_id = 't1' AND tokens_in = 120 AND "
                  "tokens_out = 45 AND latency_ms = 33 AND model = 'haiku'"),
            1);
  EXPECT_DOUBLE_EQ(std::stod(backend_->scalar("SELECT usd FROM costs")), 0.000123456789);
}

TEST_P(store_conformance, entities_and_decisions_are_upserted) {
  base::write_batch b;
  b.entities.push_back({"t", "a", true, false, 1.0, R"({"v":1})", 1});
  b.decisions.push_back({"d1", "t1", "s", "pending", "{}", 0});
  b.decisions.push_back({"d2", "t1", "s", "pending", "{}", 0});
  commit_ok(b);
  base::write_batch b2;
  b2.entities.push_back({"t", "a", false, true, 2.0, R"({"v":2})", 2});
  b2.entities.push_back({"t", "a", false, false, 3.5, R"({"v":3})", 3});  // the last one wins
  b2.decisions.push_back({"d1", "t1", "s", "resolved", R"({"by":"ops"})", 0});
  commit_ok(b2);
  auto rec = recover_ok();
  ASSERT_EQ(rec.entities.size(), 1u);
  EXPECT_EQ(rec.entities[0].detail, R"({"v":3})");
  EXPECT_FALSE(rec.entities[0].paused);
  EXPECT_FALSE(rec.entities[0].failed);
  EXPECT_DOUBLE_EQ(rec.entities[0].spent_usd, 3.5);
  EXPECT_EQ(rec.entities[0].updated_ms, 3);
  ASSERT_EQ(rec.pending_decisions.size(), 1u);
  EXPECT_EQ(rec.pending_decisions[0].id, "d2");
  EXPECT_EQ(count("SELECT count(*) FROM decisions WHERE id = 'd1' AND state = 'resolved'"), 1);
}

TEST_P(store_conformance, idempotency_conflicts_are_reported_and_the_rest_commits) {
  base::write_batch first;
  first.new_tasks.push_back(task("a", "queued", 0, "k1"));
  commit_ok(first);

  base::write_batch b;
  b.new_tasks.push_back(task("b", "queued", 0, "k1"));               // 0: key held by a
  b.new_tasks.push_back(task("c", "queued", 0, "k2"));               // 1: fine
  b.new_tasks.push_back(task("d"));                                  // 2: no key, fine
  b.new_tasks.push_back(task("e", "queued", 0, ""));                 // 3: empty keys never clash
  b.new_tasks.push_back(task("f", "queued", 0, "k1", "otherteam"));  // 4: other team, fine
  b.new_tasks.push_back(task("g", "queued", 0, "k3"));               // 5: fine
  b.new_tasks.push_back(task("h", "queued", 0, "k3"));               // 6: clashes with g
  b.new_tasks.push_back(task("a"));                                  // 7: id a exists
  b.journal.push_back(delta("c", 1));
  auto outcome = commit_ok(b);
  ASSERT_EQ(outcome.conflicts.size(), 3u);
  EXPECT_EQ(outcome.conflicts[0].index, 0u);
  EXPECT_EQ(outcome.conflicts[0].existing_id, "a");
  EXPECT_EQ(outcome.conflicts[1].index, 6u);
  EXPECT_EQ(outcome.conflicts[1].existing_id, "g");
  EXPECT_EQ(outcome.conflicts[2].index, 7u);
  EXPECT_EQ(outcome.conflicts[2].existing_id, "a");
  for (const char* id : {"c", "d", "e", "f", "g"}) EXPECT_TRUE(task_of(id).has_value()) << id;
  EXPECT_FALSE(task_of("b").has_value());
  EXPECT_FALSE(task_of("h").has_value());
  EXPECT_EQ(seqs(journal_of("c")), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(task_of("a")->idempotency_key, "k1");
}

TEST_P(store_conformance, a_commit_leaves_a_mark_that_tells_whether_it_landed) {
  // Ids near the top of the range: the stores keep them in a signed 64-bit column.
  const std::uint64_t id = 0xfedcba9876543210ULL;
  base::write_batch b;
  b.audit.push_back({5000, "ops", "submit", "t1", "{}", "ok"});
  b.commit_id = id;
  commit_ok(b);
  EXPECT_TRUE(store_->committed(id).value());
  EXPECT_FALSE(store_->committed(id + 1).value()) << "never committed";
  // A commit without an id leaves no mark and keeps the others.
  base::write_batch unmarked;
  unmarked.audit.push_back({5001, "ops", "submit", "t2", "{}", "ok"});
  commit_ok(unmarked);
  EXPECT_TRUE(store_->committed(id).value());
  // The marks are a ring: a later commit in the same slot takes it over.
  base::write_batch later;
  later.audit.push_back({5002, "ops", "submit", "t3", "{}", "ok"});
  later.commit_id = id + base::commit_mark_slots;
  commit_ok(later);
  EXPECT_TRUE(store_->committed(id + base::commit_mark_slots).value());
  EXPECT_FALSE(store_->committed(id).value());
  EXPECT_EQ(count("SELECT count(*) FROM commit_marks"), 1);
}

TEST_P(store_conformance, snapshot_deletes_the_journal_it_covers) {
  base::write_batch b;
  b.new_tasks.push_back(task("t1", "running"));
  b.new_tasks.push_back(task("t2", "running"));
  for (int s = 1; s <= 5; ++s) b.journal.push_back(delta("t1", s));
  b.journal.push_back(delta("t2", 1));
  commit_ok(b);

  base::write_batch snap;
  snap.snapshots.push_back(task("t1", "running", 3));
  commit_ok(snap);
  EXPECT_EQ(seqs(journal_of("t1")), (std::vector<std::int64_t>{4, 5}));
  EXPECT_EQ(count("SELECT count(*) FROM journal WHERE task_id = 't1'"), 2);
  EXPECT_EQ(seqs(journal_of("t2")), (std::vector<std::int64_t>{1}));  // other tasks untouched
  EXPECT_EQ(task_of("t1")->seq, 3);

  // Deltas and the snapshot covering them in one batch: nothing is left.
  base::write_batch both;
  both.journal = {delta("t1", 6), delta("t1", 7)};
  both.snapshots.push_back(task("t1", "running", 7));
  commit_ok(both);
  EXPECT_TRUE(journal_of("t1").empty());
  EXPECT_EQ(count("SELECT count(*) FROM journal WHERE task_id = 't1'"), 0);

  // A stale snapshot never moves the task back.
  base::write_batch stale;
  stale.snapshots.push_back(task("t1", "queued", 2));
  commit_ok(stale);
  EXPECT_EQ(task_of("t1")->seq, 7);
  EXPECT_EQ(task_of("t1")->state, "running");
}

TEST_P(store_conformance, snapshot_of_an_unknown_task_inserts_it) {
  base::write_batch b;
  auto t = task("new", "running", 4, "k9");
  b.snapshots.push_back(t);
  b.snapshots.push_back(task("twice", "running", 1));
  b.snapshots.push_back(task("twice", "running", 2));  // the last one in a batch wins
  commit_ok(b);
  auto loaded = task_of("new");
  ASSERT_TRUE(loaded);
  expect_same_task(*loaded, t);
  EXPECT_EQ(task_of("twice")->seq, 2);
}

TEST_P(store_conformance, recover_returns_active_tasks_with_their_newer_journal) {
  base::write_batch b;
  const std::vector<std::string> states = {"queued",    "running", "waiting_decision",
                                           "succeeded", "failed",  "cancelled"};
  for (const auto& s : states) {
    b.snapshots.push_back(task("t_" + s, s, 2));
    // seq 1 and 2 are below the snapshot (left behind by an earlier batch).
    for (int q = 1; q <= 4; ++q) b.journal.push_back(delta("t_" + s, q));
  }
  commit_ok(b);
  // The journal rows <= seq were trimmed by the snapshots in the same batch; add
  // a late, covered row as a crash between the two writes could leave it.
  base::write_batch late;
  late.journal.push_back(delta("t_running", 1));
  late.decisions.push_back({"d_pending", "t_waiting_decision", "s", "pending", "{}", 5});
  late.decisions.push_back({"d_done", "t_running", "s", "resolved", "{}", 5});
  late.entities.push_back({"newsroom", "", true, false, 0, "{}", 9});
  commit_ok(late);

  auto rec = recover_ok();
  std::vector<std::string> ids;
  for (const auto& t : rec.active_tasks) ids.push_back(t.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"t_queued", "t_running", "t_waiting_decision"}));
  std::vector<std::pair<std::string, std::int64_t>> journal;
  for (const auto& j : rec.journal) journal.emplace_back(j.task_id, j.seq);
  EXPECT_EQ(journal,
            (std::vector<std::pair<std::string, std::int64_t>>{{"t_queued", 3},
                                                               {"t_queued", 4},
                                                               {"t_running", 3},
                                                               {"t_running", 4},
                                                               {"t_waiting_decision", 3},
                                                               {"t_waiting_decision", 4}}));
  ASSERT_EQ(rec.pending_decisions.size(), 1u);
  EXPECT_EQ(rec.pending_decisions[0].id, "d_pending");
  ASSERT_EQ(rec.entities.size(), 1u);
}

TEST_P(store_conformance, prune_deletes_old_terminal_tasks_and_their_journal) {
  base::write_batch b;
  auto add = [&](const std::string& id, const std::string& state, std::int64_t updated) {
    auto t = task(id, state);
    t.updated_ms = updated;
    b.new_tasks.push_back(t);
    b.journal.push_back(delta(id, 1));
    b.decisions.push_back({"d_" + id, id, "s", "resolved", "{}", 0});
  };
  add("old_ok", "succeeded", 100);
  add("old_failed", "failed", 200);
  add("old_cancelled", "cancelled", 300);
  add("new_ok", "succeeded", 1000);
  add("old_running", "running", 100);
  commit_ok(b);

  auto first = store_->prune_terminal(500, 2);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, 2u);
  auto second = store_->prune_terminal(500, 10);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(*second, 1u);
  EXPECT_EQ(store_->prune_terminal(500, 10).value(), 0u);
  EXPECT_EQ(store_->prune_terminal(5000, 0).value(), 0u);

  for (const char* gone : {"old_ok", "old_failed", "old_cancelled"}) {
    EXPECT_FALSE(task_of(gone).has_value()) << gone;
    EXPECT_TRUE(journal_of(gone).empty()) << gone;
  }
  EXPECT_TRUE(task_of("new_ok").has_value());
  EXPECT_TRUE(task_of("old_running").has_value());
  EXPECT_EQ(count("SELECT count(*) FROM journal"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM decisions"), 2);
}

TEST_P(store_conformance, audit_is_returned_newest_first) {
  for (int batch = 0; batch < 3; ++batch) {
    base::write_batch b;
    for (int i = 0; i < 4; ++i) {
      const int n = batch * 4 + i;
      // Same timestamp on purpose: order comes from insertion, not from ts_ms.
      b.audit.push_back({7000, "ops", "cancel", "t" + std::to_string(n), "{}", "ok"});
    }
    commit_ok(b);
  }
  auto audit = store_->load_audit(5);
  ASSERT_TRUE(audit) << audit.error().message;
  std::vector<std::string> targets;
  for (const auto& a : *audit) targets.push_back(a.target);
  EXPECT_EQ(targets, (std::vector<std::string>{"t11", "t10", "t9", "t8", "t7"}));
  EXPECT_EQ(store_->load_audit(100).value().size(), 12u);
}

TEST_P(store_conformance, entity_state_is_kept_per_team_and_loaded_by_team) {
  base::write_batch b;
  // The same agent in two teams: one row per team, each with its own spend.
  b.entities.push_back({"alpha", "", true, false, 4.0, "{}", 10});
  b.entities.push_back({"alpha", "writer", false, false, 1.25, "{}", 11});
  b.entities.push_back({"beta", "writer", true, false, 0.5, "{}", 12});
  b.entities.push_back({"beta", "", false, true, 0, R"({"reason":"restart intensity"})", 13});
  commit_ok(b);
  auto alpha = store_->load_entities("alpha");
  ASSERT_TRUE(alpha) << alpha.error().message;
  ASSERT_EQ(alpha->size(), 2u);
  EXPECT_EQ((*alpha)[0].agent, "");
  EXPECT_TRUE((*alpha)[0].paused);
  EXPECT_DOUBLE_EQ((*alpha)[0].spent_usd, 4.0);
  EXPECT_EQ((*alpha)[1].agent, "writer");
  EXPECT_DOUBLE_EQ((*alpha)[1].spent_usd, 1.25);
  auto beta = store_->load_entities("beta");
  ASSERT_TRUE(beta) << beta.error().message;
  ASSERT_EQ(beta->size(), 2u);
  EXPECT_TRUE((*beta)[0].failed);
  EXPECT_EQ((*beta)[0].detail, R"({"reason":"restart intensity"})");
  EXPECT_TRUE((*beta)[1].paused);
  EXPECT_DOUBLE_EQ((*beta)[1].spent_usd, 0.5);
  EXPECT_TRUE(store_->load_entities("gamma").value().empty());
  // Entity rows are state, not history: pruning terminal tasks keeps them.
  EXPECT_EQ(store_->prune_terminal(1 << 30, 100).value(), 0u);
  EXPECT_EQ(recover_ok().entities.size(), 4u);
}

TEST_P(store_conformance, migrate_upgrades_a_version_1_database_and_keeps_its_rows) {
  // A fresh database, built as a build of schema version 1 left it.
  store_.reset();
  if (GetParam() == "sqlite") {
    backend_ = test::make_sqlite_backend();
  } else {
    std::string why_not;
    backend_ = test::make_pg_backend(why_not);
    ASSERT_NE(backend_, nullptr) << why_not;
  }
  const detail::migration& v1 = detail::migrations()[0];
  ASSERT_EQ(v1.version, 1);
  backend_->exec("CREATE TABLE schema_version (version INTEGER NOT NULL)");
  backend_->exec(GetParam() == "sqlite" ? v1.sqlite_sql : v1.postgres_sql);
  backend_->exec("INSERT INTO schema_version (version) VALUES (1)");
  backend_->exec(
      "INSERT INTO tasks (id, team, agent, priority, state, snapshot, seq, created_ms, "
      "updated_ms) VALUES ('old', 'newsroom', '', 5, 'running', '{}', 0, 1, 1), "
      "('done', 'newsroom', '', 5, 'succeeded', '{}', 0, 1, 1)");
  backend_->exec("INSERT INTO audit (ts_ms, principal, action, target, detail) "
                 "VALUES (1, 'ops', 'cancel', 'old', '{}')");
  backend_->exec("INSERT INTO costs (id, task_id, step_id, agent, team, provider, model, outcome, "
                 "tokens_in, tokens_out, latency_ms, ts_ms, usd) "
                 "VALUES (7, 'old', 's', 'writer', 'newsroom', 'p', 'm', 'ok', 1, 2, 3, 4, 0.5)");
  backend_->exec("INSERT INTO entities (kind, name, state) VALUES ('team', 'newsroom', "
                 "'{\"v\":1}'), ('agent', 'writer', '{\"v\":2}')");
  store_ = open();
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(store_->schema_version().value(), 1);
  auto migrated = store_->migrate();
  ASSERT_TRUE(migrated) << migrated.error().message;
  EXPECT_EQ(*migrated, base::store_schema_version);
  EXPECT_EQ(store_->schema_version().value(), base::store_schema_version);
  // v3: the pruning index replaced tasks_state.
  const std::string indexes = GetParam() == "sqlite"
                                  ? "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = "
                                  : "SELECT count(*) FROM pg_indexes WHERE indexname = ";
  EXPECT_EQ(count(indexes + "'tasks_terminal'"), 1);
  EXPECT_EQ(count(indexes + "'tasks_state'"), 0);

  auto rec = recover_ok();
  ASSERT_EQ(rec.active_tasks.size(), 1u);
  EXPECT_EQ(rec.active_tasks[0].id, "old");
  ASSERT_EQ(rec.entities.size(), 2u);
  EXPECT_EQ(rec.entities[0].team, "");  // a v1 agent row had no team
  EXPECT_EQ(rec.entities[0].agent, "writer");
  EXPECT_EQ(rec.entities[0].detail, R"({"v":2})");
  EXPECT_EQ(rec.entities[1].team, "newsroom");
  EXPECT_EQ(rec.entities[1].agent, "");
  EXPECT_EQ(rec.entities[1].detail, R"({"v":1})");
  auto audit = store_->load_audit(10).value();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0].outcome, "");  // unknown for entries written before v2
  EXPECT_EQ(audit[0].target, "old");

  // The upgraded database takes v2 rows.
  base::write_batch b;
  b.entities.push_back({"newsroom", "", true, false, 2.5, "{}", 3});
  b.audit.push_back({2, "ops", "pause", "newsroom", "{}", "ok"});
  b.costs.push_back({"old", "s", "writer", "newsroom", "p", "m", "ok", 5, 6, 7, 8, 0.25});
  commit_ok(b);
  // v5 (SQLite: costs and audit copied into tables without AUTOINCREMENT): the old
  // rows keep their ids and new ones follow them.
  EXPECT_EQ(count("SELECT count(*) FROM costs WHERE id = 7 AND task_id = 'old' AND usd = 0.5"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM costs"), 2);
  // (PostgreSQL's BIGSERIAL does not see an explicit id: its next id stays 1 there.)
  if (GetParam() == "sqlite") {
    EXPECT_EQ(count("SELECT max(id) FROM costs"), 8);
  }
  EXPECT_EQ(count("SELECT max(id) FROM audit"), 2);
  EXPECT_EQ(count(indexes + "'costs_task'"), 1);
  EXPECT_TRUE(store_->load_entities("newsroom").value().at(0).paused);
  EXPECT_EQ(store_->load_audit(1).value().at(0).outcome, "ok");
  EXPECT_EQ(count("SELECT count(*) FROM schema_version"), 1);
  EXPECT_EQ(store_->prune_terminal(1000, 10).value(), 1u);  // 'done', through the new index
  EXPECT_FALSE(task_of("done").has_value());
  EXPECT_TRUE(task_of("old").has_value());
}

INSTANTIATE_TEST_SUITE_P(backends, store_conformance, testing::Values("sqlite", "postgres"),
                         [](const testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace troupe::persistence::conformance
