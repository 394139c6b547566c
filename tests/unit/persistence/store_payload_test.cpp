// The snapshot_store conformance suite, part 2: payloads and storage growth
// (instantiated for both stores in store_conformance_test.cpp).
#include <algorithm>
#include <cstdio>

#include "store_conformance.hpp"

namespace troupe::persistence::conformance {
namespace {

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
  b.audit.push_back({1, "\xc3\xa9quipe", "submit", t.id, big, "ok"});
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
    std::printf("[ storage ] %s: per-delta growth %d..%d: %.0f (bytes %lld)\n", GetParam().c_str(),
                samples[i - 1].first, samples[i].first, rate,
                static_cast<long long>(samples[i].second));
    // Slack of 8 pages per window absorbs page-granular growth.
    EXPECT_LE(rate, 3.0 * early_rate + 8.0 * 8192 / 100)
        << "storage growth per delta accelerates between deltas " << samples[i - 1].first << " and "
        << samples[i].first;
  }
  // And nothing like the whole history is kept: a journal that is never
  // trimmed alone would hold 32 * 500 * 220 = 3.5 MB.
  EXPECT_LE(double(samples.back().second), 4.0 * live_end + 1.0e6)
      << "storage at delta 500 is far above the live data";
}

// Every row kind in one batch, including a snapshot of a task created by the
// same batch and journal rows that the batch's own snapshots cover: the result
// is what the kinds applied one after the other (the documented order) give.
TEST_P(store_conformance, one_batch_of_every_kind_applies_in_the_documented_order) {
  base::write_batch seed;
  seed.new_tasks.push_back(task("old", "running"));
  for (int s = 1; s <= 3; ++s) seed.journal.push_back(delta("old", s));
  commit_ok(seed);

  base::write_batch b;
  b.new_tasks.push_back(task("fresh", "queued", 0, "k-fresh"));
  b.new_tasks.push_back(task("other", "queued"));
  for (int s = 1; s <= 4; ++s) b.journal.push_back(delta("fresh", s));
  for (int s = 4; s <= 6; ++s) b.journal.push_back(delta("old", s));
  b.snapshots.push_back(task("fresh", "running", 3, "k-fresh"));  // new in this very batch
  b.snapshots.push_back(task("old", "running", 5));
  b.costs.push_back({"fresh", "s1", "writer", "newsroom", "scripted", "m", "ok", 1, 2, 3, 4, 0.5});
  b.audit.push_back({10, "ops", "submit", "fresh", "{}", "ok"});
  b.audit.push_back({10, "ops", "submit", "other", "{}", "ok"});
  b.entities.push_back({"newsroom", "", false, false, 0.5, "{}", 10});
  b.decisions.push_back({"d1", "old", "s2", "pending", "{}", 99});
  auto out = commit_ok(b);
  EXPECT_TRUE(out.conflicts.empty());

  EXPECT_EQ(task_of("fresh")->seq, 3);
  EXPECT_EQ(task_of("fresh")->state, "running");
  EXPECT_EQ(seqs(journal_of("fresh")), (std::vector<std::int64_t>{4}));
  EXPECT_EQ(count("SELECT count(*) FROM journal WHERE task_id = 'fresh'"), 1);
  EXPECT_EQ(task_of("old")->seq, 5);
  EXPECT_EQ(count("SELECT count(*) FROM journal WHERE task_id = 'old'"), 1);  // seq 6 only
  EXPECT_EQ(seqs(journal_of("old")), (std::vector<std::int64_t>{6}));
  EXPECT_EQ(task_of("other")->seq, 0);
  EXPECT_EQ(count("SELECT count(*) FROM costs"), 1);
  std::vector<std::string> targets;
  const auto audit = store_->load_audit(10).value();
  for (const auto& a : audit) targets.push_back(a.target);
  EXPECT_EQ(targets, (std::vector<std::string>{"other", "fresh"}));
  auto rec = recover_ok();
  EXPECT_EQ(rec.entities.size(), 1u);
  EXPECT_EQ(rec.pending_decisions.size(), 1u);

  // The same batch again (a re-send after an in-doubt commit) changes nothing
  // and reports both new tasks as conflicts holding their own ids.
  auto again = commit_ok(b);
  ASSERT_EQ(again.conflicts.size(), 2u);
  EXPECT_EQ(again.conflicts[0].existing_id, "fresh");
  EXPECT_EQ(again.conflicts[1].existing_id, "other");
  EXPECT_EQ(count("SELECT count(*) FROM journal"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM costs"), 2);  // costs and audit are ledgers: appended
}

// Entity rows are state, not history: pruning terminal tasks never removes them.
TEST_P(store_conformance, prune_keeps_entity_rows) {
  base::write_batch b;
  auto done = task("done", "succeeded");
  done.updated_ms = 100;
  b.new_tasks.push_back(done);
  b.entities.push_back({"newsroom", "", true, false, 2.5, "{}", 100});
  b.entities.push_back({"newsroom", "writer", false, true, 1.0, "{}", 100});
  commit_ok(b);
  EXPECT_EQ(store_->prune_terminal(5000, 10).value(), 1u);
  EXPECT_FALSE(task_of("done").has_value());
  auto rows = store_->load_entities("newsroom");
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_TRUE((*rows)[0].paused);
  EXPECT_DOUBLE_EQ((*rows)[0].spent_usd, 2.5);
  EXPECT_TRUE((*rows)[1].failed);
}

}  // namespace
}  // namespace troupe::persistence::conformance
