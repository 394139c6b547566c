#pragma once
/// The composition root: turns a validated config into a running actor system
/// (store actor, one team actor per team with its agents) and exposes it as a
/// protocols::control_port. The daemon puts the control server in front of it;
/// tests and benchmarks use it in-process.
#include <memory>
#include <string>

#include "troupe/agents/event.hpp"
#include "troupe/base/result.hpp"
#include "troupe/base/store_port.hpp"
#include "troupe/config/config.hpp"
#include "troupe/protocols/control_port.hpp"

namespace troupe::host {

struct runtime_options {
  bool persistent = true;        ///< false: no store at all (benchmarks of the scheduler)
  std::string store_override;    ///< replaces cfg.store when set
  std::int64_t team_tick_ms = 200;
};

/// What start() found in the store.
struct startup_report {
  std::string store;       ///< describe() of the store, no secrets
  int schema_version = 0;
  std::size_t recovered_tasks = 0;
  std::size_t pending_decisions = 0;
  double recovery_seconds = 0;
};

class runtime : public protocols::control_port {
 public:
  runtime(config::config cfg, runtime_options opts = {});
  ~runtime() override;
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Opens and migrates the store, recovers unfinished work, spawns the actors.
  /// Every problem is an error naming what failed (the process exits on it).
  [[nodiscard]] base::result<startup_report> start();
  /// Stops taking tasks, waits up to `grace_ms` for in-flight calls to finish and
  /// commit, then stops every actor. Idempotent.
  void stop(std::int64_t grace_ms = 10000);

  // control_port
  void call(const protocols::principal& who, const std::string& op, nlohmann::json args,
            protocols::reply_fn reply) override;
  std::shared_ptr<void> listen(protocols::event_fn fn) override;
  std::string metrics_text() override;

  const config::config& cfg() const;
  std::shared_ptr<agents::event_bus> bus() const;
  /// Test hook, not reachable from the control plane: makes the current team actor
  /// `team` throw (target ""), or one of its decision actors ("decision:ID"), task
  /// actors ("task:ID") or an LLM call actor of an agent ("call:AGENT").
  /// False when the team has no running incarnation.
  bool inject_fault_for_tests(const std::string& team, const std::string& target = {});
  /// Called when an admin asks for shutdown over the control plane.
  void on_shutdown_request(std::function<void()> fn);

  /// Where reload() reads the next config; default: the file the running config
  /// was loaded from (config::source_path). The daemon applies its command-line
  /// overrides here. Set before start().
  void set_config_source(std::function<config::load_result()> fn);
  /// Hot reload (the admin `reload` op and SIGHUP): reads and validates the next
  /// config and applies the difference without a restart. Replies with what
  /// changed once every team took its update; refuses (changing nothing) a config
  /// with problems (bad_request, every problem listed) or one that changes keys
  /// needing a restart (conflict, naming them). Audited under `who`; announced
  /// with a `system.reload` event. One reload at a time (conflict otherwise).
  void reload(const protocols::principal& who, protocols::reply_fn reply);

 private:
  void dispatch(const protocols::principal& who, const std::string& op, nlohmann::json args,
                protocols::reply_fn reply);
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::host
