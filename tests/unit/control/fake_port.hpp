#pragma once
// A control_port fake for the control-plane tests: records every call, answers
// with canned results (or a test-supplied handler that may keep the reply for
// later), and lets the test emit events to whatever listens.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "troupe/protocols/control_port.hpp"

namespace troupe::test {

using nlohmann::json;

class fake_port : public protocols::control_port {
 public:
  using handler_fn = std::function<bool(const protocols::principal&, const std::string& op,
                                        const json& args, protocols::reply_fn& reply)>;

  struct call_record {
    protocols::principal who;
    std::string op;
    json args;
  };

  /// Handler returns true when it took care of the reply (maybe keeping it).
  void set_handler(handler_fn h) {
    std::lock_guard lock(mu_);
    handler_ = std::move(h);
  }

  void call(const protocols::principal& who, const std::string& op, json args,
            protocols::reply_fn reply) override {
    handler_fn h;
    {
      std::lock_guard lock(mu_);
      calls_.push_back({who, op, args});
      h = handler_;
    }
    cv_.notify_all();
    if (h && h(who, op, args, reply)) return;
    reply(default_reply(who, op, args));
  }

  static base::result<json> default_reply(const protocols::principal& who, const std::string& op,
                                          const json& args) {
    if (op == "ready") return json{{"ready", true}};
    if (op == "submit")
      return json{{"id", "task_1"}, {"state", "queued"}, {"input", args.value("input", "")}};
    if (op == "task") {
      if (args.value("id", "") == "missing") return base::fail(base::errc::not_found, "no task 'missing'");
      return json{{"id", args.value("id", "")}, {"state", "running"}, {"steps", json::array()}};
    }
    if (op == "tasks") return json{{"tasks", json::array({json{{"id", "task_1"}, {"state", "running"}}})}};
    if (op == "agents") return json{{"agents", json::array({json{{"agent", "researcher"}, {"state", "idle"}}})}};
    if (op == "decisions") return json{{"decisions", json::array()}};
    return json{{"op", op}, {"args", args}, {"principal", who.name}};
  }

  std::shared_ptr<void> listen(protocols::event_fn fn) override {
    std::lock_guard lock(mu_);
    const auto id = next_listener_++;
    listeners_[id] = std::move(fn);
    return std::shared_ptr<void>(static_cast<void*>(this), [this, id](void*) {
      std::lock_guard inner(mu_);
      listeners_.erase(id);
    });
  }

  std::string metrics_text() override { return "troupe_fake_up 1\n"; }

  /// Delivers an event to every listener, on the calling thread.
  void emit(const protocols::event& ev) {
    auto shared = std::make_shared<const protocols::event>(ev);
    std::vector<protocols::event_fn> fns;
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, fn] : listeners_) fns.push_back(fn);
    }
    for (const auto& fn : fns) fn(shared);
  }

  std::size_t listener_count() {
    std::lock_guard lock(mu_);
    return listeners_.size();
  }

  std::vector<call_record> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

  /// The last call of `op`, waiting up to `timeout` for it.
  std::optional<call_record> wait_call(const std::string& op,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock lock(mu_);
    std::optional<call_record> found;
    cv_.wait_for(lock, timeout, [&] {
      for (auto it = calls_.rbegin(); it != calls_.rend(); ++it)
        if (it->op == op) {
          found = *it;
          return true;
        }
      return false;
    });
    return found;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  handler_fn handler_;
  std::vector<call_record> calls_;
  std::map<int, protocols::event_fn> listeners_;
  int next_listener_ = 1;
};

/// Waits until `pred` holds, checking often, failing after `timeout`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // re-check the condition
  }
  return true;
}

inline protocols::event make_event(std::string name, std::string topic, json data,
                                   std::string task = {}, std::string team = {}) {
  protocols::event ev;
  ev.name = std::move(name);
  ev.topic = std::move(topic);
  ev.data = std::move(data);
  ev.task = std::move(task);
  ev.team = std::move(team);
  ev.ts_ms = 1767225600000;
  return ev;
}

}  // namespace troupe::test
