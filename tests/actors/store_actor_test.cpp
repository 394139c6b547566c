// The store actor against a real SQLite file: group commit answers and retention pruning.
#include <filesystem>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <unistd.h>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/base/clock.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::actors {
namespace {

struct store_fixture : ::testing::Test {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("troupe-store-actor-" + std::to_string(::getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::shared_ptr<base::snapshot_store> store;
  void SetUp() override {
    std::filesystem::create_directories(dir);
    auto opened = persistence::open_store("sqlite:" + (dir / "s.db").string());
    ASSERT_TRUE(opened) << opened.error().message;
    store = std::shared_ptr<base::snapshot_store>(std::move(*opened));
    ASSERT_TRUE(store->migrate());
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
};

/// An actor system of two worker threads with a store actor on `store`.
struct running_store {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg.set("scheduler.max-threads", 2)};
  std::shared_ptr<store_stats> stats = std::make_shared<store_stats>();
  caf::actor actor;
  running_store(std::shared_ptr<base::snapshot_store> store, store_options opts)
      : actor(spawn_store(sys, std::move(store), stats, std::move(opts))) {}
};

base::task_row row(std::string id, std::string state, std::int64_t updated) {
  base::task_row r;
  r.id = std::move(id);
  r.team = "t";
  r.state = std::move(state);
  r.snapshot = "{}";
  r.created_ms = r.updated_ms = updated;
  return r;
}

TEST_F(store_fixture, many_concurrent_writes_are_all_answered_and_committed) {
  running_store run{store, store_options{}};
  auto& sys = run.sys;
  auto& stats = run.stats;
  auto& actor = run.actor;
  {
    caf::scoped_actor self{sys};
    for (int i = 0; i < 300; ++i) {
      auto b = std::make_shared<base::write_batch>();
      b->new_tasks.push_back(row("t" + std::to_string(i), "queued", 1));
      self->send(actor, write_atom::value, b);
    }
    int ok = 0;
    for (int i = 0; i < 300; ++i)
      self->receive([&](commit_reply& r) { ok += r.ok ? 1 : 0; },
                    caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no commit reply"; });
    EXPECT_EQ(ok, 300);
    self->send_exit(actor, caf::exit_reason::user_shutdown);
  }
  EXPECT_LT(stats->commits.load(), 300u);  // group commit: fewer transactions than writes
  EXPECT_EQ(stats->rows.load(), 300u);
  auto loaded = store->load_task("t299");
  ASSERT_TRUE(loaded && *loaded);
}

TEST_F(store_fixture, overlapped_commits_answer_every_write_and_keep_upserts_in_order) {
  // Three more connections to the same file: the overlapped mode PostgreSQL
  // uses, here on SQLite (which serialises the writers with its lock).
  store_options opts;
  for (int i = 0; i < 3; ++i) {
    auto more = persistence::open_store("sqlite:" + (dir / "s.db").string());
    ASSERT_TRUE(more) << more.error().message;
    opts.extra_writers.push_back(std::shared_ptr<base::snapshot_store>(std::move(*more)));
  }
  running_store run{store, opts};
  auto& sys = run.sys;
  auto& stats = run.stats;
  auto& actor = run.actor;
  constexpr int n = 400;
  {
    caf::scoped_actor self{sys};
    for (int i = 0; i < n; ++i) {
      auto b = std::make_shared<base::write_batch>();
      b->new_tasks.push_back(row("t" + std::to_string(i), "queued", 1));
      // Every 10th piece flips the team's paused flag: the last one must win.
      if (i % 10 == 0) b->entities.push_back({"t", "", (i / 10) % 2 == 0, false, double(i), "{}", i});
      b->audit.push_back({i, "ops", "submit", "t" + std::to_string(i), "{}", "ok"});
      self->send(actor, write_atom::value, b);
    }
    int ok = 0;
    for (int i = 0; i < n; ++i)
      self->receive([&](commit_reply& r) { ok += r.ok ? 1 : 0; },
                    caf::after(std::chrono::seconds(20)) >> [] { ADD_FAILURE() << "no commit reply"; });
    EXPECT_EQ(ok, n);
    // Read your writes through the store actor: every audit row is there.
    std::promise<base::result<nlohmann::json>> p;
    self->send(actor, audit_atom::value, std::size_t{1000},
               reply_fn([&p](base::result<nlohmann::json> r) { p.set_value(std::move(r)); }));
    auto audit = p.get_future().get();
    ASSERT_TRUE(audit) << audit.error().message;
    EXPECT_EQ((*audit)["entries"].size(), std::size_t{n});
    self->request(actor, std::chrono::seconds(10), entities_atom::value, std::string("t"))
        .receive(
            [&](entities_reply& r) {
              ASSERT_TRUE(r.ok) << r.error.message;
              ASSERT_EQ(r.rows.size(), 1u);
              EXPECT_DOUBLE_EQ(r.rows[0].spent_usd, 390.0);  // piece 390 was the last to touch it
              EXPECT_FALSE(r.rows[0].paused);                  // piece 390 set paused = false
            },
            [&](caf::error& e) { ADD_FAILURE() << sys.render(e); });
    self->send_exit(actor, caf::exit_reason::user_shutdown);
  }
  // Entity rows merged into one commit are compacted to the last of each key.
  EXPECT_GE(stats->rows.load(), std::size_t{2 * n + 1});
  EXPECT_LE(stats->rows.load(), std::size_t{2 * n + n / 10});
  for (int i = 0; i < n; ++i) ASSERT_TRUE(store->load_task("t" + std::to_string(i)).value()) << i;
}

TEST_F(store_fixture, writes_right_after_a_commit_join_one_commit_and_a_lone_write_does_not_wait) {
  store_options opts;
  opts.linger_us = 2'000'000;  // far longer than the burst below takes to send, even under load
  running_store run{store, opts};
  constexpr int n = 20;
  {
    caf::scoped_actor self{run.sys};
    auto first = std::make_shared<base::write_batch>();
    first->new_tasks.push_back(row("first", "queued", 1));
    self->send(run.actor, write_atom::value, first);
    // The store was idle: the write commits at once, not after the window.
    self->receive([&](commit_reply& r) { EXPECT_TRUE(r.ok); },
                  caf::after(std::chrono::milliseconds(1000)) >> [] { ADD_FAILURE() << "a lone write waited"; });
    EXPECT_EQ(run.stats->commits.load(), 1u);
    // Right after that commit, a burst waits for the window and commits as one.
    for (int i = 0; i < n; ++i) {
      auto b = std::make_shared<base::write_batch>();
      b->new_tasks.push_back(row("b" + std::to_string(i), "queued", 1));
      b->entities.push_back({"t", "", i % 2 == 0, false, double(i), "{}", i});
      self->send(run.actor, write_atom::value, b);
    }
    int ok = 0;
    for (int i = 0; i < n; ++i)
      self->receive([&](commit_reply& r) { ok += r.ok ? 1 : 0; },
                    caf::after(std::chrono::seconds(20)) >> [] { ADD_FAILURE() << "no commit reply"; });
    EXPECT_EQ(ok, n);
    self->send_exit(run.actor, caf::exit_reason::user_shutdown);
  }
  EXPECT_EQ(run.stats->commits.load(), 2u);
  EXPECT_EQ(run.stats->rows.load(), std::size_t{1 + n + 1});  // the 20 entity rows of one key compact to the last
  auto rows = store->load_entities("t");
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_DOUBLE_EQ((*rows)[0].spent_usd, 19.0);
  EXPECT_FALSE((*rows)[0].paused);
}

/// A store whose next commits fail with their outcome unknown (a connection lost
/// during COMMIT), having written the batch or not, and whose lookups of a commit
/// can fail too. Everything else goes to the real store underneath.
class doubting_store final : public base::snapshot_store {
 public:
  explicit doubting_store(std::shared_ptr<base::snapshot_store> inner) : inner_(std::move(inner)) {}
  std::atomic<int> doubtful_commits{0};  ///< this many commits fail in doubt
  std::atomic<bool> lands{true};         ///< ... after writing the batch
  std::atomic<int> blind_lookups{0};     ///< this many lookups fail (the database is away)
  std::atomic<int> lookups{0};
  std::atomic<int> commits{0};

  base::result<base::commit_outcome> commit(const base::write_batch& b) override {
    ++commits;
    if (doubtful_commits.load() > 0) {
      --doubtful_commits;
      if (lands) {
        EXPECT_TRUE(inner_->commit(b));
      }
      auto e = base::make_error(base::errc::unavailable, "connection lost during COMMIT, outcome unknown", true);
      e.in_doubt = true;
      return base::fail(std::move(e));
    }
    return inner_->commit(b);
  }
  base::result<bool> committed(std::uint64_t id) override {
    ++lookups;
    if (blind_lookups.load() > 0) {
      --blind_lookups;
      return base::fail(base::errc::unavailable, "database unreachable");
    }
    return inner_->committed(id);
  }
  base::result<int> migrate() override { return inner_->migrate(); }
  base::result<int> schema_version() override { return inner_->schema_version(); }
  base::result<base::recovered_state> recover() override { return inner_->recover(); }
  base::result<std::optional<base::task_row>> load_task(const std::string& id) override {
    return inner_->load_task(id);
  }
  base::result<std::vector<base::journal_row>> load_journal(const std::string& id, std::int64_t after) override {
    return inner_->load_journal(id, after);
  }
  base::result<std::size_t> prune_terminal(std::int64_t before, std::size_t limit) override {
    return inner_->prune_terminal(before, limit);
  }
  base::result<std::vector<base::entity_row>> load_entities(const std::string& team) override {
    return inner_->load_entities(team);
  }
  base::result<std::vector<base::audit_row>> load_audit(std::size_t limit) override {
    return inner_->load_audit(limit);
  }
  base::result<bool> ping() override { return inner_->ping(); }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::shared_ptr<base::snapshot_store> inner_;
};

store_options quick_retries() {
  store_options opts;
  opts.retry_ms = 5;
  opts.retry_max_ms = 20;
  return opts;
}

std::shared_ptr<doubting_store> doubting(std::shared_ptr<base::snapshot_store> inner, int doubtful_commits,
                                         bool lands, int blind_lookups = 0) {
  auto d = std::make_shared<doubting_store>(std::move(inner));
  d->doubtful_commits = doubtful_commits;
  d->lands = lands;
  d->blind_lookups = blind_lookups;
  return d;
}

/// Runs a store actor on `s` for one piece with an audit row, a cost row and a
/// journal row (no new task, so the piece waits out an outage); returns whether it
/// was answered as committed. The actor system is gone when this returns.
bool commit_one_accounted_piece(std::shared_ptr<base::snapshot_store> s) {
  running_store run{std::move(s), quick_retries()};
  caf::scoped_actor self{run.sys};
  auto b = std::make_shared<base::write_batch>();
  b->audit.push_back({1, "ops", "cancel", "t1", "{}", "ok"});
  b->costs.push_back({"t1", "s1", "a", "t", "p", "m", "ok", 10, 5, 50, 1, 0.01});
  b->journal.push_back({"t1", 1, "patch", "{}", 1});
  bool ok = false;
  self->send(run.actor, write_atom::value, b);
  self->receive([&](commit_reply& r) { ok = r.ok; },
                caf::after(std::chrono::seconds(20)) >> [] { ADD_FAILURE() << "no commit reply"; });
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
  return ok;
}

void expect_written_once(base::snapshot_store& s) {
  EXPECT_EQ(s.load_audit(10).value().size(), 1u);
  EXPECT_EQ(s.load_journal("t1", 0).value().size(), 1u);
}

TEST_F(store_fixture, a_commit_in_doubt_that_landed_is_answered_and_not_written_again) {
  auto d = doubting(store, 1, true);
  EXPECT_TRUE(commit_one_accounted_piece(d));
  EXPECT_EQ(d->lookups.load(), 1);
  EXPECT_EQ(d->commits.load(), 1) << "a batch known to have landed is not sent again";
  expect_written_once(*store);
}

TEST_F(store_fixture, a_commit_in_doubt_that_did_not_land_is_written_once_on_retry) {
  auto d = doubting(store, 1, false);
  EXPECT_TRUE(commit_one_accounted_piece(d));
  EXPECT_EQ(d->lookups.load(), 1);
  EXPECT_EQ(d->commits.load(), 2);
  expect_written_once(*store);
}

TEST_F(store_fixture, a_commit_in_doubt_is_looked_up_again_until_the_store_can_tell) {
  auto d = doubting(store, 1, true, 3);
  EXPECT_TRUE(commit_one_accounted_piece(d));
  EXPECT_EQ(d->lookups.load(), 4);
  EXPECT_EQ(d->commits.load(), 1) << "nothing is committed while a doubt is open";
  expect_written_once(*store);
}

TEST_F(store_fixture, overlapped_commits_in_doubt_are_looked_up_before_anything_is_retried) {
  // The overlapped mode PostgreSQL uses: a committer on its own connection whose
  // first commit of each round fails in doubt, having landed in round one and not
  // in round two. Every piece is answered and every audit row is there once.
  auto more = persistence::open_store("sqlite:" + (dir / "s.db").string());
  ASSERT_TRUE(more) << more.error().message;
  auto writer = std::make_shared<doubting_store>(std::shared_ptr<base::snapshot_store>(std::move(*more)));
  store_options opts = quick_retries();
  opts.extra_writers.push_back(writer);
  auto own = std::make_shared<doubting_store>(store);  // never fails: counts the lookups
  constexpr int per_round = 20;
  {
    running_store run{own, opts};
    caf::scoped_actor self{run.sys};
    for (bool lands : {true, false}) {
      writer->lands = lands;
      writer->doubtful_commits = 1;
      const int first = lands ? 0 : per_round;
      for (int i = first; i < first + per_round; ++i) {
        auto b = std::make_shared<base::write_batch>();
        b->audit.push_back({i, "ops", "cancel", "t" + std::to_string(i), "{}", "ok"});
        self->send(run.actor, write_atom::value, b);
      }
      int ok = 0;
      for (int i = 0; i < per_round; ++i)
        self->receive([&](commit_reply& r) { ok += r.ok ? 1 : 0; },
                      caf::after(std::chrono::seconds(20)) >> [] { ADD_FAILURE() << "no commit reply"; });
      EXPECT_EQ(ok, per_round);
      EXPECT_EQ(writer->doubtful_commits.load(), 0);
    }
    self->send_exit(run.actor, caf::exit_reason::user_shutdown);
  }
  EXPECT_EQ(own->lookups.load(), 2) << "the store actor's own connection looks the doubts up";
  auto audit = store->load_audit(1000).value();
  ASSERT_EQ(audit.size(), std::size_t{2 * per_round});
  std::set<std::string> targets;
  for (const auto& a : audit) targets.insert(a.target);
  EXPECT_EQ(targets.size(), std::size_t{2 * per_round}) << "no audit row written twice";
}

/// A task's end (write_batch::can_wait), with a cost row.
std::shared_ptr<base::write_batch> task_end(const std::string& id) {
  auto b = std::make_shared<base::write_batch>();
  b->snapshots.push_back(row(id, "succeeded", 1));
  base::cost_row c;
  c.task_id = id;
  c.outcome = "ok";
  b->costs.push_back(c);
  b->can_wait = true;
  return b;
}

/// Options with no ordinary window and a window of `end_us` for task ends.
store_options end_window(std::int64_t end_us) {
  store_options opts;
  opts.linger_us = 0;
  opts.end_us = end_us;
  return opts;
}

/// Receives `n` commit replies, each successful.
void expect_commits(caf::scoped_actor& self, int n) {
  for (int i = 0; i < n; ++i)
    self->receive([](commit_reply& r) { EXPECT_TRUE(r.ok); },
                  caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no commit reply"; });
}

TEST_F(store_fixture, a_tasks_end_alone_waits_its_window_for_company) {
  running_store run{store, end_window(300'000)};
  caf::scoped_actor self{run.sys};
  const auto sent = std::chrono::steady_clock::now();
  self->send(run.actor, write_atom::value, task_end("a"));
  self->send(run.actor, write_atom::value, task_end("b"));
  expect_commits(self, 2);
  // Not before the window (the timer cannot fire early), and both in one commit.
  EXPECT_GE(std::chrono::steady_clock::now() - sent, std::chrono::milliseconds(300));
  EXPECT_EQ(run.stats->commits.load(), 1u);
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

TEST_F(store_fixture, a_write_someone_waits_on_takes_the_waiting_ends_along_at_once) {
  running_store run{store, end_window(60'000'000)};  // a minute: only the submit below can commit them
  caf::scoped_actor self{run.sys};
  self->send(run.actor, write_atom::value, task_end("a"));
  self->send(run.actor, write_atom::value, task_end("b"));
  auto submit = std::make_shared<base::write_batch>();
  submit->new_tasks.push_back(row("c", "queued", 1));
  self->send(run.actor, write_atom::value, submit);
  expect_commits(self, 3);
  EXPECT_EQ(run.stats->commits.load(), 1u);
  EXPECT_EQ(run.stats->rows.load(), 5u);
  auto a = store->load_task("a");
  ASSERT_TRUE(a && *a);
  EXPECT_EQ((*a)->state, "succeeded");
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

/// Waits (up to 10 s) until the store's thread has gone to sleep through a window of
/// task ends `n` times in all.
bool wait_for_naps(const store_stats& stats, std::uint64_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stats.end_naps.load() < n)
    if (std::chrono::steady_clock::now() > deadline) return false;
    else std::this_thread::yield();
  return true;
}

TEST_F(store_fixture, ends_that_come_while_the_store_sleeps_through_their_window_do_not_wake_it) {
  running_store run{store, end_window(300'000)};
  caf::scoped_actor self{run.sys};
  self->send(run.actor, write_atom::value, task_end("a"));
  ASSERT_TRUE(wait_for_naps(*run.stats, 1)) << "the first end's window is slept through";
  self->send(run.actor, write_atom::value, task_end("b"));
  self->send(run.actor, write_atom::value, task_end("c"));
  expect_commits(self, 3);
  EXPECT_EQ(run.stats->commits.load(), 1u);
  // Woken by b or c, the thread would have slept again through the rest of the window.
  EXPECT_EQ(run.stats->end_naps.load(), 1u);
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

TEST_F(store_fixture, a_write_someone_waits_on_wakes_the_store_sleeping_through_a_window_of_ends) {
  running_store run{store, end_window(60'000'000)};  // a minute: only the submit below can cut it short
  caf::scoped_actor self{run.sys};
  self->send(run.actor, write_atom::value, task_end("a"));
  ASSERT_TRUE(wait_for_naps(*run.stats, 1));
  auto submit = std::make_shared<base::write_batch>();
  submit->new_tasks.push_back(row("c", "queued", 1));
  self->send(run.actor, write_atom::value, submit);
  expect_commits(self, 2);
  EXPECT_EQ(run.stats->commits.load(), 1u);
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

TEST_F(store_fixture, a_read_is_answered_while_a_window_of_ends_is_open) {
  running_store run{store, end_window(60'000'000)};
  caf::scoped_actor self{run.sys};
  self->send(run.actor, write_atom::value, task_end("a"));
  ASSERT_TRUE(wait_for_naps(*run.stats, 1));
  self->request(run.actor, std::chrono::seconds(10), entities_atom::value, std::string("t"))
      .receive([](entities_reply& r) { EXPECT_TRUE(r.ok) << r.error.message; },
               [&](caf::error& e) { ADD_FAILURE() << "no answer while the window is open: " << run.sys.render(e); });
  EXPECT_EQ(run.stats->commits.load(), 0u) << "the end still waits for company";
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

TEST_F(store_fixture, without_an_end_window_a_tasks_end_commits_like_any_write) {
  running_store run{store, end_window(0)};
  caf::scoped_actor self{run.sys};
  self->send(run.actor, write_atom::value, task_end("a"));
  self->receive([](commit_reply& r) { EXPECT_TRUE(r.ok); },
                caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no commit reply"; });
  EXPECT_EQ(run.stats->commits.load(), 1u);
  self->send_exit(run.actor, caf::exit_reason::user_shutdown);
}

TEST_F(store_fixture, terminal_tasks_past_retention_are_pruned_in_batches) {
  base::write_batch b;
  auto old = base::now_ms() - 10 * 24 * 3600 * 1000LL;
  for (int i = 0; i < 25; ++i) b.new_tasks.push_back(row("old" + std::to_string(i), "succeeded", old));
  b.new_tasks.push_back(row("running", "running", old));
  b.new_tasks.push_back(row("fresh", "succeeded", base::now_ms()));
  ASSERT_TRUE(store->commit(b));
  auto stats = std::make_shared<store_stats>();
  {
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    store_options opts;
    opts.retention_ms = 24 * 3600 * 1000LL;  // one day
    opts.prune_every_ms = 5;
    opts.prune_batch = 10;
    auto actor = spawn_store(sys, store, stats, opts);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (stats->pruned_tasks.load() < 25 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    actor = nullptr;
  }  // the system joins the store thread: the store is ours alone again
  EXPECT_EQ(stats->pruned_tasks.load(), 25u);
  auto gone = store->load_task("old0");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
  auto running = store->load_task("running");
  ASSERT_TRUE(running && *running);  // not terminal: never pruned
  auto fresh = store->load_task("fresh");
  ASSERT_TRUE(fresh && *fresh);      // terminal but recent
}

}  // namespace
}  // namespace troupe::actors
