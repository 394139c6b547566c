#pragma once
// In-process runtime fixture: a real actor system driven through the control
// port, with waits on events (never sleeps).
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include <gtest/gtest.h>

#include "troupe/host/runtime.hpp"

namespace troupe::test {

/// Synchronous call through the control port (waits for the reply with a deadline).
base::result<nlohmann::json> call(host::runtime& rt, const std::string& op, nlohmann::json args,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Records events from the bus; waits for conditions on them.
class event_log {
 public:
  explicit event_log(host::runtime& rt);
  /// Waits until task `id` ended; returns its final task.update data.
  nlohmann::json wait_terminal(const std::string& id, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  /// Waits until `n` tasks ended in total.
  bool wait_terminal_count(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Waits for the first event named `name` matching pred.
  nlohmann::json wait_event(const std::string& name, const std::function<bool(const nlohmann::json&)>& pred,
                            std::chrono::milliseconds timeout = std::chrono::seconds(20));
  std::vector<std::string> finish_order();
  std::size_t count(const std::string& name, const std::function<bool(const nlohmann::json&)>& pred);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, nlohmann::json>> events_;
  std::map<std::string, nlohmann::json> terminal_;
  std::vector<std::string> order_;
  std::shared_ptr<void> token_;
};

/// Loads a config from JSON text; fails the test on problems.
config::config load(const std::string& text);

}  // namespace troupe::test
