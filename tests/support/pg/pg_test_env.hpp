#pragma once
/// Throwaway PostgreSQL databases for tests.
///
/// The server comes from the ctest fixture `postgres` (pg_cluster.sh, which
/// writes `<build>/pg-fixture/pg.env`; the TROUPE_PG_ENV variable may name
/// another file) or, without that file, from the standard PG* environment
/// variables (PGHOST, PGPORT, PGUSER, PGPASSWORD). Each test makes its own
/// database and drops it after, so tests never see each other's rows and can
/// run in parallel (ctest -j2).
#include <optional>
#include <string>
#include <utility>

namespace troupe::test {

/// A database created for one test.
struct pg_database {
  std::string name;      ///< database name, unique per call
  std::string url;       ///< postgresql://user@host:port/name, for open_store
  std::string conninfo;  ///< libpq key=value form of the same, for raw pqxx access
};

/// Creates a fresh database. Returns nullopt when no PostgreSQL is configured
/// or reachable, with the reason in `why_not`.
std::optional<pg_database> make_pg_database(std::string& why_not);

/// Drops the database (terminating leftover connections). Never throws.
void drop_pg_database(const pg_database& db);

/// True when the environment demands PostgreSQL tests run (CI=true): a test
/// that cannot get a database must then FAIL instead of SKIP.
bool pg_required();

/// Owns a test database for the scope: drops it on destruction.
class scoped_pg_database {
 public:
  explicit scoped_pg_database(pg_database db) : db_(std::move(db)) {}
  scoped_pg_database(const scoped_pg_database&) = delete;
  scoped_pg_database& operator=(const scoped_pg_database&) = delete;
  ~scoped_pg_database() { drop_pg_database(db_); }
  const pg_database& get() const noexcept { return db_; }

 private:
  pg_database db_;
};

}  // namespace troupe::test

/// In a gtest body or SetUp: declares `var` (std::optional<troupe::test::pg_database>)
/// and SKIPs (locally) or FAILs (CI=true) when PostgreSQL is unavailable.
#define TROUPE_MAKE_PG_DATABASE_OR_SKIP(var)                                                 \
  std::string var##_why_not;                                                                 \
  auto var = ::troupe::test::make_pg_database(var##_why_not);                                \
  if (!var) {                                                                                \
    if (::troupe::test::pg_required()) {                                                     \
      FAIL() << "PostgreSQL required (CI=true) but unavailable: " << var##_why_not;          \
    }                                                                                        \
    GTEST_SKIP() << "PostgreSQL unavailable, skipping: " << var##_why_not                    \
                 << " (run through ctest so the `postgres` fixture starts a server, or set " \
                    "PGHOST/PGPORT/PGUSER)";                                                 \
  }
