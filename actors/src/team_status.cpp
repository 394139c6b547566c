// Team actor: events and status documents.
#include <cassert>

#include "team_state.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

void team_state::emit_task(const task_entry& e, const char* what, std::optional<std::size_t> step) {
  emit_task_event(*tenv, e.t, what, step);
}

void team_state::emit_step(const task_entry& e, const char* what, std::size_t step, const std::string& agent,
                           int attempt) {
  if (!spec.bus || !spec.bus->active()) return;
  // The team's record of a running task is not current: say only what the team knows.
  auto ev = agents::make_event("task.update", "tasks", spec.team.name, agent, e.t.id);
  ev->data = {{"task", e.t.id}, {"team", spec.team.name}, {"state", "running"}, {"what", what},
              {"priority", e.t.priority}, {"step", e.wf->nodes[step].id}, {"step_state", "running"},
              {"agent", agent}, {"attempt", attempt}};
  spec.bus->publish(ev);
}

void team_state::emit_agent(std::size_t i, const std::string& state, const std::string& task) {
  if (!spec.bus || !spec.bus->active()) return;
  const auto& a = agents[i];
  auto ev = agents::make_event("agent.status", "agents", spec.team.name, a.spec->agent->name, task);
  ev->data = {{"agent", a.spec->agent->name}, {"team", spec.team.name}, {"state", state},
              {"in_flight", a.in_flight}, {"max_concurrent", a.spec->agent->max_concurrent},
              {"restarts", a.restarts}, {"spent_usd", a.spent_usd}};
  if (!task.empty()) ev->data["task"] = task;
  spec.bus->publish(ev);
}

nlohmann::json team_state::agents_json() const {
  auto out = nlohmann::json::array();
  auto now = base::now_ms();
  for (std::size_t i = 0; i < agents.size(); ++i) {
    const auto& a = agents[i];
    if (a.retired) continue;  // removed by a reload and stopped
    std::string state = !a.handle ? ((failed || a.failed) ? "failed" : "restarting") : a.retiring ? "retiring" : a.paused ? "paused" : a.in_flight > 0 ? "busy" : "idle";
    auto in_flight = nlohmann::json::array();
    for (const auto& [id, c] : calls)
      if (c.agent == i)
        in_flight.push_back({{"task", c.task_id}, {"step", c.step}, {"attempt", c.attempt}, {"age_ms", now - c.started_ms}});
    out.push_back({{"name", a.spec->agent->name}, {"team", spec.team.name}, {"state", state},
                   {"model", a.spec->model->name}, {"provider", a.spec->provider->name},
                   {"capabilities", a.spec->agent->capabilities}, {"max_concurrent", a.spec->agent->max_concurrent},
                   {"in_flight", std::move(in_flight)}, {"restarts", a.restarts}, {"spent_usd", a.spent_usd},
                   {"budget_usd", a.spec->agent->budget_usd ? nlohmann::json(*a.spec->agent->budget_usd) : nlohmann::json()}});
  }
  return out;
}

void team_state::tally(agents::task_state s, int delta) {
  if (s == agents::task_state::running) running_tasks += delta;
  else if (s == agents::task_state::waiting_decision) waiting_tasks += delta;
}

nlohmann::json team_state::status_json() const {
  std::array<std::size_t, 10> depths{};
  for (const auto& [sel, q] : queues) {
    auto d = q.depths();
    for (std::size_t i = 0; i < 10; ++i) depths[i] += d[i];
  }
#ifndef NDEBUG
  // Debug builds (the sanitizer test suite) hold the counts to a scan.
  std::int64_t running = 0, waiting = 0;
  for (const auto& [id, e] : tasks) {
    if (e.t.state == agents::task_state::running) ++running;
    if (e.t.state == agents::task_state::waiting_decision) ++waiting;
  }
  assert(running == running_tasks && waiting == waiting_tasks);
#endif
  std::string state = failed ? "failed" : draining ? "draining" : retiring ? "retiring" : paused ? "paused" : "running";
  return {{"name", spec.team.name}, {"state", state}, {"queued", queued}, {"running", running_tasks},
          {"waiting_decision", waiting_tasks}, {"queue_by_priority", depths}, {"in_flight_calls", calls.size()},
          {"spent_usd", spent_usd},
          {"budget_usd", spec.team.budget_usd ? nlohmann::json(*spec.team.budget_usd) : nlohmann::json()},
          {"max_queued", spec.team.max_queued}, {"strategy", config::to_string(spec.team.sup.strategy)},
          {"restarts", spec.stats->team_restarts.load(std::memory_order_relaxed)},
          {"decision_restarts", spec.stats->decision_restarts.load(std::memory_order_relaxed)},
          {"task_restarts", spec.stats->task_restarts.load(std::memory_order_relaxed)},
          {"agents", agents_json()}};
}

}  // namespace troupe::actors::detail
