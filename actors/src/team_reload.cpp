// Team actor: hot reload. An update replaces the team's settings, workflow and
// agents for new work; what was accepted before finishes as it started:
//  * tasks keep the workflow they were accepted with (a task never changes its
//    graph halfway through);
//  * a changed agent gets its new spec at once: calls in flight finish as they
//    started, new calls use the new prompt, model and provider;
//  * a removed agent retires: it keeps serving the selectors that no remaining
//    agent serves (its own name, a capability only it had) while tasks accepted
//    before the reload still need them, finishes its calls, and then stops;
//  * a removed team keeps running its accepted tasks and reports when none is left.
// Retirement is checked by a self-sent message every tick_ms while anything is
// retiring, never by scanning on the hot path.
#include <set>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "team_state.hpp"

namespace troupe::actors::detail {
namespace {

std::vector<std::string> selectors_of(const config::agent& a) {
  std::vector<std::string> out{"a:" + a.name};
  for (const auto& c : a.capabilities) out.push_back("c:" + c);
  return out;
}

bool same_spec(const agent_spec& a, const agent_spec& b) {
  return *a.agent == *b.agent && *a.model == *b.model && *a.provider == *b.provider;
}

void arm_check(self_ptr self) {
  auto& st = self->state;
  if (st.reload_check_armed) return;
  st.reload_check_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(st.spec.tick_ms), reload_atom::value, team_update_ptr{},
                     reply_fn{});
}

/// Active agents serve the selectors of their config; selectors nobody serves any
/// more stay with the agents that served them (legacy) until no older task needs them.
void rebuild_selectors(team_state& st) {
  auto before = std::move(st.selector_agents);
  st.selector_agents.clear();
  std::set<std::string> served;
  for (auto& a : st.agents) {
    a.selectors.clear();
    if (a.retired || a.retiring) continue;
    a.selectors = selectors_of(*a.spec->agent);
    served.insert(a.selectors.begin(), a.selectors.end());
  }
  st.legacy_selectors.clear();
  for (const auto& [sel, idxs] : before) {
    if (served.count(sel)) continue;
    bool kept = false;
    for (auto i : idxs)
      if (!st.agents[i].retired) {
        st.agents[i].selectors.push_back(sel);
        kept = true;
      }
    if (kept) st.legacy_selectors.push_back(sel);
  }
  for (std::size_t i = 0; i < st.agents.size(); ++i)
    for (const auto& sel : st.agents[i].selectors) st.selector_agents[sel].push_back(i);
}

void apply_update(self_ptr self, team_update& u, const reply_fn& reply) {
  auto& st = self->state;
  if (u.retire) {
    st.retiring = true;
    st.on_retired = std::move(u.retired);
    spdlog::info("team retiring: removed from the config, finishing its tasks team={}", st.spec.team.name);
    arm_check(self);
    if (reply) reply(nlohmann::json{{"team", st.spec.team.name}, {"retiring", true}});
    return;
  }
  st.retiring = false;
  st.on_retired = nullptr;
  st.spec.team = std::move(u.team);
  st.spec.snapshot_every = u.snapshot_every;
  st.wf = agents::workflow::from_team(st.spec.team);
  st.refresh_task_env(self);  // task actors started from now on take the new retry settings
  std::unordered_map<std::string, agent_spec*> next;
  for (auto& a : u.agents) next.emplace(a.agent->name, &a);
  auto added = nlohmann::json::array(), changed = nlohmann::json::array(), retiring = nlohmann::json::array();
  for (std::size_t i = 0; i < st.agents.size(); ++i) {
    auto& slot = st.agents[i];
    if (slot.retired) continue;
    const auto name = slot.spec->agent->name;
    auto it = next.find(name);
    if (it == next.end()) {
      if (!slot.retiring) {
        slot.retiring = true;
        st.agent_index.erase(name);
        retiring.push_back(name);
        st.emit_agent(i, "retiring");
      }
      continue;
    }
    if (slot.retiring) {
      slot.retiring = false;
      st.agent_index[name] = i;
    }
    auto& spec = *it->second;
    spec.env = st.env;
    if (!same_spec(*slot.spec, spec)) {
      slot.spec = std::make_shared<const agent_spec>(spec);
      // Normal priority on purpose: work assigned before the reload is already in the
      // agent's mailbox and runs with the settings it was assigned under. A stopped agent
      // (failed team) starts with the new spec.
      if (slot.handle) self->send(slot.handle, reconfigure_atom::value, spec);
      changed.push_back(name);
    }
    next.erase(it);
  }
  for (auto& spec : u.agents) {
    if (!next.count(spec.agent->name)) continue;  // kept above
    agent_slot slot;
    spec.env = st.env;
    slot.spec = std::make_shared<const agent_spec>(std::move(spec));
    st.agents.push_back(std::move(slot));
    auto i = st.agents.size() - 1;
    st.agent_index[st.agents[i].spec->agent->name] = i;
    st.agent_sup.add(self, st.agents[i].spec->agent->name, !st.failed);  // spawns it unless the team failed
    st.emit_agent(i, st.failed ? "failed" : "idle");
    added.push_back(st.agents[i].spec->agent->name);
  }
  rebuild_selectors(st);
  if (!retiring.empty() || !st.legacy_selectors.empty()) arm_check(self);
  // Capacity may have grown, agents may be new: let everyone pull.
  for (std::size_t i = 0; i < st.agents.size(); ++i) st.pump_agent(self, i);
  spdlog::info("team reconfigured team={} agents_added={} agents_changed={} agents_retiring={}", st.spec.team.name,
               added.dump(), changed.dump(), retiring.dump());
  if (reply)
    reply(nlohmann::json{{"team", st.spec.team.name}, {"agents_added", std::move(added)},
                         {"agents_changed", std::move(changed)}, {"agents_retiring", std::move(retiring)}});
}

/// Drops legacy selectors no live task needs any more and stops retiring agents
/// that have nothing left; reports a retired team. Re-arms while work remains.
void check(self_ptr self) {
  auto& st = self->state;
  st.reload_check_armed = false;
  bool any_retiring = false;
  for (const auto& a : st.agents) any_retiring |= a.retiring && !a.retired;
  if (!st.legacy_selectors.empty()) {
    // Only tasks accepted under an older workflow (or bound to one agent) can need them.
    std::set<std::string> needed;
    std::unordered_set<const agents::workflow*> seen;
    for (const auto& [id, e] : st.tasks) {
      if (agents::is_terminal(e.t.state) || e.wf == st.wf || !seen.insert(e.wf.get()).second) continue;
      for (const auto& n : e.wf->nodes)
        if (!(n.is_decision && n.human)) needed.insert(st.selector_of(n));
    }
    std::vector<std::string> keep;
    for (const auto& sel : st.legacy_selectors) {
      if (needed.count(sel)) {
        keep.push_back(sel);
        continue;
      }
      for (auto i : st.selector_agents[sel]) {
        auto& s = st.agents[i].selectors;
        s.erase(std::remove(s.begin(), s.end(), sel), s.end());
      }
      st.selector_agents.erase(sel);
      st.queues.erase(sel);  // only entries of ended tasks can be left in it
    }
    st.legacy_selectors = std::move(keep);
  }
  if (any_retiring) {
    for (std::size_t i = 0; i < st.agents.size(); ++i) {
      auto& a = st.agents[i];
      if (!a.retiring || a.retired || !a.selectors.empty() || a.in_flight > 0) continue;
      // Released from supervision first: its exit must not look like a crash to us.
      if (auto h = st.agent_sup.release(self, a.spec->agent->name)) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
      a.handle = nullptr;
      a.retired = true;
      st.emit_agent(i, "retired");
      spdlog::info("agent retired agent={} team={}", a.spec->agent->name, st.spec.team.name);
    }
    any_retiring = false;
    for (const auto& a : st.agents) any_retiring |= a.retiring && !a.retired;
  }
  bool pending = any_retiring || !st.legacy_selectors.empty();
  if (st.retiring && st.on_retired) {
    bool busy = !st.calls.empty();
    for (auto it = st.tasks.begin(); !busy && it != st.tasks.end(); ++it) busy = !agents::is_terminal(it->second.t.state);
    if (busy) {
      pending = true;
    } else {
      auto done = std::move(st.on_retired);
      st.on_retired = nullptr;
      spdlog::info("team retired: no task left team={}", st.spec.team.name);
      done();
    }
  }
  if (pending) arm_check(self);
}

}  // namespace

void on_reload(self_ptr self, team_update_ptr update, const reply_fn& reply) {
  if (update)
    apply_update(self, *update, reply);
  else
    check(self);
}

}  // namespace troupe::actors::detail
