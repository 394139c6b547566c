// Team actor: supervision of its agents and decision actors, the operator's
// restart, and what the team leaves behind when it crashes itself.
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "team_state.hpp"
#include "troupe/actors/decision_actor.hpp"

namespace troupe::actors::detail {

using agents::task_state;

std::size_t team_state::slot_of(const std::string& agent) const {
  if (auto it = agent_index.find(agent); it != agent_index.end()) return it->second;
  // A retiring agent is no longer indexed by name (team_reload.cpp) but is still supervised.
  for (std::size_t i = 0; i < agents.size(); ++i)
    if (!agents[i].retired && agents[i].spec->agent->name == agent) return i;
  return agents.size();
}

void team_state::init_supervisors(self_ptr self) {
  using namespace supervision;
  child_hooks agent_hooks;
  agent_hooks.start = [this, self](const std::string& agent) {
    auto i = slot_of(agent);
    return i < agents.size() ? spawn_agent_slot(self, i) : caf::actor{};
  };
  agent_hooks.stopped = [this, self](const std::string& agent, const stop_info& info) {
    if (auto i = slot_of(agent); i < agents.size()) agent_stopped(self, i, info);
  };
  agent_hooks.restarted = [this](const std::string& agent) {
    if (auto i = slot_of(agent); i < agents.size()) emit_agent(i, "idle");
  };
  agent_hooks.escalated = [this, self](const std::string& agent, const std::string& reason) {
    // Restart intensity exceeded: every agent is stopped; the queue stays for an operator restart.
    spdlog::error("team failed: restart intensity exceeded team={} agent={} max_restarts={} within_ms={} reason=\"{}\"",
                  spec.team.name, agent, spec.team.sup.max_restarts, spec.team.sup.within_ms, reason);
    mark_failed(self);
  };
  agent_sup = supervisor{restart_policy{spec.team.sup}, restart_mode::permanent, intensity_scope::group,
                         std::move(agent_hooks)};
  agent_sup.monitor_only();  // ~team_state stops the agents

  // Decision actors share no state with each other: one_for_one, and a decision that
  // resolved (normal exit) is not restarted.
  child_hooks decision_hooks;
  decision_hooks.start = [this, self](const std::string& did) -> caf::actor {
    auto p = pending_decisions.find(did);
    if (p == pending_decisions.end() || !p->second.record.pending) return {};
    decision_spec ds;
    ds.id = did;
    ds.task_id = p->second.task_id;
    ds.options = p->second.record.options;
    ds.deadline_ms = p->second.record.deadline_ms;
    ds.default_option = p->second.default_option;
    ds.team = caf::actor_cast<caf::actor>(self);
    return spawn_decision(self, std::move(ds));
  };
  decision_hooks.stopped = [this](const std::string& did, const stop_info& info) {
    if (!info.crashed) return;
    spec.stats->decision_restarts.fetch_add(info.restarting ? 1 : 0, std::memory_order_relaxed);
    spdlog::warn("decision actor crashed decision={} team={} restarting={} reason=\"{}\"", did, spec.team.name,
                 info.restarting, info.reason);
  };
  decision_hooks.escalated = [this, self](const std::string& did, const std::string& reason) {
    spdlog::error("team failed: decision actors exceeded the restart intensity team={} decision={} reason=\"{}\"",
                  spec.team.name, did, reason);
    mark_failed(self);
    agent_sup.stop_all(self);
  };
  // Task actors are independent of each other: one_for_one (team_tasks.cpp).
  task_policy = restart_policy{strategy::one_for_one, spec.team.sup.max_restarts, spec.team.sup.within_ms};
  decision_sup = supervisor{restart_policy{strategy::one_for_one, spec.team.sup.max_restarts, spec.team.sup.within_ms},
                            restart_mode::transient, intensity_scope::group, std::move(decision_hooks)};
}

void team_state::agent_stopped(self_ptr self, std::size_t i, const supervision::stop_info& info) {
  auto& a = agents[i];
  a.handle = nullptr;
  std::erase_if(aborted_calls, [i](const auto& kv) { return kv.second.agent == i; });
  if (!info.crashed) {
    // A sibling failed (one_for_all, rest_for_one) or the team gave up: this agent did
    // nothing wrong, so its steps go back to the queue without spending an attempt.
    requeue_in_flight(self, i);
    emit_agent(i, info.restarting ? "restarting" : "failed");
    return;
  }
  spdlog::warn("agent crashed agent={} team={} reason=\"{}\"", a.spec->agent->name, spec.team.name, info.reason);
  ++a.restarts;
  spec.stats->restarts.fetch_add(1, std::memory_order_relaxed);
  // The calls it had in flight fail as retryable errors: their tasks retry per attempts.
  auto lost = take_calls_of(i);
  emit_agent(i, info.restarting ? "restarting" : "failed");
  for (const auto& [call_id, c] : lost)
    report_failure(self, c, call_id,
                   base::make_error(base::errc::internal, "agent '" + a.spec->agent->name + "' crashed: " + info.reason, true));
}

std::vector<std::pair<std::uint64_t, call_info>> team_state::take_calls_of(std::size_t agent) {
  std::vector<std::pair<std::uint64_t, call_info>> taken;
  for (auto c = calls.begin(); c != calls.end();) {
    if (c->second.agent == agent) {
      taken.emplace_back(c->first, std::move(c->second));
      c = calls.erase(c);
    } else {
      ++c;
    }
  }
  agents[agent].in_flight = 0;
  return taken;
}

void team_state::requeue_in_flight(self_ptr self, std::size_t i) {
  auto& a = agents[i];
  auto aborted = take_calls_of(i);
  for (const auto& [call_id, c] : aborted) {
    cancel_on_agent(i, c.task_id);
    if (a.handle) aborted_calls.emplace(call_id, c);  // it reports the call once cancelled
    auto it = tasks.find(c.task_id);
    if (it == tasks.end()) continue;
    auto& e = it->second;
    --e.active_calls;
    if (agents::is_terminal(e.t.state) || !e.run) continue;
    // Same attempt: the step's prepared variables stay with the team until its call reports.
    emit_step(e, "step_requeued", c.step, a.spec->agent->name, c.attempt);
    auto sel = selector_of(e.wf->nodes[c.step]);
    queues[sel].push(e.t.priority, e.t.created_ms, e.order, queued_step{c.task_id, c.ref, c.step, c.attempt});
  }
  (void)self;
}

void team_state::on_child_down(self_ptr self, const caf::down_msg& msg) {
  if (agent_sup.on_down(self, msg)) {
    // Restarted agents (and the requeued work of their siblings) are served only now,
    // once every agent the strategy restarts has its new incarnation.
    for (std::size_t i = 0; i < agents.size(); ++i) pump_agent(self, i);
    check_drained();
    return;
  }
  decision_sup.on_down(self, msg);
}

void team_state::operator_restart(self_ptr self) {
  failed = false;
  for (auto& a : agents) a.failed = false;
  agent_sup.restart_stopped(self);
  decision_sup.restart_stopped(self);
  task_policy.reset();
  restart_parked_tasks(self);
  rearm_decisions(self);  // a decision that resolved while its task was parked is pending again
  for (std::size_t i = 0; i < agents.size(); ++i) {
    if (agents[i].in_flight == 0) emit_agent(i, agents[i].paused ? "paused" : "idle");
    pump_agent(self, i);
  }
}

void team_state::inject_fault(self_ptr self, const std::string& target) {
  if (target.empty()) throw std::runtime_error("injected fault in team '" + spec.team.name + "'");
  if (target.rfind("decision:", 0) == 0) {
    if (auto h = decision_sup.handle(target.substr(9))) self->send(h, fault_atom::value, target);
    return;
  }
  if (target.rfind("task:", 0) == 0) {
    auto it = tasks.find(target.substr(5));
    if (it != tasks.end() && it->second.run && it->second.run->actor)
      self->send(it->second.run->actor, fault_atom::value, target);
    return;
  }
  if (target.rfind("call:", 0) == 0) {  // an LLM call actor of the named agent
    auto a = slot_of(target.substr(5));
    if (a < agents.size() && agents[a].handle) self->send(agents[a].handle, fault_atom::value, target);
    return;
  }
  spdlog::warn("fault injection: unknown target team={} target={}", spec.team.name, target);
}

void team_state::save_leftovers() {
  if (!spec.leftovers) return;
  std::lock_guard guard{spec.leftovers->mutex};
  auto& box = *spec.leftovers;
  box.filled = true;
  box.tasks.clear();
  for (const auto& [id, e] : tasks)
    if (!agents::is_terminal(e.t.state)) box.tasks.push_back(e.t);
  box.spent_usd = spent_usd;
  box.agent_spent_usd.clear();
  for (const auto& a : agents) box.agent_spent_usd.emplace_back(a.spec->agent->name, a.spent_usd);
}

}  // namespace troupe::actors::detail
