#pragma once
/// Runtime events (DESIGN §5) and the in-process bus that carries them from the
/// actors to the control plane. Thread-safe; publishing with no listener costs
/// one atomic load, so emitters check active() before building an event.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::agents {

struct event {
  std::string name;   ///< "task.update", "agent.status", "decision.pending", ...
  std::string topic;  ///< "tasks", "agents", "decisions", "llm", "system"
  std::string team, agent, task;
  std::int64_t ts_ms = 0;
  nlohmann::json data;
};

using event_ptr = std::shared_ptr<const event>;

/// A new event stamped now; the caller fills `data` and publishes it.
std::shared_ptr<event> make_event(std::string name, std::string topic, std::string team, std::string agent,
                                  std::string task);

class event_bus {
 public:
  using listener = std::function<void(const event_ptr&)>;
  /// Registers a listener; it stays registered while the returned token lives.
  /// Listeners run on the publisher's thread and must not block. Dropping the
  /// token waits for calls of that listener in progress on other threads, so
  /// once it returns the listener's captures may be destroyed.
  std::shared_ptr<void> subscribe(listener fn);
  bool active() const noexcept { return count_.load(std::memory_order_relaxed) > 0; }
  void publish(const event_ptr& ev);
  std::uint64_t published() const noexcept { return published_.load(std::memory_order_relaxed); }

 private:
  struct slot {
    listener fn;
    std::shared_mutex calls;  ///< shared while calling fn; exclusive to retire it
    std::atomic<bool> retired{false};
  };
  void remove(slot* s);
  mutable std::mutex mutex_;
  std::shared_ptr<std::vector<std::shared_ptr<slot>>> listeners_ =
      std::make_shared<std::vector<std::shared_ptr<slot>>>();
  std::atomic<int> count_{0};
  std::atomic<std::uint64_t> published_{0};
};

}  // namespace troupe::agents
