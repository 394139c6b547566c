#pragma once
/// A thin owner of one SQLite connection for the SQLite store (private header):
/// a prepared-statement cache, typed binding, stepping and transactions.
/// Failures throw sqlite_failure, which sqlite_store turns into error values at
/// its public methods; nothing here is seen outside this module.
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace troupe::persistence::detail {

/// A failed SQLite call: the result code and what was being done.
struct sqlite_failure {
  int rc = SQLITE_ERROR;
  std::string message;
};

class sqlite_db {
 public:
  /// Takes ownership of an open connection.
  explicit sqlite_db(sqlite3* db) : db_(db) {}
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;
  ~sqlite_db() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  sqlite3* handle() const noexcept { return db_; }

  /// Runs SQL text without results (may hold several statements).
  void exec(const std::string& sql) {
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) raise(rc, sql.substr(0, 60));
  }

  /// A cached prepared statement, reset and with cleared bindings. Looked up by
  /// the text itself, without copying it into a key.
  sqlite3_stmt* stmt(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) raise(rc, "prepare " + std::string(sql.substr(0, 60)));
    cache_.emplace(std::string(sql), s);
    return s;
  }

  /// Resets every cached statement. A statement left on a row counts as a
  /// reader of its table, and SQLite refuses DROP TABLE while one is active.
  void reset_all() noexcept {
    for (auto& [sql, s] : cache_) sqlite3_reset(s);
  }

  /// Binds the arguments to ?1, ?2, ... in order. Text is bound without a
  /// copy, so the arguments must outlive the next step.
  template <class... Args>
  void bind_all([[maybe_unused]] sqlite3_stmt* s, const Args&... args) {
    int i = 0;
    (bind_one(s, ++i, args), ...);
  }

  /// Binds, runs to completion and resets a statement that returns no rows.
  template <class... Args>
  void run(sqlite3_stmt* s, const Args&... args) {
    bind_all(s, args...);
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) raise(rc, sqlite3_sql(s));
  }

  /// Steps once: true with a row, false when done.
  bool step_row(sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    sqlite3_reset(s);
    raise(rc, sqlite3_sql(s));
  }

  /// Column i of the current row as text ("" for NULL).
  static std::string text(sqlite3_stmt* s, int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p == nullptr ? std::string{}
                        : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i)));
  }

  void rollback_quietly() noexcept {
    // Nothing to do when SQLite already rolled back (e.g. after SQLITE_FULL).
    if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  /// Rolls back on scope exit unless released; used around reads and writes.
  class transaction_guard {
   public:
    explicit transaction_guard(sqlite_db& db) : db_(&db) {}
    transaction_guard(const transaction_guard&) = delete;
    transaction_guard& operator=(const transaction_guard&) = delete;
    ~transaction_guard() {
      if (db_ != nullptr) db_->rollback_quietly();
    }
    void release() noexcept { db_ = nullptr; }

   private:
    sqlite_db* db_;
  };

  /// A write transaction. BEGIN IMMEDIATE takes the write lock up front, so a
  /// busy database fails here (after the busy timeout) instead of half-way
  /// through a batch.
  class transaction {
   public:
    // Both are cached statements: sqlite3_exec would parse the text every time.
    explicit transaction(sqlite_db& db) : db_(db), guard_(db) { db_.run(db_.stmt("BEGIN IMMEDIATE")); }
    void commit() {
      db_.run(db_.stmt("COMMIT"));
      guard_.release();
    }

   private:
    sqlite_db& db_;
    transaction_guard guard_;
  };

 private:
  [[noreturn]] void raise(int rc, std::string_view what) const {
    throw sqlite_failure{rc, std::string(what) + ": " + sqlite3_errmsg(db_)};
  }
  void check_bind(int rc) {
    if (rc != SQLITE_OK) raise(rc, "bind");
  }
  void bind_one(sqlite3_stmt* s, int i, const std::string& v) {
    check_bind(sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  void bind_one(sqlite3_stmt* s, int i, std::int64_t v) { check_bind(sqlite3_bind_int64(s, i, v)); }
  void bind_one(sqlite3_stmt* s, int i, int v) { check_bind(sqlite3_bind_int64(s, i, v)); }
  void bind_one(sqlite3_stmt* s, int i, double v) { check_bind(sqlite3_bind_double(s, i, v)); }

  sqlite3* db_;
  struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, sqlite3_stmt*, text_hash, std::equal_to<>> cache_;
};

}  // namespace troupe::persistence::detail
