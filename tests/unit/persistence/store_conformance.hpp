#pragma once
/// The snapshot_store conformance suite's fixture: every TEST_P on it runs
/// against SQLite (a temp file, always) and PostgreSQL (a fresh database per
/// test; skipped locally and failed in CI when no server is available).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "store_test_backend.hpp"
#include "support/pg/pg_test_env.hpp"
#include "troupe/base/store_port.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence::conformance {

using base::errc;

inline base::task_row task(std::string id, std::string state = "queued", std::int64_t seq = 0,
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

inline base::journal_row delta(std::string task_id, std::int64_t seq, std::string payload = "") {
  if (payload.empty()) payload = R"({"step":)" + std::to_string(seq) + "}";
  return {std::move(task_id), seq, "step_finished", std::move(payload), 2000 + seq};
}

inline std::vector<std::int64_t> seqs(const std::vector<base::journal_row>& rows) {
  std::vector<std::int64_t> out;
  for (const auto& r : rows) out.push_back(r.seq);
  return out;
}

inline void expect_same_task(const base::task_row& a, const base::task_row& b) {
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
        if (test::pg_required())
          FAIL() << "PostgreSQL required (CI=true) but unavailable: " << why_not;
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

}  // namespace troupe::persistence::conformance
