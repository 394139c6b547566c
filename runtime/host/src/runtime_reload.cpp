// Hot reload: read and validate the next config, refuse what needs a restart,
// then apply the difference without stopping anything:
//   new teams start; removed teams take no new submits, finish their tasks and
//   stop; changed teams and agents take the new settings for new work (the team
//   actor keeps queued and running tasks, see actors/src/team_reload.cpp).
// Nothing is applied unless the whole config is valid and restart-free.
#include <algorithm>
#include <tuple>

#include <spdlog/spdlog.h>

#include "runtime_impl.hpp"

#include "troupe/actors/supervision/root_supervisor.hpp"

namespace troupe::host {
namespace {

using nlohmann::json;
using protocols::reply_fn;

/// A reply that is answered with an error if the message carrying it is dropped
/// (its actor ended first), so a reload never waits forever.
reply_fn guarded(reply_fn fn, std::string who) {
  struct guard {
    reply_fn fn;
    std::string who;
    std::atomic<bool> done{false};
    ~guard() {
      if (!done.exchange(true)) fn(base::fail(base::errc::internal, who + " ended before answering"));
    }
  };
  auto g = std::make_shared<guard>();
  g->fn = std::move(fn);
  g->who = std::move(who);
  return [g](base::result<json> r) {
    if (!g->done.exchange(true)) g->fn(std::move(r));
  };
}

template <class T>
void note(std::vector<std::string>& out, const T& a, const T& b, const char* key) {
  if (!(a == b)) out.emplace_back(key);
}

/// Settings of a team that differ (membership is reported per agent).
std::vector<std::string> team_changes(const config::team& a, const config::team& b) {
  std::vector<std::string> out;
  note(out, a.budget_usd, b.budget_usd, "budget_usd");
  note(out, a.max_queued, b.max_queued, "max_queued");
  note(out, a.max_attempts, b.max_attempts, "max_attempts");
  note(out, a.backoff_ms, b.backoff_ms, "backoff_ms");
  note(out, a.backoff_max_ms, b.backoff_max_ms, "backoff_max_ms");
  note(out, a.stall_ms, b.stall_ms, "stall_ms");
  note(out, a.aging_ms, b.aging_ms, "aging_ms");
  note(out, a.sup, b.sup, "supervision");
  note(out, a.limits, b.limits, "limits");
  note(out, a.workflow, b.workflow, "workflow");
  return out;
}

/// Settings of an agent that differ, including its model's and provider's.
std::vector<std::string> agent_changes(const config::config& ca, const config::config& cb, const config::agent& a,
                                       const config::agent& b) {
  std::vector<std::string> out;
  note(out, a.model, b.model, "model");
  note(out, a.system, b.system, "system");
  note(out, a.capabilities, b.capabilities, "capabilities");
  note(out, a.max_concurrent, b.max_concurrent, "max_concurrent");
  note(out, a.budget_usd, b.budget_usd, "budget_usd");
  const auto* ma = ca.find_model(a.model);
  const auto* mb = cb.find_model(b.model);
  if (ma && mb) {
    if (a.model == b.model && !(*ma == *mb)) out.emplace_back("model settings");
    const auto* pa = ca.find_provider(ma->provider);
    const auto* pb = cb.find_provider(mb->provider);
    if (pa && pb && !(*pa == *pb)) out.emplace_back("provider settings");
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

void runtime::reload(const protocols::principal& who, reply_fn reply) {
  auto& d = *impl_;
  if (!d.started || d.stopped) return reply(base::fail(base::errc::unavailable, "the runtime is not running"));
  {
    std::lock_guard guard{d.reload_mutex};
    if (d.reloading) return reply(base::fail(base::errc::conflict, "a reload is already in progress; try again"));
    d.reloading = true;
  }
  // Every outcome is logged, audited and answered exactly once, and ends the reload.
  auto finish = [&d, who, reply](base::result<json> r, json detail) {
    d.audit(who, "reload", "config", detail, r ? "ok" : std::string(base::to_string(r.error().code)));
    if (r) {
      spdlog::info("reload applied by={} changes={}", who.name, r->dump());
      if (d.bus->active()) {
        auto ev = agents::make_event("system.reload", "system", {}, {}, {});
        ev->data = *r;
        ev->data["by"] = who.name;
        d.bus->publish(ev);
      }
    } else {
      spdlog::error("reload refused by={}: {}", who.name, r.error().message);
    }
    {
      std::lock_guard guard{d.reload_mutex};
      d.reloading = false;
    }
    reply(std::move(r));
  };

  auto loaded = d.config_source();
  if (!loaded.cfg) {
    auto problems = json::array();
    std::string text;
    for (const auto& p : loaded.problems) {
      spdlog::error("reload rejected: {}", config::to_string(p));
      problems.push_back(config::to_string(p));
      text += "\n" + config::to_string(p);
    }
    return finish(base::fail(base::errc::bad_request, "the new config has " + std::to_string(loaded.problems.size()) +
                                                          " problem(s); nothing was applied and the running config stays:" +
                                                          text),
                  json{{"outcome", "rejected"}, {"problems", problems}});
  }
  const auto next_ptr = std::make_shared<const config::config>(std::move(*loaded.cfg));
  const auto& next = *next_ptr;
  const auto running_ptr = d.cfg;  // only a reload replaces it, and reloads are serialised
  const auto& running = *running_ptr;
  if (auto keys = config::restart_needed(running, next); !keys.empty())
    return finish(base::fail(base::errc::conflict, "the new config changes settings that need a restart: " + joined(keys) +
                                                       "; nothing was applied (restart the daemon to apply them)"),
                  json{{"outcome", "refused"}, {"restart_needed", keys}});

  // What changed, and the updates that apply it.
  json changes{{"teams_added", json::array()}, {"teams_removed", json::array()}, {"teams_changed", json::array()}};
  if (running.rt.snapshot_every != next.rt.snapshot_every) changes["runtime"] = json::array({"snapshot_every"});
  struct pending_update {
    std::string team;
    actors::team_update_ptr update;
  };
  std::vector<pending_update> updates;
  std::vector<actors::team_spec> new_teams;
  const auto current = d.routes();
  for (const auto& team : next.teams) {
    if (!current->stats.count(team.name)) {
      auto spec = d.team_spec_of(next_ptr, team);
      if (!spec) return finish(base::fail(spec.error()), json{{"outcome", "failed"}, {"error", spec.error().message}});
      changes["teams_added"].push_back(team.name);
      new_teams.push_back(std::move(*spec));
      continue;
    }
    const auto* before = running.find_team(team.name);
    json entry{{"team", team.name}};
    std::vector<std::string> settings;
    if (!before) {
      settings.emplace_back("re-added while retiring");
    } else {
      settings = team_changes(*before, team);
      auto added = json::array(), removed = json::array(), changed = json::array();
      for (const auto& name : team.agents) {
        auto was = std::find(before->agents.begin(), before->agents.end(), name) != before->agents.end();
        if (!was) {
          added.push_back(name);
          continue;
        }
        auto what = agent_changes(running, next, *running.find_agent(name), *next.find_agent(name));
        if (!what.empty()) changed.push_back(json{{"agent", name}, {"settings", what}});
      }
      for (const auto& name : before->agents)
        if (std::find(team.agents.begin(), team.agents.end(), name) == team.agents.end()) removed.push_back(name);
      if (!added.empty()) entry["agents_added"] = added;
      if (!removed.empty()) entry["agents_removed"] = removed;
      if (!changed.empty()) entry["agents_changed"] = changed;
    }
    if (!settings.empty()) entry["settings"] = settings;
    if (entry.size() == 1 && !changes.contains("runtime")) continue;  // nothing to tell this team
    auto agents = d.agent_specs_of(next_ptr, team);
    if (!agents) return finish(base::fail(agents.error()), json{{"outcome", "failed"}, {"error", agents.error().message}});
    auto u = std::make_shared<actors::team_update>();
    u->team = team;
    u->agents = std::move(*agents);
    u->snapshot_every = next.rt.snapshot_every;
    updates.push_back({team.name, std::move(u)});
    if (entry.size() > 1) changes["teams_changed"].push_back(std::move(entry));
  }
  std::vector<std::string> retire;
  for (const auto& name : current->team_names)
    if (!next.find_team(name) && !current->retiring.count(name)) retire.push_back(name);
  for (const auto& name : retire) changes["teams_removed"].push_back(name);

  // Publish the new routing table: submits go to the new set of teams from now on.
  std::vector<std::string> targets;
  std::vector<std::pair<std::string, std::shared_ptr<actors::team_stats>>> spawned;
  for (auto& spec : new_teams) {
    // Spawned here so that the directory knows the team before the new table is
    // published; then handed to the root supervisor, which restarts it if it crashes.
    auto name = spec.team.name;
    spec.leftovers = std::make_shared<actors::team_leftovers>();
    auto tmpl = std::make_shared<actors::team_spec>(spec);
    tmpl->recovered.clear();
    spawned.emplace_back(name, spec.stats);
    auto actor = actors::spawn_team(*d.sys, std::move(spec));
    d.directory->set(name, actor);
    caf::anon_send(d.root, actors::supervision::adopt_team_atom::value, tmpl, actor);
  }
  {
    std::lock_guard guard{d.mutex};
    auto table = std::make_shared<detail::routes>(*d.table);
    for (auto& [name, stats] : spawned) table->stats[name] = stats;
    for (const auto& u : updates) table->retiring.erase(u.team);
    for (const auto& name : retire) table->retiring.insert(name);
    table->team_names.clear();
    for (const auto& t : next.teams) table->team_names.push_back(t.name);
    for (const auto& name : table->retiring) table->team_names.push_back(name);
    table->agent_team.clear();
    for (const auto& t : next.teams)
      for (const auto& a : t.agents) table->agent_team.emplace(a, t.name);
    for (const auto& u : updates) targets.push_back(u.team);
    for (const auto& name : retire) targets.push_back(name);
    d.table = std::move(table);
    d.cfg = next_ptr;
  }
  auto f = std::make_shared<detail::fan_in>(targets.size(), [finish, changes](detail::fan_in::results all) mutable {
    auto errors = json::array();
    for (auto& r : all)
      if (!r) errors.push_back(r.error().message);
    if (!errors.empty()) changes["errors"] = errors;
    finish(changes, json{{"outcome", "applied"}, {"changes", changes}});
  });
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& name = targets[i];
    auto slot = guarded(f->slot(f), "team '" + name + "'");
    if (i < updates.size()) {
      // The root keeps the new settings for a restart of the team.
      caf::anon_send(d.root, actors::reload_atom::value, name, updates[i].update);
      d.send_team<caf::message_priority::high>(name, slot, actors::reload_atom::value, updates[i].update);
      continue;
    }
    auto u = std::make_shared<actors::team_update>();
    u->retire = true;
    // Called on the team's thread once its last task ended. A later reload may have
    // brought the team back meanwhile: then it stays.
    u->retired = [&d, name = name] {
      {
        std::lock_guard guard{d.mutex};
        if (!d.table->retiring.count(name) || !d.table->stats.count(name)) return;
        auto table = std::make_shared<detail::routes>(*d.table);
        table->stats.erase(name);
        table->retiring.erase(name);
        table->team_names.erase(std::remove(table->team_names.begin(), table->team_names.end(), name),
                                table->team_names.end());
        d.table = std::move(table);
      }
      spdlog::info("team stopped: removed from the config and its tasks ended team={}", name);
      if (d.bus->active()) {
        auto ev = agents::make_event("system.team_stopped", "system", name, {}, {});
        ev->data = json{{"team", name}, {"reason", "removed from the config"}};
        d.bus->publish(ev);
      }
      caf::anon_send(d.root, actors::supervision::stop_team_atom::value, name);
    };
    caf::anon_send(d.root, actors::reload_atom::value, name, u);
    d.send_team<caf::message_priority::high>(name, slot, actors::reload_atom::value, u);
  }
}

}  // namespace troupe::host
