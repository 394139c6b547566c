// A real PostgreSQL connection lost around a commit, on demand: the PostgreSQL
// store says "outcome unknown", its commit mark tells what happened, and the store
// actor neither loses nor doubles a row (durability contract item 7).
#include <chrono>
#include <memory>
#include <optional>

#include <caf/all.hpp>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include "support/pg/cutting_proxy.hpp"
#include "support/pg/pg_test_env.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::actors {
namespace {

using cut = test::pg_cutting_proxy::cut;

long count(const test::pg_database& db, const std::string& table) {
  pqxx::connection c{db.conninfo};
  pqxx::nontransaction n{c};
  return n.exec1("SELECT count(*) FROM " + table)[0].as<long>();
}

/// A batch with one row of each append-only kind, stamped with `commit_id`.
base::write_batch accounted_batch(std::uint64_t commit_id) {
  base::write_batch b;
  b.costs.push_back({"t1", "s1", "a", "t", "p", "m", "ok", 10, 5, 50, 1, 0.01});
  b.audit.push_back({1, "ops", "cancel", "t1", "{}", "ok"});
  b.commit_id = commit_id;
  return b;
}

/// The proxy in front of the test database and a store opened through it, with
/// its batch statement prepared (a warm-up commit), so that the next Execute the
/// proxy sees is the commit under test.
struct proxied_store {
  std::unique_ptr<test::pg_cutting_proxy> proxy;
  std::shared_ptr<base::snapshot_store> store;

  explicit proxied_store(const test::pg_database& db) {
    std::string host;
    std::uint16_t port = 0;
    if (!test::split_host_port(db.url, host, port)) {
      ADD_FAILURE() << "cannot read host and port from " << db.url;
      return;
    }
    proxy = std::make_unique<test::pg_cutting_proxy>(host, port);
    auto opened = persistence::open_store(test::via_proxy(db.url, proxy->port()));
    if (!opened) {
      ADD_FAILURE() << opened.error().message;
      return;
    }
    store = std::shared_ptr<base::snapshot_store>(std::move(*opened));
    EXPECT_TRUE(store->migrate());
    base::write_batch warm;
    warm.journal.push_back({"warm", 1, "patch", "{}", 1});
    EXPECT_TRUE(store->commit(warm));
  }
};

/// Each test: its own database, a proxy in front of it and a store through the proxy.
class store_in_doubt : public ::testing::Test {
 protected:
  void SetUp() override {
    TROUPE_MAKE_PG_DATABASE_OR_SKIP(made);
    db_.emplace(*made);
    s_ = std::make_unique<proxied_store>(db());
    ASSERT_TRUE(s_->store);
  }
  const test::pg_database& db() const { return db_->get(); }

  /// Commits a batch stamped `commit_id` with the connection cut `how`; returns the error.
  base::error commit_cut(cut how, std::uint64_t commit_id) {
    s_->proxy->arm(how);
    auto r = s_->store->commit(accounted_batch(commit_id));
    EXPECT_TRUE(s_->proxy->fired());
    if (r) {
      ADD_FAILURE() << "the commit succeeded through a cut connection";
      return {};
    }
    EXPECT_TRUE(r.error().in_doubt) << r.error().message;
    EXPECT_EQ(r.error().code, base::errc::unavailable);
    return r.error();
  }

  /// Runs a store actor on the proxied store for one piece of accounted rows while
  /// the proxy cuts `how`; returns whether the piece was answered as committed.
  bool commit_through_the_actor(cut how) {
    s_->proxy->arm(how);
    bool ok = false;
    {
      caf::actor_system_config cfg;
      caf::actor_system sys{cfg.set("scheduler.max-threads", 2)};
      store_options opts;
      opts.retry_ms = 5;
      opts.retry_max_ms = 50;
      auto actor = spawn_store(sys, s_->store, std::make_shared<store_stats>(), opts);
      caf::scoped_actor self{sys};
      self->send(actor, write_atom::value, std::make_shared<base::write_batch>(accounted_batch(0)));
      self->receive([&](commit_reply& r) { ok = r.ok; },
                    caf::after(std::chrono::seconds(30)) >> [] { ADD_FAILURE() << "no commit reply"; });
      self->send_exit(actor, caf::exit_reason::user_shutdown);
    }  // the actor system is gone: the store is ours again
    EXPECT_TRUE(s_->proxy->fired());
    return ok;
  }

  std::optional<test::scoped_pg_database> db_;  // declared first: dropped last
  std::unique_ptr<proxied_store> s_;
};

TEST_F(store_in_doubt, postgres_a_commit_cut_after_it_landed_is_in_doubt_and_its_mark_is_found) {
  auto e = commit_cut(cut::after_commit, 4242);
  EXPECT_NE(e.message.find("outcome unknown"), std::string::npos) << e.message;
  auto landed = s_->store->committed(4242);  // on a new connection
  ASSERT_TRUE(landed) << landed.error().message;
  EXPECT_TRUE(*landed);
  EXPECT_EQ(count(db(), "costs"), 1);
}

TEST_F(store_in_doubt, postgres_a_commit_cut_before_the_server_ran_it_is_in_doubt_and_has_no_mark) {
  commit_cut(cut::before_statement, 4243);
  auto landed = s_->store->committed(4243);
  ASSERT_TRUE(landed) << landed.error().message;
  EXPECT_FALSE(*landed);
  EXPECT_EQ(count(db(), "costs"), 0);
}

TEST_F(store_in_doubt, postgres_the_store_actor_answers_a_commit_that_landed_without_writing_it_twice) {
  EXPECT_TRUE(commit_through_the_actor(cut::after_commit));
  EXPECT_EQ(count(db(), "costs"), 1);
  EXPECT_EQ(count(db(), "audit"), 1);
}

TEST_F(store_in_doubt, postgres_the_store_actor_writes_a_commit_that_did_not_land_once) {
  EXPECT_TRUE(commit_through_the_actor(cut::before_statement));
  EXPECT_EQ(count(db(), "costs"), 1);
  EXPECT_EQ(count(db(), "audit"), 1);
}

}  // namespace
}  // namespace troupe::actors
