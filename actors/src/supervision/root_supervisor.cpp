#include "troupe/actors/supervision/root_supervisor.hpp"

#include <chrono>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/actors/supervision/supervisor.hpp"
#include "troupe/base/result.hpp"

namespace troupe::actors::supervision {
namespace {

/// How long a restarting team waits for the store's copy before using its leftovers.
constexpr auto recover_timeout = std::chrono::seconds(60);

struct team_slot {
  team_spec tmpl;
  std::shared_ptr<team_leftovers> box;  ///< of the current incarnation
  // Taken from the box of the incarnation that died.
  std::vector<agents::task> carry_tasks;
  double carry_spent = 0;
  std::vector<std::pair<std::string, double>> carry_agent_spent;
  bool start_failed = false;
  bool removed = false;        ///< stopped for good by a reload
  int incarnation = 0;
  team_update_ptr retire;      ///< a pending retirement, repeated to a restarted incarnation
};

struct root_state {
  root_spec spec;
  std::vector<team_slot> teams;
  std::unordered_map<std::string, std::size_t> index;
  supervisor sup;
  static inline const char* name = "troupe.root";
};

using self_ptr = caf::stateful_actor<root_state>*;

caf::actor launch(self_ptr self, const std::string& name, team_spec s) {
  auto restarted = self->state.teams[self->state.index.at(name)].incarnation > 1;
  auto h = spawn_team(self->system(), std::move(s));
  self->state.spec.directory->set(name, h);
  // A team removed by a reload and still finishing its tasks stays on its way out.
  if (auto& retire = self->state.teams[self->state.index.at(name)].retire; restarted && retire)
    self->send(h, reload_atom::value, retire, reply_fn{[](base::result<nlohmann::json>) {}});
  return h;
}

caf::actor start_team(self_ptr self, const std::string& name) {
  auto& st = self->state;
  auto& t = st.teams[st.index.at(name)];
  // Moved out before the copy: the tasks recovered at start are handed over exactly once.
  auto recovered = std::move(t.tmpl.recovered);
  t.tmpl.recovered.clear();
  auto entities = std::move(t.tmpl.recovered_entities);  // rows as committed at daemon start
  t.tmpl.recovered_entities.clear();
  team_spec s = t.tmpl;
  s.start_failed = std::exchange(t.start_failed, false);
  t.box = std::make_shared<team_leftovers>();
  s.leftovers = t.box;
  s.spent_usd = t.carry_spent;
  s.agent_spent_usd = t.carry_agent_spent;
  if (t.incarnation++ == 0) {
    s.recovered = std::move(recovered);  // what recovery at start found
    s.recovered_entities = std::move(entities);
    return launch(self, name, std::move(s));
  }
  s.stats->team_restarts.fetch_add(1, std::memory_order_relaxed);
  if (!st.spec.store) {
    spdlog::warn("restarting team from the tasks it held in memory (no store) team={} tasks={}", name,
                 t.carry_tasks.size());
    s.recovered = std::move(t.carry_tasks);
    return launch(self, name, std::move(s));
  }
  // The last committed state comes from the store; until it arrives the team has no
  // handle, so the control plane answers `unavailable` rather than losing requests.
  auto fallback = [self, name](team_spec& spec, const std::string& why) {
    auto& slot = self->state.teams[self->state.index.at(name)];
    spdlog::warn("store could not reload team, restarting it from memory team={} tasks={} error=\"{}\"", name,
                 slot.carry_tasks.size(), why);
    spec.recovered = std::move(slot.carry_tasks);
  };
  self->request(st.spec.store, recover_timeout, recover_atom::value, name)
      .then(
          [self, name, s, fallback](recovered_tasks& r) mutable {
            if (!self->state.index.count(name)) return;  // removed by a reload meanwhile
            if (!r.ok) {
              fallback(s, r.error.message);
              self->state.sup.adopt(self, name, launch(self, name, std::move(s)));
              return;
            }
            spdlog::info("team restarted from its last committed state team={} tasks={}", name, r.tasks.size());
            s.recovered = std::move(r.tasks);
            self->state.teams[self->state.index.at(name)].carry_tasks.clear();
            // Then its entity rows (paused, failed, spent): the recover above committed the
            // dead team's writes first, so these are its last ones.
            self->request(self->state.spec.store, recover_timeout, entities_atom::value, name)
                .then(
                    [self, name, s](entities_reply& e) mutable {
                      if (!self->state.index.count(name)) return;
                      if (e.ok) s.recovered_entities = std::move(e.rows);
                      else spdlog::warn("store could not reload the team's entity state, using what it held team={} error=\"{}\"",
                                        name, e.error.message);
                      self->state.sup.adopt(self, name, launch(self, name, std::move(s)));
                    },
                    [self, name, s](caf::error& err) mutable {
                      if (!self->state.index.count(name)) return;
                      spdlog::warn("store could not reload the team's entity state, using what it held team={} error=\"{}\"",
                                   name, self->system().render(err));
                      self->state.sup.adopt(self, name, launch(self, name, std::move(s)));
                    });
          },
          [self, name, s, fallback](caf::error& err) mutable {
            if (!self->state.index.count(name)) return;
            fallback(s, self->system().render(err));
            self->state.sup.adopt(self, name, launch(self, name, std::move(s)));
          });
  return {};
}

caf::behavior root_supervisor(self_ptr self, root_spec spec) {
  auto& st = self->state;
  st.spec = std::move(spec);
  for (auto& t : st.spec.teams) {
    st.index.emplace(t.team.name, st.teams.size());
    team_slot slot;
    slot.tmpl = std::move(t);
    st.teams.push_back(std::move(slot));
  }
  st.spec.teams.clear();
  child_hooks hooks;
  hooks.start = [self](const std::string& name) { return start_team(self, name); };
  hooks.stopped = [self](const std::string& name, const stop_info& info) {
    auto& t = self->state.teams[self->state.index.at(name)];
    self->state.spec.directory->set(name, caf::actor{});
    if (t.box) {
      std::lock_guard guard{t.box->mutex};
      if (t.box->filled) {
        t.carry_tasks = std::move(t.box->tasks);
        t.carry_spent = t.box->spent_usd;
        t.carry_agent_spent = std::move(t.box->agent_spent_usd);
      }
    }
    spdlog::error("team actor crashed team={} restarting={} reason=\"{}\"", name, info.restarting, info.reason);
  };
  hooks.escalated = [self](const std::string& name, const std::string& reason) {
    // Past the root's intensity the team comes back failed: it answers queries and keeps
    // its queue, but runs nothing until an operator restarts it.
    spdlog::error("team failed: it crashed too often, an operator restart is needed team={} max_restarts={} within_ms={} reason=\"{}\"",
                  name, self->state.spec.intensity.max_restarts, self->state.spec.intensity.within_ms, reason);
    self->state.teams[self->state.index.at(name)].start_failed = true;
    self->state.sup.restart_child(self, name);
  };
  st.sup = supervisor{restart_policy{strategy::one_for_one, st.spec.intensity.max_restarts, st.spec.intensity.within_ms},
                      restart_mode::permanent, intensity_scope::per_child, std::move(hooks)};
  for (const auto& t : st.teams) st.sup.add(self, t.tmpl.team.name);
  self->set_down_handler([self](caf::down_msg& msg) { self->state.sup.on_down(self, msg); });
  // Teams are linked: their crashes are handled as down messages; anything else (shutdown)
  // ends the root and, through the links, every team.
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (em.reason == caf::exit_reason::normal || self->state.sup.knows(em.source)) return;
    self->quit(em.reason);
  });
  return {
      [self](ready_atom) { return static_cast<int>(self->state.teams.size()); },
      [self](adopt_team_atom, team_spec_ptr& added, caf::actor& handle) {
        auto& rs = self->state;
        auto name = added->team.name;
        if (auto it = rs.index.find(name); it != rs.index.end()) {
          // Re-added after it was stopped: the old slot is done with.
          if (auto old = rs.sup.release(self, name)) self->send_exit(old, caf::exit_reason::user_shutdown);
          rs.index.erase(it);
        }
        team_slot slot;
        slot.tmpl = std::move(*added);
        slot.tmpl.recovered.clear();
        slot.box = slot.tmpl.leftovers;
        slot.incarnation = 1;
        rs.index[name] = rs.teams.size();
        rs.teams.push_back(std::move(slot));
        rs.sup.add(self, name, false);
        rs.sup.adopt(self, name, std::move(handle));
      },
      [self](reload_atom, const std::string& name, team_update_ptr& u) {
        auto& rs = self->state;
        auto it = rs.index.find(name);
        if (it == rs.index.end() || !u) return;
        auto& t = rs.teams[it->second];
        if (u->retire) {
          t.retire = std::move(u);
          return;
        }
        t.retire = nullptr;
        t.tmpl.team = u->team;
        t.tmpl.agents = u->agents;
        t.tmpl.snapshot_every = u->snapshot_every;
      },
      [self](stop_team_atom, const std::string& name) {
        auto& rs = self->state;
        auto it = rs.index.find(name);
        if (it == rs.index.end()) return;
        rs.teams[it->second].removed = true;
        if (auto h = rs.sup.release(self, name)) self->send_exit(h, caf::exit_reason::user_shutdown);
        rs.spec.directory->erase(name);
        rs.index.erase(it);
      },
  };
}

}  // namespace

caf::actor spawn_root_supervisor(caf::actor_system& sys, root_spec spec) {
  return sys.spawn(root_supervisor, std::move(spec));
}

}  // namespace troupe::actors::supervision
