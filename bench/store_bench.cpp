// store_bench: write throughput of the snapshot stores through commit() with
// batches of 512, each next to a raw batched multi-row INSERT of the same rows
// (same columns, same payload sizes) into a plain table of the same database,
// and the time recover() takes for 100,000 active tasks.
//
//   store_bench [POSTGRES_URL]      (or TROUPE_BENCH_PG=postgresql://...)
//
// SQLite always runs (temp file); PostgreSQL runs when a URL is given. The
// database should be a throwaway one: the bench creates and fills tables.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "troupe/persistence/open_store.hpp"

namespace {

using troupe::base::snapshot_store;
using troupe::base::write_batch;

constexpr int batch_size = 512;
constexpr int batches = 100;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// A JSON-ish payload of about n bytes.
std::string payload(std::size_t n, int salt) {
  std::string s = R"({"salt":)" + std::to_string(salt) + R"(,"text":")";
  while (s.size() + 2 < n) s += "lorem ipsum dolor sit amet ";
  s.resize(n - 2);
  return s + "\"}";
}

void row(const char* backend, const char* workload, long rows, double secs) {
  std::printf("| %-9s | %-38s | %8ld | %8.3f | %10.0f |\n", backend, workload, rows, secs,
              secs > 0 ? double(rows) / secs : 0.0);
}

void die(const std::string& what) {
  std::fprintf(stderr, "store_bench: %s\n", what.c_str());
  std::exit(1);
}

std::unique_ptr<snapshot_store> open_migrated(const std::string& url) {
  auto store = troupe::persistence::open_store(url);
  if (!store) die(store.error().message);
  if (auto m = (*store)->migrate(); !m) die(m.error().message);
  return std::move(*store);
}

/// Journal appends: 100 commits of 512 deltas (220 bytes each) spread over 64 tasks.
void bench_journal(snapshot_store& store, const char* backend) {
  const auto start = std::chrono::steady_clock::now();
  std::int64_t seq = 0;
  for (int b = 0; b < batches; ++b) {
    write_batch batch;
    for (int i = 0; i < batch_size; ++i, ++seq) {
      batch.journal.push_back({"jt_" + std::to_string(seq % 64), seq, "step_finished",
                               payload(220, i), 1700000000000 + seq});
    }
    if (auto r = store.commit(batch); !r) die(r.error().message);
  }
  row(backend, "journal deltas via commit()", long(batches) * batch_size, seconds_since(start));
}

/// Snapshot upserts: 100 commits of 512 snapshots (1 KiB) over a pool of 4096
/// tasks, each also trimming that task's journal.
void bench_snapshots(snapshot_store& store, const char* backend) {
  const auto start = std::chrono::steady_clock::now();
  for (int b = 0; b < batches; ++b) {
    write_batch batch;
    for (int i = 0; i < batch_size; ++i) {
      troupe::base::task_row t;
      t.id = "st_" + std::to_string((b * batch_size + i) % 4096);
      t.team = "bench";
      t.state = "running";
      t.snapshot = payload(1024, i);
      t.seq = b;
      t.created_ms = 1700000000000;  // a task's creation time never changes
      t.updated_ms = 1700000000000 + b;
      batch.snapshots.push_back(std::move(t));
    }
    if (auto r = store.commit(batch); !r) die(r.error().message);
  }
  row(backend, "snapshots (1 KiB) via commit()", long(batches) * batch_size, seconds_since(start));
}

/// The floor the store is held to: the same rows, one multi-row INSERT of 512
/// rows per transaction into a plain table (no key, no index, no upsert). Each
/// row is a vector of column values; integers travel as text on PostgreSQL and
/// are bound as integers on SQLite (columns marked in `int_cols`).
struct raw_table {
  const char* name;
  const char* sqlite_ddl;
  const char* pg_ddl;
  std::vector<bool> int_cols;
};

/// Journal rows as commit() writes them: (task_id, seq, kind, payload 220 B, ts_ms).
const raw_table raw_journal{"raw_journal",
                            "CREATE TABLE raw_journal (task_id TEXT, seq INTEGER, kind TEXT, "
                            "payload TEXT, ts_ms INTEGER)",
                            "CREATE TABLE raw_journal (task_id TEXT, seq BIGINT, kind TEXT, "
                            "payload TEXT, ts_ms BIGINT)",
                            {false, true, false, false, true}};
/// Task rows as a snapshot writes them: the ten task columns, snapshot 1 KiB.
const raw_table raw_tasks{
    "raw_tasks",
    "CREATE TABLE raw_tasks (id TEXT, team TEXT, agent TEXT, priority INTEGER, state TEXT, "
    "idempotency_key TEXT, snapshot TEXT, seq INTEGER, created_ms INTEGER, updated_ms INTEGER)",
    "CREATE TABLE raw_tasks (id TEXT, team TEXT, agent TEXT, priority INTEGER, state TEXT, "
    "idempotency_key TEXT, snapshot TEXT, seq BIGINT, created_ms BIGINT, updated_ms BIGINT)",
    {false, false, false, true, false, false, false, true, true, true}};

using raw_row = std::vector<std::string>;

raw_row journal_values(int b, int i) {
  const long seq = long(b) * batch_size + i;
  return {"jt_" + std::to_string(seq % 64), std::to_string(seq), "step_finished", payload(220, i),
          std::to_string(1700000000000 + seq)};
}

raw_row task_values(int b, int i) {
  return {"st_" + std::to_string((b * batch_size + i) % 4096), "bench", "", "5", "running", "",
          payload(1024, i), std::to_string(b), std::to_string(1700000000000),
          std::to_string(1700000000000 + b)};
}

void bench_raw_sqlite(const std::string& path, const raw_table& table,
                      raw_row (*values)(int, int), const char* label) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("cannot open " + path);
  sqlite3_exec(db, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, (std::string("DROP TABLE IF EXISTS ") + table.name).c_str(), nullptr, nullptr,
               nullptr);
  sqlite3_exec(db, table.sqlite_ddl, nullptr, nullptr, nullptr);
  const std::size_t cols = table.int_cols.size();
  std::string tuple = "(";
  for (std::size_t c = 0; c < cols; ++c) tuple += c == 0 ? "?" : ",?";
  tuple += ")";
  std::string sql = std::string("INSERT INTO ") + table.name + " VALUES ";
  for (int i = 0; i < batch_size; ++i) sql += (i == 0 ? "" : ",") + tuple;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) die(sqlite3_errmsg(db));
  const auto start = std::chrono::steady_clock::now();
  for (int b = 0; b < batches; ++b) {
    std::vector<raw_row> rows;
    rows.reserve(batch_size);
    for (int i = 0; i < batch_size; ++i) rows.push_back(values(b, i));
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int i = 0; i < batch_size; ++i) {
      for (std::size_t c = 0; c < cols; ++c) {
        const int at = static_cast<int>(std::size_t(i) * cols + c + 1);
        if (table.int_cols[c]) {
          sqlite3_bind_int64(s, at, std::stoll(rows[i][c]));
        } else {
          sqlite3_bind_text(s, at, rows[i][c].c_str(), -1, SQLITE_STATIC);
        }
      }
    }
    if (sqlite3_step(s) != SQLITE_DONE) die(sqlite3_errmsg(db));
    sqlite3_reset(s);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  row("sqlite", label, long(batches) * batch_size, seconds_since(start));
  sqlite3_finalize(s);
  sqlite3_close(db);
}

void bench_raw_pg(const std::string& url, const raw_table& table, raw_row (*values)(int, int),
                  const char* label) {
  try {
    pqxx::connection c{url};
    {
      pqxx::nontransaction n{c};
      n.exec(std::string("DROP TABLE IF EXISTS ") + table.name);
      n.exec(table.pg_ddl);
    }
    const std::size_t cols = table.int_cols.size();
    std::string sql = std::string("INSERT INTO ") + table.name + " VALUES ";
    for (int i = 0; i < batch_size; ++i) {
      sql += i == 0 ? "(" : ",(";
      for (std::size_t col = 0; col < cols; ++col) {
        sql += (col == 0 ? "$" : ",$") + std::to_string(std::size_t(i) * cols + col + 1);
        if (table.int_cols[col]) sql += "::bigint";
      }
      sql += ")";
    }
    c.prepare(std::string("raw_") + table.name, sql);
    const auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < batches; ++b) {
      std::vector<std::string> params;
      params.reserve(cols * batch_size);
      for (int i = 0; i < batch_size; ++i) {
        for (auto& v : values(b, i)) params.push_back(std::move(v));
      }
      pqxx::work w{c};
      w.exec_prepared(std::string("raw_") + table.name,
                      pqxx::prepare::make_dynamic_params(params.begin(), params.end()));
      w.commit();
    }
    row("postgres", label, long(batches) * batch_size, seconds_since(start));
  } catch (const std::exception& e) {
    die(std::string("raw postgres insert: ") + e.what());
  }
}

/// 100,000 running tasks with one journal delta each (plus 10,000 finished
/// ones that recovery skips), then one timed recover().
void bench_recover(snapshot_store& store, const char* backend) {
  constexpr int active = 100000;
  constexpr int total = active + active / 10;
  const std::string snapshot = payload(300, 7);
  for (int start = 0; start < total; start += 5000) {
    write_batch batch;
    for (int i = start; i < start + 5000 && i < total; ++i) {
      troupe::base::task_row t;
      t.id = "rt_" + std::to_string(i);
      t.team = "bench";
      t.state = i < active ? "running" : "succeeded";
      t.snapshot = snapshot;
      t.seq = 1;
      batch.new_tasks.push_back(std::move(t));
      batch.journal.push_back({"rt_" + std::to_string(i), 2, "step_finished", payload(120, i), 1});
    }
    if (auto r = store.commit(batch); !r) die(r.error().message);
  }
  const auto start = std::chrono::steady_clock::now();
  auto rec = store.recover();
  const double secs = seconds_since(start);
  if (!rec) die(rec.error().message);
  // The PostgreSQL database also holds the 4096 running tasks of the snapshot run.
  if (rec->active_tasks.size() < active) die("recover returned too few tasks");
  row(backend, "recover() of >= 100,000 active tasks", long(rec->active_tasks.size()), secs);
}

}  // namespace

int main(int argc, char** argv) {
  std::string pg_url = argc > 1 ? argv[1] : "";
  if (pg_url.empty()) {
    if (const char* env = std::getenv("TROUPE_BENCH_PG")) pg_url = env;
  }
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("troupe-store-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);

  std::printf("batches of %d rows, %d batches per workload\n\n", batch_size, batches);
  std::printf("| %-9s | %-38s | %8s | %8s | %10s |\n", "backend", "workload", "rows", "seconds",
              "rows/s");
  std::printf(
      "|-----------|----------------------------------------|----------|----------|------------|"
      "\n");
  {
    auto store = open_migrated("sqlite:" + (dir / "bench.db").string());
    bench_journal(*store, "sqlite");
    bench_raw_sqlite((dir / "bench.db").string(), raw_journal, journal_values,
                     "raw INSERT of the same journal rows");
    bench_snapshots(*store, "sqlite");
    bench_raw_sqlite((dir / "bench.db").string(), raw_tasks, task_values,
                     "raw INSERT of the same snapshot rows");
  }
  {
    auto store = open_migrated("sqlite:" + (dir / "recover.db").string());
    bench_recover(*store, "sqlite");
  }
  if (!pg_url.empty()) {
    auto store = open_migrated(pg_url);
    bench_journal(*store, "postgres");
    bench_raw_pg(pg_url, raw_journal, journal_values, "raw INSERT of the same journal rows");
    bench_snapshots(*store, "postgres");
    bench_raw_pg(pg_url, raw_tasks, task_values, "raw INSERT of the same snapshot rows");
    bench_recover(*store, "postgres");
  } else {
    std::printf("(postgres skipped: pass a postgresql:// URL or set TROUPE_BENCH_PG)\n");
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return 0;
}
