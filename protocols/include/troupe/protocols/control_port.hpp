#pragma once
/// control_port: the narrow interface between the network front (HTTP and
/// WebSocket sessions on Beast) and the runtime. Sessions decode a request into
/// an op name plus JSON arguments and hand it over with a reply callback; the
/// bridge in runtime/host turns it into actor messages. No CAF here.
///
/// Threading: call() may be invoked from any I/O thread and must not block. The
/// reply callback may be invoked from any thread, exactly once; sessions post it
/// back onto their own strand.
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "troupe/base/result.hpp"
#include "troupe/config/config.hpp"

namespace troupe::protocols {

/// Who is calling: the token's name and role ("anonymous"/admin when the daemon
/// runs without tokens on loopback).
struct principal {
  std::string name = "anonymous";
  config::role granted = config::role::admin;
};

using reply_fn = std::function<void(base::result<nlohmann::json>)>;

/// An event as it goes out on the control plane: {"event","seq","ts","data"}
/// without seq (each connection numbers its own).
struct event {
  std::string name;       ///< "task.update", "agent.status", ...
  std::string topic;      ///< "tasks", "agents", "decisions", "llm", "system"
  std::string team, agent, task;  ///< for subscription filters; may be empty
  std::int64_t ts_ms = 0;
  nlohmann::json data;
};

/// Receives events until the returned handle is destroyed.
using event_fn = std::function<void(const std::shared_ptr<const event>&)>;

class control_port {
 public:
  virtual ~control_port() = default;
  /// Ops: "submit", "task", "tasks", "cancel", "decide", "decisions", "agents",
  /// "teams", "pause", "resume", "metrics", "audit", "ready", "reload", "shutdown".
  /// Unknown ops reply errc::bad_request.
  virtual void call(const principal& who, const std::string& op, nlohmann::json args,
                    reply_fn reply) = 0;
  /// Registers an event listener (called on a runtime thread; must not block).
  /// The listener stays registered while the returned token is alive.
  virtual std::shared_ptr<void> listen(event_fn fn) = 0;
  /// Prometheus text exposition of the runtime's metrics (may be empty).
  virtual std::string metrics_text() = 0;
};

}  // namespace troupe::protocols
