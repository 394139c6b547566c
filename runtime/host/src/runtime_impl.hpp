#pragma once
// Private: the runtime's state, shared by runtime.cpp (start, stop, ops),
// runtime_teams.cpp (team specs from config) and runtime_reload.cpp (hot reload).
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/actors/supervision/team_directory.hpp"
#include "troupe/actors/team_actor.hpp"
#include "troupe/base/clock.hpp"
#include "troupe/host/runtime.hpp"
#include "troupe/protocols/llm/llm_pool.hpp"

namespace troupe::host {
namespace detail {

/// Collects the replies of n parallel requests and calls `done` once with all of them.
class fan_in {
 public:
  using results = std::vector<base::result<nlohmann::json>>;
  fan_in(std::size_t n, std::function<void(results)> done) : left_(n), done_(std::move(done)) {
    all_.reserve(n);
    if (n == 0) done_({});
  }
  protocols::reply_fn slot(const std::shared_ptr<fan_in>& self) {
    return [self](base::result<nlohmann::json> r) {
      std::function<void(results)> done;
      results all;
      {
        std::lock_guard guard{self->mutex_};
        self->all_.push_back(std::move(r));
        if (--self->left_ != 0) return;
        done = std::move(self->done_);
        all = std::move(self->all_);
      }
      done(std::move(all));
    };
  }

 private:
  std::mutex mutex_;
  std::size_t left_;
  std::function<void(results)> done_;
  results all_;
};

/// Which team answers what. Immutable once published: the I/O threads take
/// a snapshot per request while a reload builds and publishes the next table.
/// The actor of a team is looked up in the team directory (it changes when the
/// root supervisor restarts the team).
struct routes {
  std::vector<std::string> team_names;  ///< every running team, config order
  std::unordered_map<std::string, std::shared_ptr<actors::team_stats>> stats;
  std::unordered_map<std::string, std::string> agent_team;  ///< agent -> first team listing it
  std::set<std::string> retiring;  ///< removed from the config, finishing their tasks: no submits
};

}  // namespace detail

struct runtime::impl {
  /// The running config, replaced whole by a reload. Agents point into it (aliasing
  /// shared_ptrs), so an agent's settings are never copied and an older config
  /// lives on only while agents configured from it do.
  std::shared_ptr<const config::config> cfg;
  runtime_options opts;
  std::shared_ptr<agents::event_bus> bus = std::make_shared<agents::event_bus>();
  std::shared_ptr<base::id_generator> ids = std::make_shared<base::id_generator>("t");
  std::shared_ptr<actors::store_stats> store_stats = std::make_shared<actors::store_stats>();
  std::shared_ptr<base::snapshot_store> store;
  std::shared_ptr<protocols::llm::llm_pool> llm;  ///< network providers; null when all are scripted
  std::unique_ptr<caf::actor_system_config> sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor store_actor;
  caf::actor root;  ///< root supervisor, parent of every team actor
  /// Current incarnation of each team (the root updates it on restarts).
  std::shared_ptr<actors::supervision::team_directory> directory =
      std::make_shared<actors::supervision::team_directory>();
  std::shared_ptr<const detail::routes> table = std::make_shared<detail::routes>();  ///< under `mutex`
  std::function<void()> shutdown_fn;
  std::function<config::load_result()> config_source;  ///< what reload() reads
  std::mutex mutex;
  std::mutex reload_mutex;  ///< one reload at a time (held from parse to the teams' answers)
  bool reloading = false;   ///< under reload_mutex
  bool started = false;
  bool stopped = false;

  /// Sends to the current incarnation of a team; a team being restarted answers
  /// `unavailable` at once instead of the request being lost.
  template <caf::message_priority P = caf::message_priority::normal, class... Ts>
  void send_team(const std::string& name, const protocols::reply_fn& reply, Ts&&... xs) {
    if (auto h = directory->get(name)) return caf::anon_send<P>(h, std::forward<Ts>(xs)..., reply);
    reply(base::fail(base::errc::unavailable, "team '" + name + "' is restarting; retry in a moment"));
  }

  std::shared_ptr<const detail::routes> routes() {
    std::lock_guard guard{mutex};
    return table;
  }

  /// Audits a command answered elsewhere; `outcome` is "ok", the error code, or
  /// "" when unknown. Secrets in `detail` are masked (actors::audit_args).
  void audit(const protocols::principal& who, const std::string& action, const std::string& target,
             const nlohmann::json& detail, std::string outcome = "") {
    if (!store_actor) return;
    auto batch = std::make_shared<base::write_batch>();
    batch->audit.push_back(
        {base::now_ms(), who.name, action, target, actors::audit_args(detail), std::move(outcome)});
    caf::anon_send(store_actor, actors::write_atom::value, batch);
  }

  /// `reply` wrapped so that the command is audited with its outcome when it is
  /// answered (see actors::audited); `target` "" takes the reply's "id".
  protocols::reply_fn audited(const protocols::principal& who, std::string action, std::string target,
                              const nlohmann::json& args, protocols::reply_fn reply) {
    return actors::audited(store_actor, who.name, std::move(action), std::move(target), actors::audit_args(args),
                           std::move(reply));
  }

  /// The team spec of `team` in `from`.
  base::result<actors::team_spec> team_spec_of(const std::shared_ptr<const config::config>& from,
                                               const config::team& team);
  /// The resolved agents of `team`, pointing into `from` (no env yet).
  base::result<std::vector<actors::agent_spec>> agent_specs_of(const std::shared_ptr<const config::config>& from,
                                                               const config::team& team);
};

}  // namespace troupe::host
