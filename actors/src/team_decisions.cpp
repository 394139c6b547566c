// Team actor: decisions. Human decisions are pending in a decision actor each
// (decision_actor.cpp) which validates the operator's choice and owns the
// timeout; the team commits every resolution before the task moves on.
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

void team_state::decide(self_ptr self, decide_cmd cmd, reply_fn reply) {
  if (!pending_decisions.count(cmd.decision_id))
    return reply(base::fail(base::errc::not_found, "no pending decision '" + cmd.decision_id + "'"));
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
  if (p == pending_decisions.end()) {
    // The task ended (cancelled, deadline) while the choice was on its way.
    if (reply) reply(base::fail(base::errc::conflict, "decision '" + decision_id + "' is no longer pending"));
    return;
  }
  auto& e = tasks.at(p->second);
  for (std::size_t d = 0; d < e.t.decisions.size(); ++d)
    if (e.t.decisions[d].id == decision_id) return resolve_decision(self, e, d, option, who, comment, std::move(reply));
}

void team_state::resolve_decision(self_ptr self, task_entry& e, std::size_t d, const std::string& option,
                                  const std::string& who, const std::string& comment, reply_fn reply,
                                  std::vector<base::cost_row> costs) {
  auto& rec = e.t.decisions[d];
  rec.chosen = option;
  rec.decided_by = who;
  rec.comment = comment;
  rec.pending = false;
  rec.resolved_ms = base::now_ms();
  pending_decisions.erase(rec.id);
  std::size_t step = 0;
  for (std::size_t i = 0; i < e.wf->nodes.size(); ++i)
    if (e.wf->nodes[i].id == rec.step) step = i;
  auto effect = agents::apply_decision(e.t, *e.wf, step, option);
  e.t.steps[step].finished_ms = rec.resolved_ms;
  if (e.t.state == task_state::waiting_decision) e.t.state = task_state::running;
  std::vector<std::size_t> changed;
  for (std::size_t i = 0; i < e.t.steps.size(); ++i) changed.push_back(i);
  auto id = e.t.id;
  auto record = agents::to_json(rec);
  record["task"] = id;
  record["team"] = spec.team.name;
  record["effect"] = effect == agents::decision_effect::loop_back ? "loop_back"
                     : effect == agents::decision_effect::loop_limit ? "loop_limit_reached" : "proceed";
  emit_task(e, "decision", step);
  if (spec.bus && spec.bus->active()) {
    auto ev = agents::make_event("decision.resolved", "decisions", spec.team.name, {}, id);
    ev->data = record;
    spec.bus->publish(ev);
  }
  // A decision is committed before the task moves on; the operator's reply waits for it too.
  persist(self, e, changed, {d}, std::move(costs), [self, id, reply, record] {
    if (reply) reply(record);
    self->state.advance(self, id);
  });
}


}  // namespace troupe::actors::detail
