// Team actor: decisions. Human decisions are pending in a decision actor each
// (decision_actor.cpp) which validates the operator's choice and owns the
// timeout. Decision actors stay children of the team (not of the task actor): the
// team answers `decide` and `decisions` without asking running tasks, and one
// restart intensity covers them. The task actor commits each resolution before the
// task moves on.
#include "team_state.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

using agents::task_state;

void team_state::start_decision(self_ptr self, const std::string& decision_id) {
  decision_sup.add(self, decision_id);
}

void team_state::end_decision(self_ptr self, const std::string& decision_id) {
  // Released first: its normal exit must not look like a child to restart.
  if (auto h = decision_sup.release(self, decision_id)) self->send(h, done_atom::value);
}

bool team_state::parked(const std::string& task_id) const {
  auto t = tasks.find(task_id);
  return t != tasks.end() && t->second.run && !t->second.run->actor;
}

base::error team_state::parked_error(const std::string& decision_id, const std::string& task_id) const {
  return base::make_error(base::errc::unavailable,
                          "team '" + spec.team.name + "' is failed and task '" + task_id + "' waits for an operator " +
                              "restart; decision '" + decision_id + "' stays pending: decide it again after the restart",
                          true);
}

void team_state::decide(self_ptr self, decide_cmd cmd, reply_fn reply) {
  auto p = pending_decisions.find(cmd.decision_id);
  if (p == pending_decisions.end())
    return reply(base::fail(base::errc::not_found, "no pending decision '" + cmd.decision_id + "'"));
  if (parked(p->second.task_id)) return reply(base::fail(parked_error(cmd.decision_id, p->second.task_id)));
  auto h = decision_sup.handle(cmd.decision_id);
  if (!h)
    return reply(base::fail(base::errc::unavailable, "team '" + spec.team.name +
                                                         "' is failed; its decisions resume after an operator restart"));
  // The decision actor validates the option and answers errors itself; a valid choice
  // comes back as decided_atom and is answered once committed.
  self->send(h, decide_atom::value, std::move(cmd), std::move(reply));
}

void team_state::on_decided(self_ptr self, const std::string& decision_id, const std::string& option,
                            const std::string& who, const std::string& comment, reply_fn reply) {
  end_decision(self, decision_id);
  auto p = pending_decisions.find(decision_id);
  if (p != pending_decisions.end() && parked(p->second.task_id)) {
    // Its task actor crashed and its team failed meanwhile: the choice (or the timeout's
    // default) cannot be committed now. The decision stays pending; an operator restart
    // re-arms it (rearm_decisions) with the task.
    if (reply) reply(base::fail(parked_error(decision_id, p->second.task_id)));
    return;
  }
  auto t = p == pending_decisions.end() ? tasks.end() : tasks.find(p->second.task_id);
  if (t == tasks.end() || !t->second.run || !t->second.run->actor) {
    // The task ended (cancelled, deadline) while the choice was on its way.
    if (reply) reply(base::fail(base::errc::conflict, "decision '" + decision_id + "' is no longer pending"));
    return;
  }
  pending_decisions.erase(p);
  auto& e = t->second;
  if (e.t.state == task_state::waiting_decision) {
    tally(task_state::waiting_decision, -1);
    e.t.state = task_state::running;
    tally(task_state::running, 1);
  }
  // The task actor records the choice, commits it, answers the operator and moves on.
  self->send(e.run->actor, decided_atom::value, decision_id, option, who, comment, std::move(reply));
}

void team_state::rearm_decisions(self_ptr self) {
  for (const auto& [did, pd] : pending_decisions)
    if (!decision_sup.has(did)) start_decision(self, did);
}

void team_state::on_decision_pending(self_ptr self, const std::string& task_id, agents::decision_record rec,
                                     std::string default_option) {
  auto t = tasks.find(task_id);
  if (t == tasks.end() || agents::is_terminal(t->second.t.state)) return;
  tally(t->second.t.state, -1);
  t->second.t.state = task_state::waiting_decision;
  tally(task_state::waiting_decision, 1);
  auto did = rec.id;
  // Announced from here, not by the task actor: a client that decides as soon as it
  // sees the event must find the decision (a decide travels with high priority and
  // would overtake this message in the team's mailbox).
  if (spec.bus && spec.bus->active()) {
    auto ev = agents::make_event("decision.pending", "decisions", spec.team.name, {}, task_id);
    ev->data = agents::to_json(rec);
    ev->data["task"] = task_id;
    ev->data["team"] = spec.team.name;
    spec.bus->publish(ev);
  }
  pending_decisions[did] = pending_decision{task_id, std::move(rec), std::move(default_option)};
  start_decision(self, did);
}

}  // namespace troupe::actors::detail
