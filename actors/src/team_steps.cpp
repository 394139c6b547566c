// Team actor: steps, dispatch to agents, results, retries, decisions, persistence.
#include <spdlog/spdlog.h>

#include "team_state.hpp"
#include "troupe/agents/backoff.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/agents/template.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

using agents::step_state;
using agents::task_state;

namespace {
/// "d_<task hex>_<n>": unique per task and readable next to its task id.
std::string next_decision_id(const agents::task& t) {
  return "d_" + t.id.substr(t.id.find('_') + 1) + "_" + std::to_string(t.decisions.size() + 1);
}
}  // namespace

int team_state::max_attempts_of(const task_entry& e, const agents::workflow_node& node) const {
  if (node.max_attempts) return node.max_attempts;
  return e.t.max_attempts ? e.t.max_attempts : spec.team.max_attempts;
}

std::string team_state::selector_of(const agents::workflow_node& n) const {
  return n.agent.empty() ? "c:" + n.capability : "a:" + n.agent;
}

void team_state::begin_step(self_ptr self, task_entry& e, std::size_t step) {
  const auto& node = e.wf->nodes[step];
  auto& s = e.t.steps[step];
  s.state = step_state::running;
  s.error.reset();
  if (node.is_decision && node.human) {
    // A human decision: pending until an operator decides or its timeout applies the default.
    ++s.attempts;
    s.started_ms = base::now_ms();
    agents::decision_record d;
    d.id = next_decision_id(e.t);
    d.step = node.id;
    d.by = "human";
    d.options = node.decide.options;
    d.created_ms = s.started_ms;
    d.deadline_ms = node.decide.timeout_ms > 0 ? d.created_ms + node.decide.timeout_ms : 0;
    e.t.decisions.push_back(d);
    if (e.t.state == task_state::queued) {
      --queued;
      spec.stats->queued.store(queued, std::memory_order_relaxed);
    }
    e.t.state = task_state::waiting_decision;
    pending_decisions[d.id] = e.t.id;
    start_decision(self, d.id);
    persist(self, e, {step}, {e.t.decisions.size() - 1}, {}, [] {});
    emit_task(e, "waiting_decision", step);
    if (spec.bus && spec.bus->active()) {
      auto ev = agents::make_event("decision.pending", "decisions", spec.team.name, {}, e.t.id);
      ev->data = agents::to_json(d);
      ev->data["task"] = e.t.id;
      ev->data["team"] = spec.team.name;
      spec.bus->publish(ev);
    }
    return;
  }
  ++s.attempts;
  enqueue(self, e, step);
}

void team_state::enqueue(self_ptr self, task_entry& e, std::size_t step) {
  auto sel = selector_of(e.wf->nodes[step]);
  queues[sel].push(e.t.priority, e.t.created_ms, e.order, queued_step{e.t.id, step, e.t.steps[step].attempts});
  pump_selector(self, sel);
}

void team_state::pump_selector(self_ptr self, const std::string& selector) {
  auto it = selector_agents.find(selector);
  if (it == selector_agents.end()) return;
  for (auto a : it->second) pump_agent(self, a);
}

void team_state::pump_agent(self_ptr self, std::size_t i) {
  if (failed || paused || draining) return;
  auto& a = agents[i];
  while (a.handle && !a.paused && a.in_flight < a.spec.agent->max_concurrent) {
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
  auto it = tasks.find(q.task_id);
  if (it == tasks.end()) return false;
  auto& e = it->second;
  auto& s = e.t.steps[q.step];
  if (agents::is_terminal(e.t.state) || s.state != step_state::running || s.attempts != q.attempt) return false;
  auto& a = agents[i];
  // Budgets and loop guards are checked before the call is made, never after overspending.
  if (spec.team.budget_usd && spent_usd >= *spec.team.budget_usd) {
    finish(self, e, task_state::failed,
           base::make_error(base::errc::budget_exceeded, "team '" + spec.team.name + "' spent its budget of $" +
                                                              std::to_string(*spec.team.budget_usd)));
    return false;
  }
  if (a.spec.agent->budget_usd && a.spent_usd >= *a.spec.agent->budget_usd) {
    finish(self, e, task_state::failed,
           base::make_error(base::errc::budget_exceeded, "agent '" + a.spec.agent->name + "' spent its budget of $" +
                                                              std::to_string(*a.spec.agent->budget_usd)));
    return false;
  }
  if (e.t.cost.calls >= spec.team.limits.max_llm_calls) {
    finish(self, e, task_state::failed,
           base::make_error(base::errc::loop_limit, "task made " + std::to_string(e.t.cost.calls) +
                                                        " LLM calls (limits.max_llm_calls)"));
    return false;
  }
  if (spec.team.limits.max_cost_usd > 0 && e.t.cost.usd >= spec.team.limits.max_cost_usd) {
    finish(self, e, task_state::failed,
           base::make_error(base::errc::budget_exceeded, "task cost reached limits.max_cost_usd"));
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
  w.vars.emplace_back("input", e.t.input);
  w.vars.emplace_back("agent", a.spec.agent->name);
  w.vars.emplace_back("attempt", std::to_string(q.attempt));
  for (std::size_t k = 0; k < e.t.steps.size(); ++k)
    // Outputs of steps reset by a decision loop stay visible (a writer sees the editor's verdict).
    if (!e.t.steps[k].output.empty()) w.vars.emplace_back("step." + e.t.steps[k].id, e.t.steps[k].output);
  auto lookup = [&w](std::string_view key_name, std::string& out) {
    for (const auto& [key, value] : w.vars)
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
  if (node.is_decision) {
    std::string options;
    for (const auto& o : node.decide.options) options += (options.empty() ? "" : ", ") + o;
    std::string context;
    for (auto d : node.deps) context += e.t.steps[d].output + "\n";
    auto tmpl = node.decide.prompt.empty() ? "Decide " + node.id + ": answer with exactly one of: " + options + ".\n\n" + context
                                           : node.decide.prompt;
    w.prompt = agents::render_template(tmpl, lookup);
  } else {
    w.prompt = agents::render_template(node.prompt, lookup);
  }
  s.agent = a.spec.agent->name;
  s.started_ms = base::now_ms();
  calls[w.call_id] = call_info{e.t.id, q.step, q.attempt, i, s.started_ms};
  ++a.in_flight;
  ++e.active_calls;
  if (e.t.state == task_state::queued) {
    e.t.state = task_state::running;
    --queued;
    spec.stats->queued.store(queued, std::memory_order_relaxed);
  }
  emit_task(e, "step_started", q.step);
  if (a.in_flight == 1) emit_agent(i, "busy", e.t.id);
  self->send(a.handle, assign_atom::value, std::move(w));
  return true;
}

void team_state::on_step_done(self_ptr self, step_result r) {
  auto c = calls.find(r.call_id);
  if (c == calls.end()) return;  // abandoned (task cancelled or agent restarted)
  auto info = c->second;
  calls.erase(c);
  auto& a = agents[info.agent];
  --a.in_flight;
  // Account the call whatever became of its task: cancelled work still cost money.
  const auto& model = *a.spec.model;
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
  std::vector<base::cost_row> costs;
  auto it = tasks.find(info.task_id);
  const std::string step_id = it != tasks.end() ? it->second.t.steps[info.step].id : std::string();
  if (spec.store) {
    base::cost_row row;
    row.task_id = info.task_id;
    row.step_id = step_id;
    row.agent = a.spec.agent->name;
    row.team = spec.team.name;
    row.provider = r.provider;
    row.model = r.model;
    row.outcome = r.ok ? "ok" : std::string(base::to_string(r.error.code));
    row.tokens_in = r.tokens_in;
    row.tokens_out = r.tokens_out;
    row.latency_ms = r.latency_ms;
    row.usd = usd;
    row.ts_ms = base::now_ms();
    costs.push_back(std::move(row));
  }
  if (spec.bus && spec.bus->active()) {
    auto ev = agents::make_event("llm.call", "llm", spec.team.name, a.spec.agent->name, info.task_id);
    ev->data = {{"provider", r.provider}, {"model", r.model}, {"agent", a.spec.agent->name},
                {"team", spec.team.name}, {"task", info.task_id}, {"step", step_id},
                {"latency_ms", r.latency_ms}, {"tokens_in", r.tokens_in}, {"tokens_out", r.tokens_out},
                {"cost_usd", usd}, {"outcome", r.ok ? "ok" : std::string(base::to_string(r.error.code))}};
    spec.bus->publish(ev);
  }
  if (a.in_flight == 0) emit_agent(info.agent, a.paused ? "paused" : "idle");
  auto free_agent = [&] {
    check_drained();
    pump_agent(self, info.agent);
  };
  if (it == tasks.end()) {
    // The task is gone from memory (evicted): its cost and the spend still commit.
    if (!costs.empty()) {
      auto batch = std::make_shared<base::write_batch>();
      batch->entities = spend_rows(costs);
      batch->costs = std::move(costs);
      self->request(spec.store, caf::infinite, write_atom::value, batch)
          .then([](commit_reply&) {}, [](caf::error&) {});
    }
    free_agent();
    return;
  }
  auto& e = it->second;
  --e.active_calls;
  auto& s = e.t.steps[info.step];
  if (agents::is_terminal(e.t.state) || s.state != step_state::running || s.attempts != info.attempt) {
    if (!costs.empty()) persist(self, e, {}, {}, std::move(costs), [] {});
    free_agent();
    return;
  }
  s.cost.add({r.tokens_in, r.tokens_out, usd, 1});
  e.t.cost.add({r.tokens_in, r.tokens_out, usd, 1});
  const auto& node = e.wf->nodes[info.step];
  if (!r.ok) {
    step_failed(self, e, info.step, r.error);
    if (!costs.empty()) persist(self, e, {}, {}, std::move(costs), [] {});
    free_agent();
    return;
  }
  s.finished_ms = base::now_ms();
  if (s.started_ms > 0) stats.step_seconds.observe(static_cast<double>(s.finished_ms - s.started_ms) / 1000.0);
  auto id = e.t.id;
  if (node.is_decision) {
    auto option = agents::parse_decision(r.text, node.decide.options);
    if (option.empty()) {
      // Unparseable verdict: retry like a failed call; once attempts run out the default applies.
      auto max_attempts = max_attempts_of(e, node);
      if (s.attempts >= max_attempts && !node.decide.default_option.empty()) {
        option = node.decide.default_option;
      } else {
        step_failed(self, e, info.step,
                    base::make_error(base::errc::provider_error, "agent '" + a.spec.agent->name +
                                         "' answered none of the options: \"" + r.text.substr(0, 200) + "\"", true));
        if (!costs.empty()) persist(self, e, {}, {}, std::move(costs), [] {});
        free_agent();
        return;
      }
    }
    agents::decision_record d;
    d.id = next_decision_id(e.t);
    d.step = node.id;
    d.by = "agent:" + a.spec.agent->name;
    d.options = node.decide.options;
    d.chosen = option;
    d.decided_by = a.spec.agent->name;
    d.comment = r.text;
    d.pending = false;
    d.created_ms = s.started_ms;
    d.resolved_ms = s.finished_ms;
    e.t.decisions.push_back(std::move(d));
    // The call's cost row and the verdict commit together: after a crash either both are
    // there (the call is not repeated) or neither (it is, and paid once).
    resolve_decision(self, e, e.t.decisions.size() - 1, option, a.spec.agent->name, r.text, nullptr,
                     std::move(costs));
  } else {
    s.output = std::move(r.text);
    s.state = step_state::succeeded;
    emit_task(e, "step_finished", info.step);
    // Durability contract: the step's output is committed before the next step starts.
    persist(self, e, {info.step}, {}, std::move(costs), [self, id] { self->state.advance(self, id); });
  }
  free_agent();
}

void team_state::step_failed(self_ptr self, task_entry& e, std::size_t step, base::error err) {
  const auto& node = e.wf->nodes[step];
  auto& s = e.t.steps[step];
  s.error = err;
  auto max_attempts = max_attempts_of(e, node);
  if (err.retryable && s.attempts < max_attempts) {
    auto delay = agents::backoff_ms(s.attempts, spec.team.backoff_ms, spec.team.backoff_max_ms, rng);
    emit_task(e, "step_retry", step);
    self->delayed_send(self, std::chrono::milliseconds(delay), retry_atom::value, e.t.id, step, s.attempts);
    return;
  }
  s.state = step_state::failed;
  auto msg = "step '" + s.id + "' failed after " + std::to_string(s.attempts) + " attempt(s): " + err.message;
  finish(self, e, task_state::failed, base::make_error(err.code, std::move(msg)));
}

void team_state::on_retry(self_ptr self, const std::string& id, std::size_t step, int attempt) {
  auto it = tasks.find(id);
  if (it == tasks.end()) return;
  auto& e = it->second;
  auto& s = e.t.steps[step];
  if (agents::is_terminal(e.t.state) || s.state != step_state::running || s.attempts != attempt) return;
  ++s.attempts;
  enqueue(self, e, step);
}

void team_state::tick(self_ptr self) {
  auto now = base::now_ms();
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
    auto limit = a.spec.provider->timeout_ms + 1000;
    if (now - c.started_ms > limit) stalled.push_back(id);
  }
  for (auto id : stalled) {
    auto c = calls.at(id);
    if (agents[c.agent].handle)
      caf::anon_send<caf::message_priority::high>(agents[c.agent].handle, cancel_atom::value, c.task_id);
    step_result r;
    r.call_id = id;
    r.agent = agents[c.agent].spec.agent->name;
    r.provider = agents[c.agent].spec.provider->name;
    r.model = agents[c.agent].spec.model->name;
    r.error = base::make_error(base::errc::timeout, "no answer from agent '" + r.agent + "' within " +
                                   std::to_string(agents[c.agent].spec.provider->timeout_ms) + " ms", true);
    emit_agent(c.agent, "stalled", c.task_id);
    on_step_done(self, std::move(r));
  }
}

void team_state::persist(self_ptr self, task_entry& e, const std::vector<std::size_t>& steps,
                         const std::vector<std::size_t>& decisions, std::vector<base::cost_row> costs,
                         std::function<void()> then) {
  e.t.updated_ms = base::now_ms();
  if (!spec.store) {
    then();
    return;
  }
  ++e.t.seq;
  auto batch = std::make_shared<base::write_batch>();
  bool terminal = agents::is_terminal(e.t.state);
  if (terminal || e.t.seq - e.t.snapshot_seq >= spec.snapshot_every) {
    base::task_row row;
    row.id = e.t.id;
    row.team = e.t.team;
    row.agent = e.t.agent;
    row.priority = e.t.priority;
    row.state = std::string(agents::to_string(e.t.state));
    row.idempotency_key = e.t.idempotency_key;
    row.snapshot = agents::to_json(e.t).dump();
    row.seq = e.t.seq;
    row.created_ms = e.t.created_ms;
    row.updated_ms = e.t.updated_ms;
    batch->snapshots.push_back(std::move(row));
    e.t.snapshot_seq = e.t.seq;
  } else {
    base::journal_row j;
    j.task_id = e.t.id;
    j.seq = e.t.seq;
    j.kind = "patch";
    j.payload = agents::make_patch(e.t, steps, decisions).dump();
    j.ts_ms = e.t.updated_ms;
    batch->journal.push_back(std::move(j));
  }
  for (auto d : decisions) {
    const auto& rec = e.t.decisions[d];
    base::decision_row row;
    row.id = rec.id;
    row.task_id = e.t.id;
    row.step_id = rec.step;
    row.state = rec.pending ? "pending" : "resolved";
    row.record = agents::to_json(rec).dump();
    row.deadline_ms = rec.deadline_ms;
    batch->decisions.push_back(std::move(row));
  }
  // Spend travels with its cost rows: no extra commit per call, and after a crash the
  // budget spent and the calls recorded agree.
  batch->entities = spend_rows(costs);
  batch->costs = std::move(costs);
  self->request(spec.store, caf::infinite, write_atom::value, batch)
      .then([then](commit_reply&) { then(); },
            [](caf::error&) { /* the store actor is gone: the daemon is stopping */ });
}

}  // namespace troupe::actors::detail
