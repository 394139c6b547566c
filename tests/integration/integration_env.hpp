#pragma once
/// Shared helpers of the integration tests: where the binary is, scratch
/// directories, a keep-alive HTTP API client for the daemon, and a read-only
/// view of a store's tables (the durable ledger the crash tests audit).
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "troupe/protocols/client/http_client.hpp"

namespace troupe::test {

/// Path of the `troupe` binary built with the tests.
std::string troupe_exe();

/// A fresh directory under $TMPDIR (or /tmp); removed on destruction unless
/// `keep()` was called (tests keep it when they fail, for the daemon logs).
class scratch_dir {
 public:
  explicit scratch_dir(const std::string& prefix);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

/// Writes `text` to `path` (truncating); false on failure.
bool write_text(const std::string& path, const std::string& text);

/// What became of one submit.
enum class submit_outcome {
  acknowledged,  ///< 202 with a task id: the task is committed
  refused,       ///< an HTTP error status (e.g. 503 unavailable)
  in_doubt,      ///< no reply (the connection died): the task may or may not exist
};

/// The reply to a submit.
struct submit_reply {
  submit_outcome outcome = submit_outcome::in_doubt;
  int status = 0;
  nlohmann::json body;  ///< parsed reply body (null when absent or not JSON)
  std::string id;       ///< task id when acknowledged
};

/// A keep-alive connection to the daemon's HTTP API that reconnects on the
/// next call after a failure. One per thread.
class api_client {
 public:
  explicit api_client(std::uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// POST /v1/tasks.
  submit_reply submit(const std::string& team, const std::string& input,
                      const std::string& idempotency_key = {});
  /// GET /v1/tasks/{id}: the task JSON, or nullopt on transport error or non-200.
  std::optional<nlohmann::json> task(const std::string& id);
  /// Any request; transport errors come back as an error result.
  base::result<protocols::client::http_reply> call(protocols::client::method m,
                                                   const std::string& target,
                                                   const std::string& body = {});

 private:
  std::uint16_t port_;
  std::chrono::milliseconds timeout_;
  std::optional<protocols::client::http_connection> conn_;
};

/// One task row as stored (tasks table).
struct stored_task {
  std::string state;
  std::string input;
  std::string idempotency_key;
};

/// A read-only view of the durable tables after (or during) a run.
struct store_view {
  std::map<std::string, stored_task> tasks;  ///< by task id
  /// Cost ledger rows per (task id, step id) with outcome "ok": completed LLM calls.
  std::map<std::pair<std::string, std::string>, int> ok_calls;
  int cost_rows = 0;  ///< all cost rows, whatever the outcome
};

/// Reads the tasks and costs tables of `store_url` (sqlite:PATH or postgresql://...).
/// Returns nullopt with the reason in `why` on failure.
std::optional<store_view> read_store(const std::string& store_url, std::string& why);

/// Polls `pred` every 20 ms until it holds (true) or `timeout` passes (false):
/// waiting on a condition with a deadline, never a bare sleep.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace troupe::test
