// Team actor: dispatch of steps to agents, the calls' results (accounting, budgets,
// forwarding to the task actor) and the periodic tick (deadlines, stall watchdog).
// What a step's result means for its task is the task actor's business (task_actor.cpp).
#include <spdlog/spdlog.h>

#include "team_state.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/agents/template.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

using agents::step_state;
using agents::task_state;

namespace {

/// The template variables of a step of a task the team still holds (its first step).
work_vars_ptr vars_of(const agents::task& t) {
  auto vars = std::make_shared<work_vars>();
  vars->emplace_back("input", t.input);
  for (const auto& s : t.steps)
    if (!s.output.empty()) vars->emplace_back("step." + s.id, s.output);
  return vars;
}

/// The prompt of `node`, rendered with the step's variables.
/// Renders a step's prompt from the task's variables, then `extra` (agent, attempt).
std::string render_prompt(const agents::task& t, const agents::workflow_node& node, const work_vars& vars,
                          const work_vars& extra) {
  auto lookup = [&vars, &extra](std::string_view key_name, std::string& out) {
    for (const auto* list : {&vars, &extra})
      for (const auto& [key, value] : *list)
        if (key == key_name) {
          out = value;
          return true;
        }
    if (key_name.substr(0, 5) == "step.") {
      out.clear();  // a step that has not run (yet) renders empty
      return true;
    }
    return false;
  };
  if (!node.is_decision) return agents::render_template(node.prompt, lookup);
  std::string options;
  for (const auto& o : node.decide.options) options += (options.empty() ? "" : ", ") + o;
  std::string context;
  for (auto d : node.deps) context += t.steps[d].output + "\n";
  auto tmpl = node.decide.prompt.empty() ? "Decide " + node.id + ": answer with exactly one of: " + options + ".\n\n" + context
                                         : node.decide.prompt;
  return agents::render_template(tmpl, lookup);
}

}  // namespace

std::string team_state::selector_of(const agents::workflow_node& n) const {
  return n.agent.empty() ? "c:" + n.capability : "a:" + n.agent;
}

void team_state::enqueue(self_ptr self, task_entry& e, std::size_t step, int attempt) {
  auto sel = selector_of(e.wf->nodes[step]);
  queues[sel].push(e.t.priority, e.t.created_ms, e.order, queued_step{e.t.id, ref_of(e), step, attempt});
  pump_selector(self, sel);
}

void team_state::on_want_step(self_ptr self, task_ref ref, std::size_t step, int attempt, work_vars_ptr vars) {
  auto* ep = find_task(ref);
  if (ep == nullptr || !ep->run || agents::is_terminal(ep->t.state)) return;
  auto& e = *ep;
  e.run->prepared.push_back(prepared_step{step, attempt, std::move(vars)});
  enqueue(self, e, step, attempt);
}

void team_state::pump_selector(self_ptr self, const std::string& selector) {
  auto it = selector_agents.find(selector);
  if (it == selector_agents.end()) return;
  for (auto a : it->second) pump_agent(self, a);
}

void team_state::pump_agent(self_ptr self, std::size_t i) {
  if (failed || paused || draining) return;
  auto& a = agents[i];
  while (a.handle && !a.paused && a.in_flight < a.spec->agent->max_concurrent) {
    auto now = base::now_ms();
    agents::queue_key best;
    agents::work_queue<queued_step>* from = nullptr;
    for (const auto& sel : a.selectors) {
      auto q = queues.find(sel);
      if (q == queues.end() || q->second.empty()) continue;
      auto k = q->second.best(now, spec.team.aging_ms);
      if (k.better_than(best)) {
        best = k;
        from = &q->second;
      }
    }
    if (!from) return;
    auto item = from->pop(best.level);
    assign(self, i, item.value);
  }
}

bool team_state::assign(self_ptr self, std::size_t i, const queued_step& q) {
  auto* ep = find_task(q.ref);
  if (ep == nullptr) return false;
  auto& e = *ep;
  if (agents::is_terminal(e.t.state)) return false;
  // A queued task's first step (the team holds the task), or a step its task actor wants.
  bool first = !e.run;
  work_vars_ptr vars;
  if (first) {
    const auto& s = e.t.steps[q.step];
    if (e.t.state != task_state::queued || s.state != step_state::pending || s.attempts + 1 != q.attempt) return false;
  } else {
    if (!e.run->actor) return false;  // parked: its actor crashed and the team failed
    for (const auto& p : e.run->prepared)
      if (p.step == q.step && p.attempt == q.attempt) vars = p.vars;
    if (!vars) return false;  // stale: a crashed incarnation wanted it
  }
  auto& a = agents[i];
  // Budgets and loop guards are checked before the call is made, never after overspending.
  std::optional<base::error> refuse;
  if (spec.team.budget_usd && spent_usd >= *spec.team.budget_usd)
    refuse = base::make_error(base::errc::budget_exceeded, "team '" + spec.team.name + "' spent its budget of $" +
                                                               std::to_string(*spec.team.budget_usd));
  else if (a.spec->agent->budget_usd && a.spent_usd >= *a.spec->agent->budget_usd)
    refuse = base::make_error(base::errc::budget_exceeded, "agent '" + a.spec->agent->name + "' spent its budget of $" +
                                                               std::to_string(*a.spec->agent->budget_usd));
  else if (e.t.cost.calls >= spec.team.limits.max_llm_calls)
    refuse = base::make_error(base::errc::loop_limit, "task made " + std::to_string(e.t.cost.calls) +
                                                          " LLM calls (limits.max_llm_calls)");
  else if (spec.team.limits.max_cost_usd > 0 && e.t.cost.usd >= spec.team.limits.max_cost_usd)
    refuse = base::make_error(base::errc::budget_exceeded, "task cost reached limits.max_cost_usd");
  if (refuse) {
    finish(self, e, task_state::failed, std::move(refuse));
    return false;
  }
  const auto& node = e.wf->nodes[q.step];
  work_order w;
  w.call_id = next_call++;
  w.task_id = e.t.id;
  w.step = q.step;
  w.step_id = node.id;
  w.attempt = q.attempt;
  w.priority = e.t.priority;
  if (first) vars = vars_of(e.t);
  work_vars extra{{"agent", a.spec->agent->name}, {"attempt", std::to_string(q.attempt)}};
  w.prompt = render_prompt(e.t, node, *vars, extra);
  // Only scripted replies are templates of their own; a network call needs just the
  // prompt, so the earlier steps' outputs are not copied into its work order.
  if (a.spec->provider->kind == config::provider_kind::scripted) {
    w.vars.reserve(vars->size() + extra.size());
    w.vars = *vars;
    for (auto& v : extra) w.vars.push_back(std::move(v));
  }
  auto now = base::now_ms();
  calls[w.call_id] = call_info{e.t.id, ref_of(e), q.step, q.attempt, i, now};
  ++a.in_flight;
  ++e.active_calls;
  if (first) {
    // The task starts: its actor takes the record with this step under way.
    auto& s = e.t.steps[q.step];
    s.state = step_state::running;
    s.error.reset();
    s.attempts = q.attempt;
    s.agent = a.spec->agent->name;
    s.started_ms = now;
    spawn_task(self, e, {}, false);
    e.run->prepared.push_back(prepared_step{q.step, q.attempt, std::move(vars)});
  }
  emit_step(e, "step_started", q.step, a.spec->agent->name, q.attempt);
  if (a.in_flight == 1) emit_agent(i, "busy", e.t.id);
  self->send(a.handle, assign_atom::value, std::move(w));
  return true;
}

call_report team_state::book_call(const call_info& info, const step_result& r, const task_entry* task) {
  const std::string step_id = task ? task->wf->nodes[info.step].id : std::string();
  auto& a = agents[info.agent];
  // Account the call whatever became of its task: cancelled work still cost money.
  const auto& model = *a.spec->model;
  double usd = (static_cast<double>(r.tokens_in) * model.usd_per_mtok_in +
                static_cast<double>(r.tokens_out) * model.usd_per_mtok_out) / 1e6;
  spent_usd += usd;
  a.spent_usd += usd;
  auto& stats = *spec.stats;
  stats.llm_calls.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok) stats.llm_failures.fetch_add(1, std::memory_order_relaxed);
  stats.tokens_in.fetch_add(static_cast<std::uint64_t>(r.tokens_in), std::memory_order_relaxed);
  stats.tokens_out.fetch_add(static_cast<std::uint64_t>(r.tokens_out), std::memory_order_relaxed);
  stats.cost_micro_usd.fetch_add(static_cast<std::uint64_t>(usd * 1e6), std::memory_order_relaxed);
  stats.step_latency_ms_total.fetch_add(static_cast<std::uint64_t>(r.latency_ms), std::memory_order_relaxed);
  stats.llm_seconds.at(r.provider, r.model).observe(static_cast<double>(r.latency_ms) / 1000.0);
  call_report rep;
  rep.step = info.step;
  rep.attempt = info.attempt;
  rep.usd = usd;
  rep.started_ms = info.started_ms;
  if (spec.store) {
    base::cost_row row;
    row.task_id = info.task_id;
    row.step_id = step_id;
    row.agent = a.spec->agent->name;
    row.team = spec.team.name;
    row.provider = r.provider;
    row.model = r.model;
    row.outcome = r.ok ? "ok" : std::string(base::to_string(r.error.code));
    row.tokens_in = r.tokens_in;
    row.tokens_out = r.tokens_out;
    row.latency_ms = r.latency_ms;
    row.usd = usd;
    row.ts_ms = base::now_ms();
    rep.costs.push_back(std::move(row));
    rep.spend = {entity_row_of(std::nullopt), entity_row_of(info.agent)};  // the spend after this call
  }
  if (spec.bus && spec.bus->active()) {
    auto ev = agents::make_event("llm.call", "llm", spec.team.name, a.spec->agent->name, info.task_id);
    ev->data = {{"provider", r.provider}, {"model", r.model}, {"agent", a.spec->agent->name},
                {"team", spec.team.name}, {"task", info.task_id}, {"step", step_id},
                {"latency_ms", r.latency_ms}, {"tokens_in", r.tokens_in}, {"tokens_out", r.tokens_out},
                {"cost_usd", usd}, {"outcome", r.ok ? "ok" : std::string(base::to_string(r.error.code))}};
    spec.bus->publish(ev);
  }
  return rep;
}

void team_state::write_costs(self_ptr self, call_report& rep) {
  if (rep.costs.empty()) return;
  auto batch = std::make_shared<base::write_batch>();
  batch->entities = std::move(rep.spend);
  batch->costs = std::move(rep.costs);
  batch->can_wait = true;  // nobody waits for it
  self->request(spec.store, caf::infinite, write_atom::value, batch).then([](commit_reply&) {}, [](caf::error&) {});
}

void team_state::on_step_done(self_ptr self, step_result r) {
  auto c = calls.find(r.call_id);
  if (c == calls.end()) {
    // The report of a call an operator's abort took from its agent: its step is already
    // requeued, but what the call cost is booked like any other.
    if (auto ab = aborted_calls.find(r.call_id); ab != aborted_calls.end()) {
      auto info = std::move(ab->second);
      aborted_calls.erase(ab);
      auto it = tasks.find(info.task_id);
      auto rep = book_call(info, r, it != tasks.end() ? &it->second : nullptr);
      rep.aborted = true;
      if (it != tasks.end()) {
        auto& e = it->second;
        e.t.cost.add({r.tokens_in, r.tokens_out, rep.usd, 1});
        if (e.run && e.run->actor) {
          rep.r = std::move(r);
          self->send(e.run->actor, step_done_atom::value, std::move(rep));
          return;
        }
      }
      write_costs(self, rep);
    }
    return;  // otherwise abandoned (agent restarted, or timed out)
  }
  auto info = std::move(c->second);
  calls.erase(c);
  auto& a = agents[info.agent];
  --a.in_flight;
  auto* ep = find_task(info.ref);
  auto rep = book_call(info, r, ep);
  const double usd = rep.usd;
  if (a.in_flight == 0) emit_agent(info.agent, a.paused ? "paused" : "idle");
  bool forwarded = false;
  if (ep != nullptr) {
    auto& e = *ep;
    --e.active_calls;
    // The loop guard's counters (checked at dispatch) follow every call of the task.
    e.t.cost.add({r.tokens_in, r.tokens_out, usd, 1});
    if (e.run) {
      auto& prep = e.run->prepared;
      for (auto p = prep.begin(); p != prep.end(); ++p)
        if (p->step == info.step && p->attempt == info.attempt) {
          prep.erase(p);
          break;
        }
      if (e.run->actor) {
        rep.r = std::move(r);
        self->send(e.run->actor, step_done_atom::value, std::move(rep));
        forwarded = true;
      }
    }
  }
  // No task actor takes it (the task ended or is parked): its cost and the spend still commit.
  if (!forwarded) write_costs(self, rep);
  check_drained();
  pump_agent(self, info.agent);
}

void team_state::report_failure(self_ptr self, const call_info& info, std::uint64_t call_id, base::error err) {
  auto* ep = find_task(info.ref);
  if (ep == nullptr) return;
  auto& e = *ep;
  --e.active_calls;
  if (agents::is_terminal(e.t.state) || !e.run) return;
  auto& prep = e.run->prepared;
  for (auto p = prep.begin(); p != prep.end(); ++p)
    if (p->step == info.step && p->attempt == info.attempt) {
      prep.erase(p);
      break;
    }
  if (!e.run->actor) return;
  call_report rep;
  rep.step = info.step;
  rep.attempt = info.attempt;
  rep.started_ms = info.started_ms;
  rep.r.call_id = call_id;
  rep.r.agent = agents[info.agent].spec->agent->name;
  rep.r.error = std::move(err);
  self->send(e.run->actor, step_done_atom::value, std::move(rep));
}

void team_state::tick(self_ptr self) {
  auto now = base::now_ms();
  if (!in_doubt.empty()) {
    auto clock_ms = std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
    if (doubt_reading && clock_ms - doubt_read_ms >= doubt_read_timeout_ms) {
      spdlog::warn("no answer from the store to the read of a submit in doubt within {} ms; asking again team={}",
                   doubt_read_timeout_ms, spec.team.name);
      doubt_reading = false;
    }
    if (!doubt_reading && clock_ms - doubt_checked_ms >= 1000) {
      doubt_checked_ms = clock_ms;
      check_in_doubt(self);
    }
  }
  // Deadlines.
  while (!deadlines.empty() && deadlines.begin()->first <= now) {
    auto id = deadlines.begin()->second;
    deadlines.erase(deadlines.begin());
    auto it = tasks.find(id);
    if (it == tasks.end() || agents::is_terminal(it->second.t.state)) continue;
    finish(self, it->second, task_state::failed,
           base::make_error(base::errc::deadline_exceeded, "task passed its deadline"));
  }
  // Human decision timeouts belong to their decision actors (decision_actor.cpp).
  // Watchdog: a call without an answer past its provider timeout fails as a retryable timeout.
  std::vector<std::uint64_t> stalled;
  for (const auto& [id, c] : calls) {
    const auto& a = agents[c.agent];
    auto limit = a.spec->provider->timeout_ms + 1000;
    if (now - c.started_ms > limit) stalled.push_back(id);
  }
  for (auto id : stalled) {
    auto c = calls.at(id);
    if (agents[c.agent].handle)
      caf::anon_send<caf::message_priority::high>(agents[c.agent].handle, cancel_atom::value, c.task_id);
    step_result r;
    r.call_id = id;
    r.agent = agents[c.agent].spec->agent->name;
    r.provider = agents[c.agent].spec->provider->name;
    r.model = agents[c.agent].spec->model->name;
    r.error = base::make_error(base::errc::timeout, "no answer from agent '" + r.agent + "' within " +
                                   std::to_string(agents[c.agent].spec->provider->timeout_ms) + " ms", true);
    emit_agent(c.agent, "stalled", c.task_id);
    on_step_done(self, std::move(r));
  }
}

}  // namespace troupe::actors::detail
