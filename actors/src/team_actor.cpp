// The team actor: behavior, submission and task lifecycle. Dispatch and step
// handling live in team_steps.cpp, status and events in team_status.cpp.
#include <algorithm>

#include <caf/detail/scope_guard.hpp>
#include <spdlog/spdlog.h>

#include "exception_error.hpp"
#include "team_state.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors {
namespace detail {

using agents::task_state;

caf::actor team_state::spawn_agent_slot(self_ptr self, std::size_t i) {
  auto& a = agents[i];
  if (a.spec->env != env) {  // the team restarted: a new team actor, a new env
    auto next = std::make_shared<agent_spec>(*a.spec);
    next->env = env;
    a.spec = std::move(next);
  }
  a.handle = spawn_agent(self, a.spec);
  a.in_flight = 0;
  return a.handle;
}

void team_state::init(self_ptr self, team_spec s) {
  spec = std::move(s);
  wf = agents::workflow::from_team(spec.team);
  spent_usd = spec.spent_usd;
  env = std::make_shared<const agent_env>(agent_env{spec.team.name, caf::actor_cast<caf::actor>(self), spec.llm, spec.bus});
  init_supervisors(self);
  refresh_task_env(self);
  failed = spec.start_failed;
  agents.reserve(spec.agents.size());
  for (std::size_t i = 0; i < spec.agents.size(); ++i) {
    agent_slot a;
    spec.agents[i].env = env;
    a.spec = std::make_shared<const agent_spec>(std::move(spec.agents[i]));
    a.selectors.push_back("a:" + a.spec->agent->name);
    for (const auto& c : a.spec->agent->capabilities) a.selectors.push_back("c:" + c);
    for (const auto& sel : a.selectors) selector_agents[sel].push_back(i);
    agent_index[a.spec->agent->name] = i;
    agents.push_back(std::move(a));
  }
  spec.agents.clear();
  spec.agents.shrink_to_fit();
  for (const auto& [agent_name, usd] : spec.agent_spent_usd)
    if (auto it = agent_index.find(agent_name); it != agent_index.end()) agents[it->second].spent_usd = usd;
  // Committed entity state first (paused, failed, spent): nothing runs before it applies.
  apply_entities();
  if (failed) {
    for (auto& a : agents) a.failed = true;
    // The root gave up on it: the rows say so, so it stays failed across a daemon restart too.
    if (spec.start_failed) mark_failed(self);
  }
  // A failed team (or agent) keeps its agents stopped until an operator restart.
  agent_sup.reserve(agents.size());
  for (std::size_t i = 0; i < agents.size(); ++i) agent_sup.add(self, agents[i].spec->agent->name, !agents[i].failed);
  for (std::size_t i = 0; i < agents.size(); ++i)
    emit_agent(i, agents[i].failed ? "failed" : (paused || agents[i].paused) ? "paused" : "idle");
  // Resume what the store handed back: completed steps stay completed.
  std::vector<std::string> to_start;
  for (auto& t : spec.recovered) {
    auto wfp = t.agent.empty() ? wf : agents::workflow::single_agent(t.agent);
    for (auto& st : t.steps)
      if (st.state == agents::step_state::running) st.state = agents::step_state::pending;
    task_entry e;
    e.t = std::move(t);
    e.wf = wfp;
    e.order = next_order++;
    auto id = e.t.id;
    if (!e.t.idempotency_key.empty()) idempotency[e.t.idempotency_key] = id;
    if (e.t.deadline_at_ms > 0) deadlines.emplace(e.t.deadline_at_ms, id);
    for (const auto& d : e.t.decisions)
      if (d.pending) {
        std::string default_option;
        for (const auto& n : wfp->nodes)
          if (n.id == d.step) default_option = n.decide.default_option;
        pending_decisions[d.id] = pending_decision{id, d, std::move(default_option)};
      }
    if (e.t.state == task_state::queued) ++queued;
    tally(e.t.state, 1);
    admit(id, std::move(e));
    to_start.push_back(id);
  }
  spec.recovered.clear();
  spec.recovered.shrink_to_fit();
  spec.agent_spent_usd.clear();
  spec.stats->queued.store(queued);
  // Pending decisions get their actors back; one whose timeout passed meanwhile takes its default.
  std::vector<std::string> pending;
  for (const auto& [did, p] : pending_decisions) pending.push_back(did);
  std::sort(pending.begin(), pending.end());
  for (const auto& did : pending) start_decision(self, did);
  // Tasks under way get their task actors now (one waiting for a decision resumes when
  // it is decided or timed out); queued ones wait in the queue.
  for (const auto& id : to_start) start(self, id);
}

void team_state::submit(self_ptr self, agents::task_spec ts, reply_fn reply) {
  using base::errc;
  if (draining) return reply(base::fail(errc::unavailable, "the daemon is shutting down; not accepting tasks"));
  if (!ts.idempotency_key.empty()) {
    if (auto it = idempotency.find(ts.idempotency_key); it != idempotency.end()) {
      if (auto t = tasks.find(it->second); t != tasks.end()) return answer_task(self, t->second, std::move(reply), true);
    }
  }
  if (queued >= spec.team.max_queued) {
    spec.stats->rejected.fetch_add(1, std::memory_order_relaxed);
    return reply(base::fail(errc::overloaded, "team '" + spec.team.name + "' has " + std::to_string(queued) +
                                                  " queued tasks (max_queued " +
                                                  std::to_string(spec.team.max_queued) + "); retry later"));
  }
  if (!ts.agent.empty() && !agent_index.count(ts.agent))
    return reply(base::fail(errc::not_found, "agent '" + ts.agent + "' is not in team '" + spec.team.name + "'"));
  for (const auto& dep : ts.depends_on)
    if (!tasks.count(dep))
      return reply(base::fail(errc::bad_request, "depends_on: no task '" + dep + "' in team '" + spec.team.name + "'"));
  agents::task t;
  t.id = spec.task_ids->next();
  t.team = spec.team.name;
  t.agent = ts.agent;
  t.input = std::move(ts.input);
  t.priority = ts.priority;
  t.idempotency_key = std::move(ts.idempotency_key);
  t.created_ms = t.updated_ms = base::now_ms();
  t.deadline_at_ms = ts.deadline_ms > 0 ? t.created_ms + ts.deadline_ms : 0;
  t.max_attempts = ts.max_attempts;
  t.depends_on = std::move(ts.depends_on);
  t.metadata = std::move(ts.metadata);
  auto wfp = t.agent.empty() ? wf : agents::workflow::single_agent(t.agent);
  agents::init_steps(t, *wfp);
  if (!spec.store) {
    auto j = agents::to_json(t);
    accept(self, std::move(t), wfp);
    return reply(std::move(j));
  }
  // Durability contract: acknowledge only after the task is committed.
  auto batch = std::make_shared<base::write_batch>();
  base::task_row row;
  row.id = t.id;
  row.team = t.team;
  row.agent = t.agent;
  row.priority = t.priority;
  row.state = "queued";
  row.idempotency_key = t.idempotency_key;
  row.snapshot = agents::snapshot_text(t);
  row.created_ms = row.updated_ms = t.created_ms;
  batch->new_tasks.push_back(std::move(row));
  // The submit's audit row commits with its task. Not with an idempotency key: the
  // commit may find the key taken, and the row must then name the existing task
  // (written once the answer is known, as for every refused submit).
  const bool audit_in_batch = ts.audit && t.idempotency_key.empty();
  if (audit_in_batch) batch->audit.push_back(audit_row_ok(ts.audit->principal, "submit", t.id, ts.audit->args_json));
  ++queued;  // reserve the slot while the commit is in flight
  ++submits_in_flight;  // a drain waits for it: its client gets the commit's outcome
  self->request(spec.store, caf::infinite, write_atom::value, batch)
      .then(
          [=, t = std::move(t), audit = audit_in_batch ? ts.audit : nullptr](commit_reply& r) mutable {
            auto& st = self->state;
            --st.queued;
            --st.submits_in_flight;
            // Runs last: the reply below goes out before a drain can complete.
            auto drained = caf::detail::make_scope_guard([self] { self->state.check_drained(); });
            if (!r.ok) {
              st.spec.stats->rejected.fetch_add(1, std::memory_order_relaxed);
              // Refused either way (the client cannot be told more now), but a commit
              // that may have landed is checked once the store answers again.
              if (r.error.in_doubt) {
                auto id = t.id;  // not read in the same call that moves t
                st.in_doubt.emplace(std::move(id), in_doubt_submit{std::move(t), wfp});
              }
              return reply(base::fail(r.error));
            }
            if (!r.conflicts.empty()) {
              auto existing = r.conflicts.front().existing_id;
              if (auto it = st.tasks.find(existing); it != st.tasks.end())
                return st.answer_task(self, it->second, reply, true);
              return reply(nlohmann::json{{"id", existing}, {"existing", true}});
            }
            if (audit) audit->committed = true;
            auto j = agents::to_json(t);
            st.accept(self, std::move(t), wfp);
            reply(std::move(j));
          },
          [=](caf::error& err) {
            --self->state.queued;
            --self->state.submits_in_flight;
            reply(base::fail(base::errc::unavailable, "store actor failed: " + self->system().render(err)));
            self->state.check_drained();
          });
}

void team_state::accept(self_ptr self, agents::task t, std::shared_ptr<const agents::workflow> wfp) {
  auto id = t.id;
  spec.stats->submitted.fetch_add(1, std::memory_order_relaxed);
  if (!t.idempotency_key.empty()) idempotency[t.idempotency_key] = id;
  if (t.deadline_at_ms > 0) deadlines.emplace(t.deadline_at_ms, id);
  task_entry e;
  e.t = std::move(t);
  e.wf = std::move(wfp);
  e.order = next_order++;
  auto& entry = admit(id, std::move(e));
  tally(entry.t.state, 1);
  ++queued;
  spec.stats->queued.store(queued, std::memory_order_relaxed);
  emit_task(entry, "queued");
  start(self, id);
}

void team_state::start(self_ptr self, const std::string& id) {
  auto it = tasks.find(id);
  if (it == tasks.end()) return;
  auto& e = it->second;
  // Dependencies: wait until each succeeded; fail when one did not.
  for (const auto& dep : e.t.depends_on) {
    auto d = tasks.find(dep);
    if (d == tasks.end()) continue;  // finished long ago and evicted: it succeeded or we would have failed
    auto s = d->second.t.state;
    if (s == task_state::succeeded) continue;
    if (agents::is_terminal(s)) {
      finish(self, e, task_state::failed,
             base::make_error(base::errc::dependency_failed,
                              "dependency '" + dep + "' ended " + std::string(agents::to_string(s))));
      return;
    }
    dependents[dep].push_back(id);
    return;
  }
  launch(self, e);
}

void team_state::launch(self_ptr self, task_entry& e) {
  if (agents::is_terminal(e.t.state) || e.run) return;
  if (e.t.state == task_state::queued) {
    // The first agent step waits in the queue as plain data: no actor until an agent takes it.
    auto ready = agents::ready_steps(e.t, *e.wf);
    if (!ready.empty()) {
      const auto& node = e.wf->nodes[ready.front()];
      if (!(node.is_decision && node.human)) return enqueue(self, e, ready.front(), e.t.steps[ready.front()].attempts + 1);
    }
  }
  spawn_task(self, e);
}

void team_state::finish(self_ptr self, task_entry& e, task_state state, std::optional<base::error> err,
                        reply_fn reply) {
  if (agents::is_terminal(e.t.state)) {
    if (reply) reply(base::fail(base::errc::conflict, "task '" + e.t.id + "' already " +
                                                          std::string(agents::to_string(e.t.state))));
    return;
  }
  if (e.run) {
    // Its task actor owns the record: it ends the task and reports back.
    if (e.run->actor) {
      caf::anon_send<caf::message_priority::high>(e.run->actor, fail_atom::value,
                                                  err ? *err : base::make_error(base::errc::internal, "failed"));
      return;
    }
    // Parked (the team failed after its actor crashed): the team holds the record.
    e.run.reset();
  }
  if (e.t.state == task_state::queued) {
    --queued;
    spec.stats->queued.store(queued, std::memory_order_relaxed);
  }
  tally(e.t.state, -1);
  e.t.state = state;
  tally(state, 1);
  e.t.error = std::move(err);
  for (auto& s : e.t.steps)
    if (s.state == agents::step_state::running) s.state = agents::step_state::failed;
  for (auto& d : e.t.decisions)
    if (d.pending) {
      d.pending = false;
      d.decided_by = "task " + std::string(agents::to_string(state));
      d.resolved_ms = base::now_ms();
    }
  // Announced (event, operator's answer, dependents, counters) only once the terminal
  // state is committed, like a task actor's end: a crash before the commit brings the
  // task back, so nobody may have heard that it ended.
  persist_task(self, *tenv, e.t, {}, {}, {}, {}, [self, id = e.t.id, reply] {
    auto& st = self->state;
    auto it = st.tasks.find(id);
    if (it == st.tasks.end()) return;  // cannot happen: only ended() evicts, and only after this
    auto& ended_task = it->second;
    st.emit_task(ended_task, "finished");
    if (ended_task.t.error)
      spdlog::debug("task ended task={} team={} state={} error=\"{}\"", id, st.spec.team.name,
                    agents::to_string(ended_task.t.state), ended_task.t.error->message);
    if (reply) reply(agents::to_json(ended_task.t));
    st.ended(self, ended_task);
  });
}

void team_state::ended(self_ptr self, task_entry& e) {
  auto id = e.t.id;
  // Abandon in-flight calls at once: the agents drop them (network requests are aborted).
  if (e.active_calls > 0) cancel_calls(id);
  for (const auto& d : e.t.decisions)
    if (auto p = pending_decisions.find(d.id); p != pending_decisions.end()) {
      pending_decisions.erase(p);
      end_decision(self, d.id);
    }
  switch (e.t.state) {
    case task_state::succeeded: spec.stats->succeeded.fetch_add(1, std::memory_order_relaxed); break;
    case task_state::failed: spec.stats->failed.fetch_add(1, std::memory_order_relaxed); break;
    default: spec.stats->cancelled.fetch_add(1, std::memory_order_relaxed); break;
  }
  if (e.t.created_ms > 0) spec.stats->task_seconds.observe(static_cast<double>(base::now_ms() - e.t.created_ms) / 1000.0);
  // Release tasks that waited on this one.
  if (auto d = dependents.find(id); d != dependents.end()) {
    auto waiting = std::move(d->second);
    dependents.erase(d);
    for (const auto& w : waiting) start(self, w);
  }
  terminal_order.push_back(id);
  while (terminal_order.size() > spec.keep_terminal) {
    auto old = terminal_order.front();
    terminal_order.pop_front();
    auto o = tasks.find(old);
    if (o == tasks.end()) continue;
    if (!o->second.t.idempotency_key.empty()) idempotency.erase(o->second.t.idempotency_key);
    tally(o->second.t.state, -1);
    forget(o);
  }
  check_drained();
}

void team_state::cancel_calls(const std::string& id) {
  std::vector<std::size_t> notify;
  for (const auto& [cid, c] : calls)
    if (c.task_id == id) notify.push_back(c.agent);
  for (auto a : notify) cancel_on_agent(a, id);
}

void team_state::cancel_on_agent(std::size_t agent, const std::string& task_id) {
  const auto& handle = agents[agent].handle;
  if (!handle) return;
  // Twice: the high-priority cancel reaches calls the agent runs at once, past any
  // backlog; but it also overtakes a work order of this task still in the agent's
  // mailbox, which would then start a call nobody waits for any more (paid for, and
  // holding the agent's slot for the whole call). The normal-priority one comes after
  // that work order (one sender's messages of one priority stay in order) and abandons
  // its call. Either finds nothing to cancel when the other did. Any later work order of
  // the task comes after both.
  caf::anon_send<caf::message_priority::high>(handle, cancel_atom::value, task_id);
  caf::anon_send(handle, cancel_atom::value, task_id);
}

void team_state::cancel(self_ptr self, const std::string& id, reply_fn reply) {
  auto it = tasks.find(id);
  if (it == tasks.end()) return reply(base::fail(base::errc::not_found, "no task '" + id + "' in team '" + spec.team.name + "'"));
  auto& e = it->second;
  if (agents::is_terminal(e.t.state))
    return reply(base::fail(base::errc::conflict, "task '" + id + "' already " + std::string(agents::to_string(e.t.state))));
  if (e.run && e.run->actor) {
    // Preemption: the agents drop the task's calls at once; the task actor, told with
    // high priority as well, ends the task, commits it and answers.
    if (e.active_calls > 0) cancel_calls(id);
    emit_task(e, "cancelling");  // the cancel took effect here; the task actor confirms with `finished`
    self->request<caf::message_priority::high>(e.run->actor, caf::infinite, cancel_atom::value)
        .then([reply](json_reply& j) { reply(std::move(j.value)); },
              [self, reply, id](caf::error&) {
                // It ended on its own just before: its final record is here (or on its way).
                auto t = self->state.tasks.find(id);
                auto state = t != self->state.tasks.end() && agents::is_terminal(t->second.t.state)
                                 ? std::string(agents::to_string(t->second.t.state))
                                 : std::string("ended");
                reply(base::fail(base::errc::conflict, "task '" + id + "' already " + state));
              });
    return;
  }
  finish(self, e, task_state::cancelled, base::make_error(base::errc::cancelled, "cancelled by operator"), reply);
}

void team_state::check_drained() {
  if (!draining || drain_waiters.empty() || !calls.empty() || submits_in_flight > 0) return;
  auto waiters = std::move(drain_waiters);
  drain_waiters.clear();
  for (auto& w : waiters) w(nlohmann::json{{"team", spec.team.name}, {"drained", true}});
}

}  // namespace detail

namespace {

caf::behavior team_actor(detail::self_ptr self, team_spec spec) {
  // An exception ends this incarnation; the root supervisor restarts the team from its
  // last committed state, or, without a store, from what it leaves behind here.
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    auto what = detail::exception_what(ep);
    spdlog::error("team actor threw team={} error=\"{}\"", self->state.spec.team.name, what);
    self->state.save_leftovers();
    return caf::make_error(caf::sec::runtime_error, "team '" + self->state.spec.team.name + "': " + what);
  });
  self->state.init(self, std::move(spec));
  self->set_down_handler([=](caf::down_msg& msg) { self->state.on_child_down(self, msg); });
  // Children are linked to us: their crashes arrive here too and are handled by the down
  // handler above; any other exit (shutdown, a parent's failure) ends the team and its children.
  self->set_exit_handler([=](caf::exit_msg& em) {
    auto& st = self->state;
    if (em.reason == caf::exit_reason::normal || st.agent_sup.knows(em.source) || st.decision_sup.knows(em.source))
      return;
    self->quit(em.reason);
  });
  self->send(self, tick_atom::value);
  return {
      [=](submit_atom, agents::task_spec& ts, const reply_fn& reply) { self->state.submit(self, std::move(ts), reply); },
      [=](step_done_atom, step_result& r) { self->state.on_step_done(self, std::move(r)); },
      [=](want_step_atom, detail::task_ref ref, std::size_t step, int attempt, work_vars_ptr& vars) {
        self->state.on_want_step(self, ref, step, attempt, std::move(vars));
      },
      [=](task_crashed_atom, const std::string& id, caf::actor_id actor, const std::string& reason) {
        self->state.on_task_crashed(self, id, actor, reason);
      },
      [=](task_ended_atom, agents::task& t, bool wait, detail::task_ref ref) {
        self->state.on_task_ended(self, std::move(t), wait, ref);
      },
      [=](pending_atom, const std::string& id, agents::decision_record& rec, std::string& default_option) {
        self->state.on_decision_pending(self, id, std::move(rec), std::move(default_option));
      },
      [=](doubt_atom, const std::string& id, int stored, std::uint64_t read) {
        self->state.on_doubt_resolved(self, id, stored, read);
      },
      [=](tick_atom) {
        self->state.tick(self);
        self->delayed_send(self, std::chrono::milliseconds(self->state.spec.tick_ms), tick_atom::value);
      },
      [=](task_atom, const std::string& id, const reply_fn& reply) {
        auto it = self->state.tasks.find(id);
        if (it == self->state.tasks.end()) return reply(base::fail(base::errc::not_found, "no task '" + id + "'"));
        self->state.answer_task(self, it->second, reply);
      },
      [=](tasks_atom, const list_filter& f, const reply_fn& reply) { self->state.list_tasks(self, f, reply); },
      [=](status_atom, const reply_fn& reply) { reply(self->state.status_json()); },
      [=](decisions_atom, const reply_fn& reply) {
        auto out = nlohmann::json::array();
        for (const auto& [did, p] : self->state.pending_decisions) {
          auto j = agents::to_json(p.record);
          j["task"] = p.task_id;
          j["team"] = self->state.spec.team.name;
          out.push_back(std::move(j));
        }
        reply(nlohmann::json{{"decisions", std::move(out)}});
      },
      [=](cancel_atom, const std::string& id, const reply_fn& reply) { self->state.cancel(self, id, reply); },
      [=](decide_atom, decide_cmd& cmd, const reply_fn& reply) { self->state.decide(self, std::move(cmd), reply); },
      [=](pause_atom, const std::string& agent, bool abort, const reply_fn& reply) {
        auto& st = self->state;
        std::vector<std::size_t> which;
        std::vector<base::entity_row> rows;
        if (agent.empty()) {
          st.paused = true;
          for (std::size_t i = 0; i < st.agents.size(); ++i) which.push_back(i);
          rows.push_back(st.entity_row_of(std::nullopt));
        } else if (auto it = st.agent_index.find(agent); it != st.agent_index.end()) {
          st.agents[it->second].paused = true;
          which.push_back(it->second);
          rows.push_back(st.entity_row_of(it->second));
        } else {
          return reply(base::fail(base::errc::not_found, "no agent '" + agent + "' in team '" + st.spec.team.name + "'"));
        }
        for (auto i : which) {
          if (abort) st.requeue_in_flight(self, i);
          st.emit_agent(i, "paused");
        }
        // Acknowledged = committed: the pause holds across a restart once answered.
        st.ack_after_commit(self, std::move(rows), reply);
      },
      [=](resume_atom, const std::string& agent, const reply_fn& reply) {
        auto& st = self->state;
        std::vector<base::entity_row> rows;
        if (agent.empty()) {
          st.paused = false;
          rows.push_back(st.entity_row_of(std::nullopt));
          for (std::size_t i = 0; i < st.agents.size(); ++i) {
            if (st.agents[i].handle && !st.agents[i].paused && st.agents[i].in_flight == 0) st.emit_agent(i, "idle");
            st.pump_agent(self, i);
          }
        } else if (auto it = st.agent_index.find(agent); it != st.agent_index.end()) {
          st.agents[it->second].paused = false;
          rows.push_back(st.entity_row_of(it->second));
          st.emit_agent(it->second, "idle");
          st.pump_agent(self, it->second);
        } else {
          return reply(base::fail(base::errc::not_found, "no agent '" + agent + "' in team '" + st.spec.team.name + "'"));
        }
        st.ack_after_commit(self, std::move(rows), reply);
      },
      [=](restart_atom, const reply_fn& reply) {
        self->state.operator_restart(self);
        self->state.ack_after_commit(self, self->state.all_entity_rows(), reply);
      },
      [=](decided_atom, const std::string& did, const std::string& option, const std::string& who,
          const std::string& comment, const reply_fn& reply) {
        self->state.on_decided(self, did, option, who, comment, reply);
      },
      [=](fault_atom, const std::string& target) { self->state.inject_fault(self, target); },
      [=](reload_atom, team_update_ptr& u, const reply_fn& reply) { detail::on_reload(self, std::move(u), reply); },
      [=](drain_atom, const reply_fn& reply) {
        auto& st = self->state;
        st.draining = true;
        st.drain_waiters.push_back(reply);
        st.check_drained();
      },
  };
}

}  // namespace

caf::actor spawn_team(caf::actor_system& sys, team_spec spec) {
  return sys.spawn(team_actor, std::move(spec));
}

}  // namespace troupe::actors
