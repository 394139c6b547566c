// Behaviour specific to one store implementation: SQLite locking and recovery
// speed, PostgreSQL reconnection.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <pqxx/pqxx>
#include <set>

#include "store_test_backend.hpp"
#include "support/pg/pg_test_env.hpp"
#include "troupe/base/store_port.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence {
namespace {

using base::errc;

std::unique_ptr<base::snapshot_store> open_migrated(const std::string& url) {
  auto s = open_store(url);
  EXPECT_TRUE(s) << s.error().message;
  if (!s) return nullptr;
  auto m = (*s)->migrate();
  EXPECT_TRUE(m) << m.error().message;
  return std::move(*s);
}

base::write_batch one_task(const std::string& id) {
  base::write_batch b;
  base::task_row t;
  t.id = id;
  t.team = "newsroom";
  t.state = "queued";
  t.snapshot = "{}";
  b.new_tasks.push_back(t);
  return b;
}

TEST(sqlite_store, uses_wal_mode) {
  auto backend = test::make_sqlite_backend();
  auto store = open_migrated(backend->url());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(backend->scalar("PRAGMA journal_mode"), "wal");
  auto full = open_migrated(backend->url() + "?sync=full");
  ASSERT_NE(full, nullptr);
  EXPECT_TRUE(full->commit(one_task("t1")));
}

TEST(sqlite_store, busy_database_is_unavailable_and_retryable) {
  auto backend = test::make_sqlite_backend();
  auto store = open_migrated(backend->url() + "?busy_timeout_ms=50");
  ASSERT_NE(store, nullptr);
  const std::string path = backend->url().substr(7);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  auto blocked = store->commit(one_task("t1"));
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code, errc::unavailable);
  EXPECT_TRUE(blocked.error().retryable);
  EXPECT_NE(blocked.error().message.find(path), std::string::npos) << blocked.error().message;

  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  auto retried = store->commit(one_task("t1"));
  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_TRUE(store->load_task("t1").value().has_value());
}

// The durability contract with synchronous=NORMAL: a commit that returned
// survives kill -9 of the process. A child commits one task per batch and
// acknowledges each through a pipe; the parent kills it mid-stream and then
// finds every acknowledged task.
TEST(sqlite_store, acknowledged_commits_survive_kill_9) {
  auto backend = test::make_sqlite_backend();
  ASSERT_NE(open_migrated(backend->url()), nullptr);
  int acks[2];
  ASSERT_EQ(::pipe(acks), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(acks[0]);
    auto store = open_store(backend->url());
    if (!store) ::_exit(2);
    for (int i = 0;; ++i) {
      if (!(*store)->commit(one_task("k" + std::to_string(i)))) ::_exit(3);
      if (::write(acks[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
  }
  ::close(acks[1]);
  int last = -1;
  int value = 0;
  while (last < 100 && ::read(acks[0], &value, sizeof value) == sizeof value) last = value;
  ::kill(child, SIGKILL);
  // Acknowledgements already in the pipe were sent after their commit returned.
  while (::read(acks[0], &value, sizeof value) == sizeof value) last = value;
  ::close(acks[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);
  ASSERT_GE(last, 100);

  auto store = open_migrated(backend->url());
  ASSERT_NE(store, nullptr);
  auto rec = store->recover();
  ASSERT_TRUE(rec) << rec.error().message;
  std::set<std::string> ids;
  for (const auto& t : rec->active_tasks) ids.insert(t.id);
  for (int i = 0; i <= last; ++i) EXPECT_TRUE(ids.count("k" + std::to_string(i))) << i;
}

TEST(sqlite_store, recovers_100k_active_tasks_quickly) {
  auto backend = test::make_sqlite_backend();
  auto store = open_migrated(backend->url());
  ASSERT_NE(store, nullptr);
  // 100,000 active tasks plus 10,000 terminal ones that recovery must skip.
  constexpr int total = 110000;
  const std::string snapshot =
      R"({"input":"Research the history of the printing press","step":"research","attempt":1,)"
      R"("results":[{"step":"plan","text":"outline with five sections"}]})";
  for (int start = 0; start < total; start += 10000) {
    base::write_batch b;
    for (int i = start; i < start + 10000; ++i) {
      base::task_row t;
      t.id = "task_" + std::to_string(i);
      t.team = "newsroom";
      t.state = i % 11 == 0 ? "succeeded" : "running";
      t.snapshot = snapshot;
      t.seq = 1;
      b.new_tasks.push_back(std::move(t));
      b.journal.push_back({"task_" + std::to_string(i), 2, "step_finished", R"({"ok":true})", 5});
    }
    ASSERT_TRUE(store->commit(b));
  }
  const auto started = std::chrono::steady_clock::now();
  auto rec = store->recover();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(rec->active_tasks.size(), 100000u);
  EXPECT_EQ(rec->journal.size(), 100000u);
  std::printf("[ recover ] %zu active tasks + %zu journal rows in %.3f s\n",
              rec->active_tasks.size(), rec->journal.size(), seconds);
  // Generous for a Debug+ASan build on a shared machine; Release is ~10x faster.
  EXPECT_LT(seconds, 5.0);
}

TEST(postgres_store, reconnects_after_the_connection_is_killed) {
  std::string why_not;
  auto backend = test::make_pg_backend(why_not);
  if (!backend) {
    if (test::pg_required()) FAIL() << "PostgreSQL required (CI=true) but unavailable: " << why_not;
    GTEST_SKIP() << "PostgreSQL unavailable, skipping: " << why_not;
  }
  auto store = open_migrated(backend->url());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->commit(one_task("t1")));

  backend->exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  // The first call may notice the broken connection (unavailable, retryable,
  // nothing written); by the second the store has reconnected.
  auto first = store->commit(one_task("t2"));
  if (!first) {
    EXPECT_EQ(first.error().code, errc::unavailable) << first.error().message;
    EXPECT_TRUE(first.error().retryable);
    EXPECT_FALSE(store->load_task("t2").value().has_value());
    auto second = store->commit(one_task("t2"));
    ASSERT_TRUE(second) << second.error().message;
  }
  EXPECT_TRUE(store->load_task("t2").value().has_value());
  EXPECT_TRUE(store->ping().value());
}

TEST(postgres_store, commit_fails_cleanly_while_the_database_is_gone) {
  std::string why_not;
  auto backend = test::make_pg_backend(why_not);
  if (!backend) {
    if (test::pg_required()) FAIL() << "PostgreSQL required (CI=true) but unavailable: " << why_not;
    GTEST_SKIP() << "PostgreSQL unavailable, skipping: " << why_not;
  }
  auto store = open_migrated(backend->url());
  ASSERT_NE(store, nullptr);
  // Refuse new connections to this database and kill the current one: every
  // call now fails as unavailable and retryable, and none of them crashes.
  const std::string name = store->describe().substr(store->describe().rfind('/') + 1);
  backend->exec_admin("ALTER DATABASE " + name + " WITH ALLOW_CONNECTIONS false");
  backend->exec_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" +
                      name + "'");
  for (int i = 0; i < 3; ++i) {
    auto r = store->commit(one_task("t" + std::to_string(i)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::unavailable) << r.error().message;
    EXPECT_TRUE(r.error().retryable);
  }
  EXPECT_FALSE(store->ping());
}

}  // namespace
}  // namespace troupe::persistence
