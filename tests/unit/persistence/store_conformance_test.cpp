// The snapshot_store conformance suite: every test runs against SQLite (a temp
// file, always) and PostgreSQL (a fresh database per test; skipped locally and
// failed in CI when no server is available).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "store_test_backend.hpp"
#include "support/pg/pg_test_env.hpp"
#include "troupe/base/store_port.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence {
namespace {

using base::errc;

base::task_row task(std::string id, std::string state = "queued", std::int64_t seq = 0,
                    std::string key = "", std::string team = "newsroom") {
  base::task_row t;
  t.id = std::move(id);
  t.team = std::move(team);
  t.agent = "";
  t.priority = 7;
  t.state = std::move(state);
  t.idempotency_key = std::move(key);
  t.snapshot = R"({"id":")" + t.id + R"(","seq":)" + std::to_string(seq) + "}";
  t.seq = seq;
  t.created_ms = 1000;
  t.updated_ms = 1000 + seq;
  return t;
}

base::journal_row delta(std::string task_id, std::int64_t seq, std::string payload = "") {
  if (payload.empty()) payload = R"({"step":)" + std::to_string(seq) + "}";
  return {std::move(task_id), seq, "step_finished", std::move(payload), 2000 + seq};
}

std::vector<std::int64_t> seqs(const std::vector<base::journal_row>& rows) {
  std::vector<std::int64_t> out;
  for (const auto& r : rows) out.push_back(r.seq);
  return out;
}

void expect_same_task(const base::task_row& a, const base::task_row& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.team, b.team);
  EXPECT_EQ(a.agent, b.agent);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.snapshot.size(), b.snapshot.size());
  EXPECT_TRUE(a.snapshot == b.snapshot) << "snapshot of " << a.id << " differs";
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.created_ms, b.created_ms);
  EXPECT_EQ(a.updated_ms, b.updated_ms);
}

class store_conformance : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      backend_ = test::make_sqlite_backend();
    } else {
      std::string why_not;
      backend_ = test::make_pg_backend(why_not);
      if (!backend_) {
        if (test::pg_required()) FAIL() << "PostgreSQL required (CI=true) but unavailable: " << why_not;
        GTEST_SKIP() << "PostgreSQL unavailable, skipping: " << why_not
                     << " (run through ctest so the `postgres` fixture starts a server, or set "
                        "PGHOST/PGPORT/PGUSER)";
      }
    }
    store_ = open();
    ASSERT_NE(store_, nullptr);
    auto before = store_->schema_version();
    ASSERT_TRUE(before) << before.error().message;
    version_before_migrate_ = *before;
    auto migrated = store_->migrate();
    ASSERT_TRUE(migrated) << migrated.error().message;
  }

  void TearDown() override {
    store_.reset();
    backend_.reset();
  }

  std::unique_ptr<base::snapshot_store> open() {
    auto s = open_store(backend_->url());
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  }

  base::commit_outcome commit_ok(const base::write_batch& batch) {
    auto r = store_->commit(batch);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : base::commit_outcome{};
  }

  base::recovered_state recover_ok() {
    auto r = store_->recover();
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : base::recovered_state{};
  }

  std::vector<base::journal_row> journal_of(const std::string& id, std::int64_t after = 0) {
    auto r = store_->load_journal(id, after);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::vector<base::journal_row>{};
  }

  std::optional<base::task_row> task_of(const std::string& id) {
    auto r = store_->load_task(id);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : std::nullopt;
  }

  long count(const std::string& sql) { return std::stol(backend_->scalar(sql)); }

  std::unique_ptr<test::store_backend> backend_;
  std::unique_ptr<base::snapshot_store> store_;
  int version_before_migrate_ = -1;
};

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
  EXPECT_NE(r.error().message.find(
                "database schema version 99 is newer than this build understands (1); "
                "upgrade troupe"),
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
  b.audit.push_back({5000, "ops", "submit", "t1", R"({"team":"newsroom"})"});
  b.entities.push_back({"agent", "researcher", R"({"paused":true})"});
  b.entities.push_back({"team", "newsroom", R"({"spent_usd":1.5})"});
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
  EXPECT_EQ(rec.entities[0].kind, "agent");
  EXPECT_EQ(rec.entities[0].state, R"({"paused":true})");
  EXPECT_EQ(rec.entities[1].name, "newsroom");

  auto audit = store_->load_audit(10);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].principal, "ops");
  EXPECT_EQ((*audit)[0].detail, R"({"team":"newsroom"})");

  EXPECT_EQ(count("SELECT count(*) FROM costs WHERE task_id = 't1' AND tokens_in = 120 AND "
                  "tokens_out = 45 AND latency_ms = 33 AND model = 'haiku'"),
            1);
  EXPECT_DOUBLE_EQ(std::stod(backend_->scalar("SELECT usd FROM costs")), 0.000123456789);
}

TEST_P(store_conformance, entities_and_decisions_are_upserted) {
  base::write_batch b;
  b.entities.push_back({"agent", "a", R"({"v":1})"});
  b.decisions.push_back({"d1", "t1", "s", "pending", "{}", 0});
  b.decisions.push_back({"d2", "t1", "s", "pending", "{}", 0});
  commit_ok(b);
  base::write_batch b2;
  b2.entities.push_back({"agent", "a", R"({"v":2})"});
  b2.entities.push_back({"agent", "a", R"({"v":3})"});  // the last one in a batch wins
  b2.decisions.push_back({"d1", "t1", "s", "resolved", R"({"by":"ops"})", 0});
  commit_ok(b2);
  auto rec = recover_ok();
  ASSERT_EQ(rec.entities.size(), 1u);
  EXPECT_EQ(rec.entities[0].state, R"({"v":3})");
  ASSERT_EQ(rec.pending_decisions.size(), 1u);
  EXPECT_EQ(rec.pending_decisions[0].id, "d2");
  EXPECT_EQ(count("SELECT count(*) FROM decisions WHERE id = 'd1' AND state = 'resolved'"), 1);
}

TEST_P(store_conformance, idempotency_conflicts_are_reported_and_the_rest_commits) {
  base::write_batch first;
  first.new_tasks.push_back(task("a", "queued", 0, "k1"));
  commit_ok(first);

  base::write_batch b;
  b.new_tasks.push_back(task("b", "queued", 0, "k1"));              // 0: key held by a
  b.new_tasks.push_back(task("c", "queued", 0, "k2"));              // 1: fine
  b.new_tasks.push_back(task("d"));                                 // 2: no key, fine
  b.new_tasks.push_back(task("e", "queued", 0, ""));                // 3: empty keys never clash
  b.new_tasks.push_back(task("f", "queued", 0, "k1", "otherteam"));  // 4: other team, fine
  b.new_tasks.push_back(task("g", "queued", 0, "k3"));              // 5: fine
  b.new_tasks.push_back(task("h", "queued", 0, "k3"));              // 6: clashes with g
  b.new_tasks.push_back(task("a"));                                 // 7: id a exists
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
  const std::vector<std::string> states = {"queued", "running", "waiting_decision",
                                           "succeeded", "failed", "cancelled"};
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
  late.entities.push_back({"team", "newsroom", "{}"});
  commit_ok(late);

  auto rec = recover_ok();
  std::vector<std::string> ids;
  for (const auto& t : rec.active_tasks) ids.push_back(t.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"t_queued", "t_running", "t_waiting_decision"}));
  std::vector<std::pair<std::string, std::int64_t>> journal;
  for (const auto& j : rec.journal) journal.emplace_back(j.task_id, j.seq);
  EXPECT_EQ(journal, (std::vector<std::pair<std::string, std::int64_t>>{{"t_queued", 3},
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
      b.audit.push_back({7000, "ops", "cancel", "t" + std::to_string(n), "{}"});
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

TEST_P(store_conformance, unicode_and_large_payloads_round_trip) {
  // 1 MiB of JSON full of characters that need care in SQL and array literals.
  const std::string piece = R"({"text":"h\u00e9llo \"quoted\" \\ back, {braces} [x] 'single'",)"
                            "\"raw\":\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89\"},";
  std::string big = "[";
  while (big.size() < (1u << 20)) big += piece;
  big += "null]";
  auto t = task("t-\xe4\xb8\x96,{\"x\"}", "running", 1, "k\xc3\xa9y \"1\"");
  t.snapshot = big;
  t.agent = "agent\\with\\backslashes";
  base::write_batch b;
  b.new_tasks.push_back(t);
  b.journal.push_back(delta(t.id, 2, "\"\xf0\x9f\x8e\x89 \\\" , } {\""));
  b.audit.push_back({1, "\xc3\xa9quipe", "submit", t.id, big});
  commit_ok(b);

  auto loaded = task_of(t.id);
  ASSERT_TRUE(loaded);
  expect_same_task(*loaded, t);
  auto rec = recover_ok();
  ASSERT_EQ(rec.active_tasks.size(), 1u);
  expect_same_task(rec.active_tasks[0], t);
  ASSERT_EQ(rec.journal.size(), 1u);
  EXPECT_EQ(rec.journal[0].payload, "\"\xf0\x9f\x8e\x89 \\\" , } {\"");
  EXPECT_TRUE(store_->load_audit(1).value().at(0).detail == big);

  // The same again through the snapshot (upsert) path.
  t.seq = 2;
  t.snapshot = big + " ";
  base::write_batch s;
  s.snapshots.push_back(t);
  commit_ok(s);
  EXPECT_TRUE(task_of(t.id)->snapshot == t.snapshot);
  EXPECT_TRUE(journal_of(t.id).empty());
}

TEST_P(store_conformance, empty_batch_ping_and_describe) {
  EXPECT_TRUE(commit_ok(base::write_batch{}).conflicts.empty());
  EXPECT_TRUE(store_->ping().value());
  const std::string d = store_->describe();
  EXPECT_EQ(d.rfind(GetParam() == "sqlite" ? "sqlite:" : "postgresql://", 0), 0u) << d;
}

// DESIGN §3: journal small deltas, snapshot every N, so storage grows linearly
// with the work. 32 tasks each get one delta per step and a snapshot (whose
// size grows with the work done) every 16 deltas; the bytes added per delta
// late in the run must stay within a small factor of those added early on.
TEST_P(store_conformance, storage_grows_linearly_with_the_work) {
  constexpr int tasks = 32;
  constexpr int snapshot_every = 16;
  constexpr int last_delta = 500;
  // Incompressible filler, so compression (PostgreSQL TOAST) does not hide growth.
  std::uint64_t lcg = 42;
  auto filler = [&](std::size_t n) {
    std::string s;
    s.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
      s += "0123456789abcdef"[(lcg >> 33) & 15];
    }
    return s;
  };
  {
    base::write_batch b;
    for (int t = 0; t < tasks; ++t) b.new_tasks.push_back(task("t" + std::to_string(t), "running"));
    commit_ok(b);
  }
  std::vector<std::pair<int, std::int64_t>> samples;
  const std::vector<int> checkpoints = {10, 100, 200, 300, 400, 500};
  for (int d = 1; d <= last_delta; ++d) {
    base::write_batch b;
    for (int t = 0; t < tasks; ++t) {
      const std::string id = "t" + std::to_string(t);
      b.journal.push_back(delta(id, d, R"({"out":")" + filler(200) + "\"}"));
      if (d % snapshot_every == 0) {
        auto s = task(id, "running", d);
        s.snapshot = R"({"results":")" + filler(512 + 16 * static_cast<std::size_t>(d)) + "\"}";
        b.snapshots.push_back(s);
      }
    }
    ASSERT_TRUE(store_->commit(b)) << "delta " << d;
    if (d % snapshot_every == 0) backend_->maintain();
    if (std::find(checkpoints.begin(), checkpoints.end(), d) != checkpoints.end()) {
      backend_->maintain();
      samples.emplace_back(d, backend_->storage_bytes());
    }
  }
  ASSERT_EQ(samples.size(), checkpoints.size());
  // Live data at the end: 32 snapshots of ~8.5 KB plus at most 16 deltas each.
  const double live_end = tasks * ((512 + 16 * last_delta) + snapshot_every * 220.0);
  const double early_rate = double(samples[1].second - samples[0].second) / (100 - 10);
  std::printf("[ storage ] %s: bytes at delta 10: %lld, per-delta growth 10..100: %.0f\n",
              GetParam().c_str(), static_cast<long long>(samples[0].second), early_rate);
  for (std::size_t i = 2; i < samples.size(); ++i) {
    const double rate = double(samples[i].second - samples[i - 1].second) /
                        (samples[i].first - samples[i - 1].first);
    std::printf("[ storage ] %s: per-delta growth %d..%d: %.0f (bytes %lld)\n",
                GetParam().c_str(), samples[i - 1].first, samples[i].first, rate,
                static_cast<long long>(samples[i].second));
    // Slack of 8 pages per window absorbs page-granular growth.
    EXPECT_LE(rate, 3.0 * early_rate + 8.0 * 8192 / 100)
        << "storage growth per delta accelerates between deltas " << samples[i - 1].first
        << " and " << samples[i].first;
  }
  // And nothing like the whole history is kept: a journal that is never
  // trimmed alone would hold 32 * 500 * 220 = 3.5 MB.
  EXPECT_LE(double(samples.back().second), 4.0 * live_end + 1.0e6)
      << "storage at delta 500 is far above the live data";
}

INSTANTIATE_TEST_SUITE_P(backends, store_conformance, testing::Values("sqlite", "postgres"),
                         [](const testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace troupe::persistence
