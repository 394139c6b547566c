#include "store_test_backend.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <pqxx/pqxx>
#include <stdexcept>
#include <type_traits>

#include "support/pg/pg_test_env.hpp"

namespace troupe::test {
namespace {

namespace fs = std::filesystem;

class sqlite_backend final : public store_backend {
 public:
  sqlite_backend() {
    static std::atomic<unsigned> counter{0};
    dir_ = fs::temp_directory_path() /
           ("troupe-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "store.db").string();
    url_ = "sqlite:" + path_;
  }
  ~sqlite_backend() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  const std::string& url() const override { return url_; }

  void exec(const std::string& sql) override {
    with_db([&](sqlite3* db) {
      char* err = nullptr;
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string message = err != nullptr ? err : "?";
        sqlite3_free(err);
        throw std::runtime_error("sqlite exec '" + sql + "': " + message);
      }
      return 0;
    });
  }

  std::string scalar(const std::string& sql) override {
    return with_db([&](sqlite3* db) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
        throw std::runtime_error("sqlite prepare '" + sql + "': " + sqlite3_errmsg(db));
      }
      std::string out;
      if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != nullptr) {
        out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      }
      sqlite3_finalize(s);
      return out;
    });
  }

  std::int64_t storage_bytes() override {
    return std::stoll(scalar("PRAGMA page_count")) * std::stoll(scalar("PRAGMA page_size"));
  }

 private:
  template <class F>
  std::invoke_result_t<F, sqlite3*> with_db(F f) {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      sqlite3_close(db);
      throw std::runtime_error("cannot open " + path_);
    }
    sqlite3_busy_timeout(db, 5000);
    try {
      auto r = f(db);
      sqlite3_close(db);
      return r;
    } catch (...) {
      sqlite3_close(db);
      throw;
    }
  }

  fs::path dir_;
  std::string path_;
  std::string url_;
};

class pg_backend final : public store_backend {
 public:
  explicit pg_backend(pg_database db) : db_(std::move(db)) {}
  const std::string& url() const override { return db_.get().url; }

  void exec(const std::string& sql) override {
    pqxx::connection c{db_.get().conninfo};
    pqxx::nontransaction n{c};
    n.exec(sql);
  }

  std::string scalar(const std::string& sql) override {
    pqxx::connection c{db_.get().conninfo};
    pqxx::nontransaction n{c};
    auto r = n.exec(sql);
    if (r.empty() || r[0][0].is_null()) return {};
    return r[0][0].as<std::string>();
  }

  std::int64_t storage_bytes() override {
    return std::stoll(
        scalar("SELECT pg_total_relation_size('tasks') + pg_total_relation_size('journal')"));
  }

  void maintain() override { exec("VACUUM tasks, journal"); }

  void exec_admin(const std::string& sql) override {
    std::string conninfo = db_.get().conninfo;
    conninfo.replace(conninfo.find("dbname=" + db_.get().name), 7 + db_.get().name.size(),
                     "dbname=postgres");
    pqxx::connection c{conninfo};
    pqxx::nontransaction n{c};
    n.exec(sql);
  }

 private:
  scoped_pg_database db_;
};

}  // namespace

std::unique_ptr<store_backend> make_sqlite_backend() { return std::make_unique<sqlite_backend>(); }

std::unique_ptr<store_backend> make_pg_backend(std::string& why_not) {
  auto db = make_pg_database(why_not);
  if (!db) return nullptr;
  return std::make_unique<pg_backend>(std::move(*db));
}

}  // namespace troupe::test
