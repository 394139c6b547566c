// The store actor against a real SQLite file: group commit answers and retention pruning.
#include <filesystem>
#include <future>
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
