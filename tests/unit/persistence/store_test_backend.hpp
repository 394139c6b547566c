#pragma once
/// Test-side access to the database behind a store under test: its URL, raw
/// SQL (to tamper with the schema version, count rows) and its size on disk.
#include <cstdint>
#include <memory>
#include <string>

namespace troupe::test {

/// One throwaway database for one test; removed on destruction.
class store_backend {
 public:
  virtual ~store_backend() = default;
  /// The URL to hand to persistence::open_store.
  virtual const std::string& url() const = 0;
  /// Runs SQL on a separate connection; throws std::runtime_error on failure.
  virtual void exec(const std::string& sql) = 0;
  /// First column of the first row as text ("" for NULL or no row).
  virtual std::string scalar(const std::string& sql) = 0;
  /// Bytes used by the tasks and journal tables (SQLite: the whole file).
  virtual std::int64_t storage_bytes() = 0;
  /// Routine maintenance a deployment runs anyway (PostgreSQL: VACUUM, as
  /// autovacuum would); nothing for SQLite.
  virtual void maintain() {}
  /// Runs SQL on the server's maintenance database (PostgreSQL only).
  virtual void exec_admin(const std::string& sql) { exec(sql); }
};

/// A SQLite database in a fresh temp directory.
std::unique_ptr<store_backend> make_sqlite_backend();

/// A fresh PostgreSQL database; nullptr with the reason when unavailable.
std::unique_ptr<store_backend> make_pg_backend(std::string& why_not);

}  // namespace troupe::test
