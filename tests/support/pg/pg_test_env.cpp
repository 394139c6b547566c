#include "support/pg/pg_test_env.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <pqxx/pqxx>

namespace troupe::test {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

/// KEY=VALUE lines of the fixture's env file.
std::map<std::string, std::string> read_env_file(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos && line[0] != '#') out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

struct server {
  std::string host, port, user;
};

std::optional<server> find_server(std::string& why_not) {
  const std::string file = env_or("TROUPE_PG_ENV", TROUPE_BINARY_DIR "/pg-fixture/pg.env");
  if (auto vars = read_env_file(file); !vars.empty()) {
    return server{vars["PGHOST"], vars["PGPORT"],
                  vars.count("PGUSER") ? vars["PGUSER"] : "postgres"};
  }
  // No fixture file: fall back to the standard libpq variables when set.
  if (std::getenv("PGHOST") != nullptr || std::getenv("PGPORT") != nullptr) {
    return server{env_or("PGHOST", "127.0.0.1"), env_or("PGPORT", "5432"),
                  env_or("PGUSER", "postgres")};
  }
  why_not = "no fixture file " + file + " and no PGHOST/PGPORT in the environment";
  return std::nullopt;
}

std::string conninfo_for(const server& s, const std::string& db) {
  return "host=" + s.host + " port=" + s.port + " user=" + s.user + " dbname=" + db +
         " connect_timeout=10";
}

std::string unique_name() {
  static std::atomic<unsigned> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return "troupe_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
         std::to_string(static_cast<unsigned long long>(now) % 1000000007ULL);
}

}  // namespace

bool pg_required() { return env_or("CI", "") == "true"; }

std::optional<pg_database> make_pg_database(std::string& why_not) {
  auto s = find_server(why_not);
  if (!s) return std::nullopt;
  pg_database db;
  db.name = unique_name();
  try {
    pqxx::connection admin{conninfo_for(*s, "postgres")};
    pqxx::nontransaction n{admin};
    n.exec("CREATE DATABASE " + db.name);
  } catch (const std::exception& e) {
    why_not = std::string("cannot create a test database on ") + s->host + ":" + s->port + ": " +
              e.what();
    return std::nullopt;
  }
  db.url = "postgresql://" + s->user + "@" + s->host + ":" + s->port + "/" + db.name;
  db.conninfo = conninfo_for(*s, db.name);
  return db;
}

void drop_pg_database(const pg_database& db) {
  if (db.name.empty()) return;
  std::string why_not;
  auto s = find_server(why_not);
  if (!s) return;
  try {
    pqxx::connection admin{conninfo_for(*s, "postgres")};
    pqxx::nontransaction n{admin};
    n.exec("DROP DATABASE IF EXISTS " + db.name + " WITH (FORCE)");
  } catch (const std::exception&) {
    // Best effort: the fixture removes the whole cluster at the end anyway.
  }
}

}  // namespace troupe::test
