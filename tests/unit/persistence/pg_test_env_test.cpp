// The test-database helper other suites rely on: each call gives a fresh,
// empty database, and dropping it really removes it.
#include "support/pg/pg_test_env.hpp"

#include <gtest/gtest.h>

#include <pqxx/pqxx>

namespace troupe::test {
namespace {

bool database_exists(const pg_database& probe_via, const std::string& name) {
  std::string conninfo = probe_via.conninfo;
  conninfo.replace(conninfo.find("dbname=" + probe_via.name), 7 + probe_via.name.size(),
                   "dbname=postgres");
  pqxx::connection c{conninfo};
  pqxx::nontransaction n{c};
  return n.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", name).size() == 1;
}

TEST(postgres_test_env, makes_distinct_databases_and_drops_them) {
  TROUPE_MAKE_PG_DATABASE_OR_SKIP(first);
  TROUPE_MAKE_PG_DATABASE_OR_SKIP(second);
  EXPECT_NE(first->name, second->name);
  EXPECT_EQ(first->url.rfind("postgresql://", 0), 0u);
  {
    pqxx::connection c{first->conninfo};
    pqxx::nontransaction n{c};
    EXPECT_EQ(n.exec1("SELECT current_database()")[0].as<std::string>(), first->name);
    EXPECT_EQ(n.exec1("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0].as<int>(),
              0);
  }
  {
    scoped_pg_database owner{*first};
    EXPECT_TRUE(database_exists(*second, first->name));
  }
  EXPECT_FALSE(database_exists(*second, first->name));
  drop_pg_database(*second);
}

}  // namespace
}  // namespace troupe::test
