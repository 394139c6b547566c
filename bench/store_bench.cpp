// store_bench: write throughput of the snapshot stores through commit() with
// batches of 512, next to a raw batched multi-row INSERT into a plain table of
// the same database, and the time recover() takes for 100,000 active tasks.
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
      t.created_ms = t.updated_ms = 1700000000000 + b;
      batch.snapshots.push_back(std::move(t));
    }
    if (auto r = store.commit(batch); !r) die(r.error().message);
  }
  row(backend, "snapshots (1 KiB) via commit()", long(batches) * batch_size, seconds_since(start));
}

/// The floor: one multi-row INSERT of 512 rows (220 bytes) per transaction.
void bench_raw_sqlite(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("cannot open " + path);
  sqlite3_exec(db, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, "CREATE TABLE raw_rows (k TEXT, seq INTEGER, payload TEXT)", nullptr, nullptr,
               nullptr);
  std::string sql = "INSERT INTO raw_rows (k, seq, payload) VALUES ";
  for (int i = 0; i < batch_size; ++i) sql += i == 0 ? "(?,?,?)" : ",(?,?,?)";
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) die(sqlite3_errmsg(db));
  std::vector<std::string> keys, payloads;
  for (int i = 0; i < batch_size; ++i) {
    keys.push_back("rt_" + std::to_string(i % 64));
    payloads.push_back(payload(220, i));
  }
  const auto start = std::chrono::steady_clock::now();
  for (int b = 0; b < batches; ++b) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (int i = 0; i < batch_size; ++i) {
      sqlite3_bind_text(s, 3 * i + 1, keys[i].c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_int64(s, 3 * i + 2, b * batch_size + i);
      sqlite3_bind_text(s, 3 * i + 3, payloads[i].c_str(), -1, SQLITE_STATIC);
    }
    if (sqlite3_step(s) != SQLITE_DONE) die(sqlite3_errmsg(db));
    sqlite3_reset(s);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  row("sqlite", "raw multi-row INSERT (plain table)", long(batches) * batch_size,
      seconds_since(start));
  sqlite3_finalize(s);
  sqlite3_close(db);
}

void bench_raw_pg(const std::string& url) {
  try {
    pqxx::connection c{url};
    {
      pqxx::nontransaction n{c};
      n.exec("DROP TABLE IF EXISTS raw_rows");
      n.exec("CREATE TABLE raw_rows (k TEXT, seq BIGINT, payload TEXT)");
    }
    std::string sql = "INSERT INTO raw_rows (k, seq, payload) VALUES ";
    for (int i = 0; i < batch_size; ++i) {
      sql += (i == 0 ? "($" : ",($") + std::to_string(3 * i + 1) + ",$" +
             std::to_string(3 * i + 2) + "::bigint,$" + std::to_string(3 * i + 3) + ")";
    }
    c.prepare("raw_insert", sql);
    const auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < batches; ++b) {
      std::vector<std::string> params;
      params.reserve(3 * batch_size);
      for (int i = 0; i < batch_size; ++i) {
        params.push_back("rt_" + std::to_string(i % 64));
        params.push_back(std::to_string(b * batch_size + i));
        params.push_back(payload(220, i));
      }
      pqxx::work w{c};
      w.exec_prepared("raw_insert",
                      pqxx::prepare::make_dynamic_params(params.begin(), params.end()));
      w.commit();
    }
    row("postgres", "raw multi-row INSERT (plain table)", long(batches) * batch_size,
        seconds_since(start));
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
    bench_snapshots(*store, "sqlite");
    bench_raw_sqlite((dir / "bench.db").string());
  }
  {
    auto store = open_migrated("sqlite:" + (dir / "recover.db").string());
    bench_recover(*store, "sqlite");
  }
  if (!pg_url.empty()) {
    auto store = open_migrated(pg_url);
    bench_journal(*store, "postgres");
    bench_snapshots(*store, "postgres");
    bench_raw_pg(pg_url);
    bench_recover(*store, "postgres");
  } else {
    std::printf("(postgres skipped: pass a postgresql:// URL or set TROUPE_BENCH_PG)\n");
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  return 0;
}
