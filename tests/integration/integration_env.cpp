#include "integration_env.hpp"

#include "daemon_process.hpp"

#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <stdexcept>

namespace troupe::test {

namespace client = protocols::client;
using nlohmann::json;

std::string troupe_exe() { return TROUPE_EXE; }

std::optional<std::uint16_t> start_troupe(daemon_process& d, const std::string& config_path,
                                          const std::string& dir, std::string& why) {
  if (!d.start(troupe_exe(), {"run", config_path, "--listen", "127.0.0.1:0", "--store", "sqlite:" + dir + "/troupe.db"},
               dir + "/daemon.log", why))
    return std::nullopt;
  auto port = d.wait_until_ready(std::chrono::seconds(120));
  if (!port) why = "not ready within 120 s:\n" + d.output();
  return port;
}

scratch_dir::scratch_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = tmpl;
}

scratch_dir::~scratch_dir() {
  if (keep_) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out.flush());
}

api_client::api_client(std::uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout) {}

base::result<client::http_reply> api_client::call(client::method m, const std::string& target,
                                                  const std::string& body) {
  if (!conn_ || !conn_->connected()) {
    conn_.emplace(timeout_);
    if (auto ok = conn_->connect("127.0.0.1", port_); !ok) {
      conn_.reset();
      return tl::unexpected(ok.error());
    }
  }
  client::header_list headers;
  if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
  auto r = conn_->request(m, target, body, headers);
  // A failed request leaves the connection in an unknown state: start afresh next time.
  if (!r || !r->keep_alive) conn_.reset();
  return r;
}

submit_reply api_client::submit(const std::string& team, const std::string& input,
                                const std::string& idempotency_key) {
  json req{{"team", team}, {"input", input}};
  if (!idempotency_key.empty()) req["idempotency_key"] = idempotency_key;
  submit_reply out;
  auto r = call(client::method::post, "/v1/tasks", req.dump());
  if (!r) return out;  // in doubt: sent (maybe), never answered
  out.status = r->status;
  out.body = json::parse(r->body, nullptr, false);
  if (out.body.is_discarded()) out.body = nullptr;
  if (r->status == 202 && out.body.is_object() && out.body.contains("id")) {
    out.outcome = submit_outcome::acknowledged;
    out.id = out.body["id"].get<std::string>();
  } else {
    out.outcome = submit_outcome::refused;
  }
  return out;
}

std::optional<json> api_client::task(const std::string& id) {
  auto r = call(client::method::get, "/v1/tasks/" + id);
  if (!r || r->status != 200) return std::nullopt;
  auto doc = json::parse(r->body, nullptr, false);
  if (doc.is_discarded()) return std::nullopt;
  return doc;
}

namespace {

std::optional<store_view> read_sqlite(const std::string& path, std::string& why) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    why = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return std::nullopt;
  }
  sqlite3_busy_timeout(db, 5000);
  store_view view;
  auto text = [](sqlite3_stmt* s, int col) {
    auto p = sqlite3_column_text(s, col);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  };
  auto query = [&](const char* sql, auto&& row) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
      why = std::string("sqlite: ") + sql + ": " + sqlite3_errmsg(db);
      return false;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
      why = std::string("sqlite: ") + sql + ": " + sqlite3_errmsg(db);
      return false;
    }
    return true;
  };
  bool ok = query("SELECT id, state, snapshot, idempotency_key FROM tasks", [&](sqlite3_stmt* s) {
    auto snap = json::parse(text(s, 2), nullptr, false);
    view.tasks[text(s, 0)] =
        stored_task{text(s, 1), snap.is_object() ? snap.value("input", "") : "", text(s, 3)};
  });
  ok = ok && query("SELECT task_id, step_id, outcome FROM costs", [&](sqlite3_stmt* s) {
         ++view.cost_rows;
         if (text(s, 2) == "ok") ++view.ok_calls[{text(s, 0), text(s, 1)}];
       });
  sqlite3_close(db);
  if (!ok) return std::nullopt;
  return view;
}

std::optional<store_view> read_postgres(const std::string& url, std::string& why) {
  try {
    pqxx::connection conn{url};
    pqxx::read_transaction tx{conn};
    store_view view;
    for (const auto& row : tx.exec("SELECT id, state, snapshot, idempotency_key FROM tasks")) {
      auto snap = json::parse(row[2].c_str(), nullptr, false);
      view.tasks[row[0].c_str()] = stored_task{
          row[1].c_str(), snap.is_object() ? snap.value("input", "") : "", row[3].c_str()};
    }
    for (const auto& row : tx.exec("SELECT task_id, step_id, outcome FROM costs")) {
      ++view.cost_rows;
      if (std::string(row[2].c_str()) == "ok") ++view.ok_calls[{row[0].c_str(), row[1].c_str()}];
    }
    return view;
  } catch (const std::exception& e) {
    why = std::string("postgres: ") + e.what();
    return std::nullopt;
  }
}

}  // namespace

std::optional<store_view> read_store(const std::string& store_url, std::string& why) {
  if (store_url.rfind("sqlite:", 0) == 0) {
    auto path = store_url.substr(7);
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    return read_sqlite(path, why);
  }
  return read_postgres(store_url, why);
}

}  // namespace troupe::test
