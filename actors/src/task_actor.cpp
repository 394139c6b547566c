// The task actor: drives one running task through its workflow (see task_actor.hpp).
#include "task_actor.hpp"

#include <functional>
#include <random>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "exception_error.hpp"
#include "troupe/agents/backoff.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

using agents::step_state;
using agents::task_state;

namespace {

/// "d_<task hex>_<n>": unique per task and readable next to its task id.
std::string next_decision_id(const agents::task& t) {
  return "d_" + t.id.substr(t.id.find('_') + 1) + "_" + std::to_string(t.decisions.size() + 1);
}

struct task_actor_state {
  agents::task t;
  std::shared_ptr<const agents::workflow> wf;
  std::shared_ptr<const task_env> env;
  std::shared_ptr<task_crash_box> box;
  std::string restarted_after;  ///< why the previous incarnation ended (a crash), if any
  task_ref ref;                 ///< the team's entry of the task
  bool ended = false;  ///< terminal and reported; waiting for the team's done_atom
  /// Set while the terminal state is being committed: the state a query is shown until
  /// the end is announced (no client hears of an end a crash could still undo).
  std::optional<agents::task_state> shown_state;
  static inline const char* name = "troupe.task";
};

using task_self = caf::stateful_actor<task_actor_state>*;

void advance(task_self self);

/// Ends the task: commits the terminal snapshot (with `costs` and `spend` of the
/// call that ended it, if any), and only once that commit is done emits `finished`,
/// answers `reply` (an operator's cancel) and hands the final record to the team. No
/// client hears of an end that a crash could still undo: an acknowledged cancel
/// stays cancelled, a reported failure or result stays what it was (the last step's
/// output may be in this snapshot and nowhere else yet).
void finish(task_self self, task_state state, std::optional<base::error> err, const reply_fn& reply = nullptr,
            std::vector<base::cost_row> costs = {}, std::vector<base::entity_row> spend = {}) {
  auto& st = self->state;
  auto& t = st.t;
  if (st.ended || agents::is_terminal(t.state)) {
    if (reply)
      reply(base::fail(base::errc::conflict, "task '" + t.id + "' already " + std::string(agents::to_string(t.state))));
    return;
  }
  st.shown_state = t.state;
  t.state = state;
  t.error = std::move(err);
  // Calls still in flight report to the team, which forwards them here: wait for the
  // team to take the final record before ending, so their cost rows still commit.
  bool calls_out = false;
  for (std::size_t i = 0; i < t.steps.size(); ++i) {
    auto& s = t.steps[i];
    if (s.state != step_state::running) continue;
    if (!(st.wf->nodes[i].is_decision && st.wf->nodes[i].human)) calls_out = true;
    s.state = step_state::failed;
  }
  for (auto& d : t.decisions)
    if (d.pending) {  // the team ends its decision actor when it takes the final record
      d.pending = false;
      d.decided_by = "task " + std::string(agents::to_string(state));
      d.resolved_ms = base::now_ms();
    }
  // Meanwhile the state is already terminal: a cancel is refused, a late call's cost
  // still commits (on_report).
  auto announce = [self, reply, calls_out] {
    auto& st2 = self->state;
    auto& t2 = st2.t;
    emit_task_event(*st2.env, t2, "finished");
    if (t2.error)
      spdlog::debug("task ended task={} team={} state={} error=\"{}\"", t2.id, t2.team, agents::to_string(t2.state),
                    t2.error->message);
    if (reply) reply(agents::to_json(t2));
    st2.ended = true;
    self->send(st2.env->team_actor, task_ended_atom::value, std::move(t2), calls_out, st2.ref);
    if (!calls_out) self->quit();  // a normal end sends the team nothing
  };
  // Without an operator waiting for the answer, only this task's own announcement
  // waits for the commit: it may wait for company (runtime.end_commit_interval_ms).
  persist_task(self, *st.env, t, {}, {}, std::move(costs), std::move(spend), announce, !reply);
}

/// Asks the team to run `step` (attempt already counted) on an agent.
void want(task_self self, std::size_t step) {
  auto& t = self->state.t;
  auto vars = std::make_shared<work_vars>();
  vars->reserve(t.steps.size() + 1);
  vars->emplace_back("input", t.input);
  for (const auto& s : t.steps)
    // Outputs of steps reset by a decision loop stay visible (a writer sees the editor's verdict).
    if (!s.output.empty()) vars->emplace_back("step." + s.id, s.output);
  self->send(self->state.env->team_actor, want_step_atom::value, self->state.ref, step, t.steps[step].attempts,
             work_vars_ptr(std::move(vars)));
}

void begin_step(task_self self, std::size_t step) {
  auto& st = self->state;
  auto& t = st.t;
  const auto& node = st.wf->nodes[step];
  auto& s = t.steps[step];
  s.state = step_state::running;
  s.error.reset();
  ++s.attempts;
  if (!(node.is_decision && node.human)) return want(self, step);
  // A human decision: pending until an operator decides or its timeout applies the default.
  s.started_ms = base::now_ms();
  agents::decision_record d;
  d.id = next_decision_id(t);
  d.step = node.id;
  d.by = "human";
  d.options = node.decide.options;
  d.created_ms = s.started_ms;
  d.deadline_ms = node.decide.timeout_ms > 0 ? d.created_ms + node.decide.timeout_ms : 0;
  t.decisions.push_back(d);
  t.state = task_state::waiting_decision;
  // The team keeps the decision actor (its supervisor) and answers `decisions` queries.
  // High priority, like the operators' `decide` and `decisions` that may follow at once
  // (on the task.update below): among urgent messages the mailbox keeps order.
  self->send<caf::message_priority::high>(st.env->team_actor, pending_atom::value, t.id, d,
                                          node.decide.default_option);
  persist_task(self, *st.env, t, {step}, {t.decisions.size() - 1}, {}, {}, [] {});
  emit_task_event(*st.env, t, "waiting_decision", step);
  // `decision.pending` is the team's to announce, once it can take a decide.
}

void advance(task_self self) {
  auto& st = self->state;
  auto& t = st.t;
  if (st.ended || agents::is_terminal(t.state) || t.state == task_state::waiting_decision) return;
  if (agents::all_done(t)) {
    t.result = t.steps[st.wf->result_node].output;
    finish(self, task_state::succeeded, std::nullopt);
    return;
  }
  for (auto step : agents::ready_steps(t, *st.wf)) {
    begin_step(self, step);
    if (st.ended || t.state == task_state::waiting_decision) return;
  }
}

void step_failed(task_self self, std::size_t step, base::error err) {
  auto& st = self->state;
  auto& s = st.t.steps[step];
  s.error = err;
  if (err.retryable && s.attempts < max_attempts_for(st.t, st.wf->nodes[step], st.env->max_attempts)) {
    // A generator per retry, not per actor: a running task costs no 2.5 KB of generator state.
    std::mt19937_64 rng{std::hash<std::string>{}(st.t.id) ^ static_cast<std::uint64_t>(s.attempts)};
    auto delay = agents::backoff_ms(s.attempts, st.env->backoff_ms, st.env->backoff_max_ms, rng);
    emit_task_event(*st.env, st.t, "step_retry", step);
    self->delayed_send(self, std::chrono::milliseconds(delay), retry_atom::value, step, s.attempts);
    return;
  }
  s.state = step_state::failed;
  auto msg = "step '" + s.id + "' failed after " + std::to_string(s.attempts) + " attempt(s): " + err.message;
  finish(self, task_state::failed, base::make_error(err.code, std::move(msg)));
}

void resolve_decision(task_self self, std::size_t d, const std::string& option, const std::string& who,
                      const std::string& comment, reply_fn reply, std::vector<base::cost_row> costs = {},
                      std::vector<base::entity_row> spend = {}) {
  auto& st = self->state;
  auto& t = st.t;
  auto& rec = t.decisions[d];
  rec.chosen = option;
  rec.decided_by = who;
  rec.comment = comment;
  rec.pending = false;
  rec.resolved_ms = base::now_ms();
  std::size_t step = 0;
  for (std::size_t i = 0; i < st.wf->nodes.size(); ++i)
    if (st.wf->nodes[i].id == rec.step) step = i;
  auto effect = agents::apply_decision(t, *st.wf, step, option);
  t.steps[step].finished_ms = rec.resolved_ms;
  if (t.state == task_state::waiting_decision) t.state = task_state::running;
  std::vector<std::size_t> changed;
  for (std::size_t i = 0; i < t.steps.size(); ++i) changed.push_back(i);
  auto record = agents::to_json(rec);
  record["task"] = t.id;
  record["team"] = st.env->team;
  record["effect"] = effect == agents::decision_effect::loop_back    ? "loop_back"
                     : effect == agents::decision_effect::loop_limit ? "loop_limit_reached"
                                                                     : "proceed";
  emit_task_event(*st.env, t, "decision", step);
  if (st.env->bus && st.env->bus->active()) {
    auto ev = agents::make_event("decision.resolved", "decisions", st.env->team, {}, t.id);
    ev->data = record;
    st.env->bus->publish(ev);
  }
  // A decision is committed before the task moves on; the operator's reply waits for it too.
  persist_task(self, *st.env, t, changed, {d}, std::move(costs), std::move(spend), [self, reply, record] {
    if (reply) reply(record);
    advance(self);
  });
}

/// An agent's decision verdict for `step`: parsed to an option, or retried.
void agent_decided(task_self self, call_report& rep, const agents::workflow_node& node) {
  auto& st = self->state;
  auto& s = st.t.steps[rep.step];
  auto option = agents::parse_decision(rep.r.text, node.decide.options);
  if (option.empty()) {
    // Unparseable verdict: retry like a failed call; once attempts run out the default applies.
    if (s.attempts >= max_attempts_for(st.t, node, st.env->max_attempts) && !node.decide.default_option.empty()) {
      option = node.decide.default_option;
    } else {
      step_failed(self, rep.step,
                  base::make_error(base::errc::provider_error, "agent '" + rep.r.agent +
                                       "' answered none of the options: \"" + rep.r.text.substr(0, 200) + "\"", true));
      if (!rep.costs.empty()) persist_task(self, *st.env, st.t, {}, {}, std::move(rep.costs), std::move(rep.spend), [] {});
      return;
    }
  }
  agents::decision_record d;
  d.id = next_decision_id(st.t);
  d.step = node.id;
  d.by = "agent:" + rep.r.agent;
  d.options = node.decide.options;
  d.chosen = option;
  d.decided_by = rep.r.agent;
  d.comment = rep.r.text;
  d.pending = false;
  d.created_ms = s.started_ms;
  d.resolved_ms = s.finished_ms;
  st.t.decisions.push_back(std::move(d));
  // The call's cost row and the verdict commit together: after a crash either both are
  // there (the call is not repeated) or neither (it is, and paid once).
  resolve_decision(self, st.t.decisions.size() - 1, option, rep.r.agent, rep.r.text, nullptr, std::move(rep.costs),
                   std::move(rep.spend));
}

void on_report(task_self self, call_report& rep) {
  auto& st = self->state;
  auto& t = st.t;
  if (st.ended) {
    // A call abandoned when the task ended: its cost still commits.
    if (!rep.costs.empty() && st.env->store) {
      auto batch = std::make_shared<base::write_batch>();
      batch->costs = std::move(rep.costs);
      batch->entities = std::move(rep.spend);
      batch->can_wait = true;
      self->request(st.env->store, caf::infinite, write_atom::value, batch).then([](commit_reply&) {}, [](caf::error&) {});
    }
    return;
  }
  auto& s = t.steps[rep.step];
  if (rep.aborted) {
    s.cost.add({rep.r.tokens_in, rep.r.tokens_out, rep.usd, 1});
    t.cost.add({rep.r.tokens_in, rep.r.tokens_out, rep.usd, 1});
    persist_task(self, *st.env, t, {}, {}, std::move(rep.costs), std::move(rep.spend), [] {}, true);
    return;
  }
  if (agents::is_terminal(t.state) || s.state != step_state::running || s.attempts != rep.attempt) {
    if (!rep.costs.empty()) persist_task(self, *st.env, t, {}, {}, std::move(rep.costs), std::move(rep.spend), [] {}, true);
    return;
  }
  s.agent = rep.r.agent;
  s.started_ms = rep.started_ms;
  s.cost.add({rep.r.tokens_in, rep.r.tokens_out, rep.usd, 1});
  t.cost.add({rep.r.tokens_in, rep.r.tokens_out, rep.usd, 1});
  if (!rep.r.ok) {
    step_failed(self, rep.step, rep.r.error);
    if (!st.ended && !rep.costs.empty())
      persist_task(self, *st.env, t, {}, {}, std::move(rep.costs), std::move(rep.spend), [] {});
    return;
  }
  s.finished_ms = base::now_ms();
  if (s.started_ms > 0)
    st.env->stats->step_seconds.observe(static_cast<double>(s.finished_ms - s.started_ms) / 1000.0);
  const auto& node = st.wf->nodes[rep.step];
  if (node.is_decision) return agent_decided(self, rep, node);
  s.output = std::move(rep.r.text);
  s.state = step_state::succeeded;
  emit_task_event(*st.env, t, "step_finished", rep.step);
  if (agents::all_done(t)) {
    // The last step: its output and cost commit with the terminal snapshot, one
    // write instead of a journal patch and then the snapshot; the task announces
    // its end after that commit (after a crash before it the step runs again, as
    // after a crash before any step's commit).
    t.result = t.steps[st.wf->result_node].output;
    finish(self, task_state::succeeded, std::nullopt, nullptr, std::move(rep.costs), std::move(rep.spend));
    return;
  }
  // Durability contract: the step's output is committed before the next step starts.
  persist_task(self, *st.env, t, {rep.step}, {}, std::move(rep.costs), std::move(rep.spend), [self] { advance(self); });
}

/// A restarted incarnation: steps that were running are run again if their attempts allow.
void resume_after_crash(task_self self) {
  auto& st = self->state;
  auto& t = st.t;
  for (std::size_t i = 0; i < t.steps.size(); ++i) {
    auto& s = t.steps[i];
    const auto& node = st.wf->nodes[i];
    if (s.state != step_state::running || (node.is_decision && node.human)) continue;
    if (s.attempts >= max_attempts_for(t, node, st.env->max_attempts)) {
      s.state = step_state::failed;
      finish(self, task_state::failed,
             base::make_error(base::errc::internal, "step '" + s.id + "' failed after " + std::to_string(s.attempts) +
                                                        " attempt(s): task actor crashed: " + st.restarted_after));
      return;
    }
    s.state = step_state::pending;
  }
}

caf::behavior task_actor(task_self self, task_start start) {
  auto& st = self->state;
  st.t = std::move(start.t);
  st.wf = std::move(start.wf);
  st.env = std::move(start.env);
  st.box = std::move(start.box);
  st.restarted_after = std::move(start.restarted_after);
  st.ref = start.ref;
  // An exception ends this incarnation; the team (its supervisor) starts a new one from
  // the record left here, so completed steps are not run again.
  self->set_exception_handler([self](caf::scheduled_actor*, std::exception_ptr& ep) -> caf::error {
    auto what = exception_what(ep);
    auto& s = self->state;
    spdlog::error("task actor threw task={} team={} error=\"{}\"", s.t.id, s.env->team, what);
    if (s.box && !s.ended) {
      std::lock_guard guard{s.box->mutex};
      s.box->task = s.t;
    }
    // Its supervisor learns of it from here: task actors are not linked to their team,
    // since a link costs a lock and a scan of the team's links at every task's end.
    if (!s.ended) caf::anon_send(s.env->team_actor, task_crashed_atom::value, s.t.id, self->id(), what);
    return caf::make_error(caf::sec::runtime_error, "task '" + s.t.id + "': " + what);
  });
  if (!st.restarted_after.empty()) resume_after_crash(self);
  if (!st.ended) advance(self);
  return {
      [=](step_done_atom, call_report& rep) { on_report(self, rep); },
      [=](tick_atom) { advance(self); },  // the team's kick when no call of it is in flight
      [=](retry_atom, std::size_t step, int attempt) {
        auto& s = self->state;
        if (s.ended) return;
        auto& sr = s.t.steps[step];
        if (agents::is_terminal(s.t.state) || sr.state != step_state::running || sr.attempts != attempt) return;
        ++sr.attempts;
        want(self, step);
      },
      [=](decided_atom, const std::string& did, const std::string& option, const std::string& who,
          const std::string& comment, const reply_fn& reply) {
        auto& t = self->state.t;
        for (std::size_t d = 0; d < t.decisions.size(); ++d)
          if (t.decisions[d].id == did && t.decisions[d].pending && !self->state.ended)
            return resolve_decision(self, d, option, who, comment, reply);
        if (reply) reply(base::fail(base::errc::conflict, "decision '" + did + "' is no longer pending"));
      },
      // Asked by the team (request/response): a task actor that ended meanwhile answers
      // nothing, and the team then answers from the final record it received.
      // Answered once the cancelled state is committed (finish), hence the promise.
      [=](cancel_atom) -> caf::result<json_reply> {
        if (self->state.ended) return caf::sec::request_receiver_down;
        auto rp = self->make_response_promise();
        finish(self, task_state::cancelled, base::make_error(base::errc::cancelled, "cancelled by operator"),
               [rp](base::result<nlohmann::json> r) mutable {
                 rp.deliver(json_reply{r ? std::move(*r) : nlohmann::json()});
               });
        return caf::delegated<json_reply>();
      },
      [=](fail_atom, base::error& err) { finish(self, task_state::failed, std::move(err)); },
      [=](task_atom) -> caf::result<json_reply> {
        auto& state = self->state;
        if (state.ended) return caf::sec::request_receiver_down;
        auto doc = agents::to_json(state.t);
        if (state.shown_state) {  // its end is not committed yet: not a result, not an end
          doc["state"] = std::string(agents::to_string(*state.shown_state));
          doc["result"] = "";
          doc.erase("error");
        }
        return json_reply{std::move(doc)};
      },
      [=](done_atom) { self->quit(); },
      [=](fault_atom, const std::string& target) {
        throw std::runtime_error("injected fault in task actor (" + target + ")");
      },
  };
}

}  // namespace

caf::actor spawn_task_actor(caf::local_actor* team, task_start start) {
  // Not linked: its exception handler reports a crash to the team, and the team stops its
  // task actors when it ends (~team_state). Lazy: it is first scheduled with its first message (the report of the call the team
  // dispatched when it started the task, or the team's tick_atom), which saves a turn of
  // the scheduler per task.
  return team->spawn<caf::lazy_init>(task_actor, std::move(start));
}

int max_attempts_for(const agents::task& t, const agents::workflow_node& node, int team_default) {
  if (node.max_attempts) return node.max_attempts;
  return t.max_attempts ? t.max_attempts : team_default;
}

void emit_task_event(const task_env& env, const agents::task& t, const char* what, std::optional<std::size_t> step) {
  if (!env.bus || !env.bus->active()) return;
  auto ev = agents::make_event("task.update", "tasks", env.team, {}, t.id);
  nlohmann::json data{{"task", t.id}, {"team", env.team}, {"state", agents::to_string(t.state)},
                      {"what", what}, {"priority", t.priority}};
  if (step) {
    const auto& s = t.steps[*step];
    ev->agent = s.agent;
    data["step"] = s.id;
    data["step_state"] = agents::to_string(s.state);
    data["agent"] = s.agent;
    data["attempt"] = s.attempts;
    if (s.state == agents::step_state::succeeded) {
      data["output"] = s.output;
      data["duration_ms"] = s.finished_ms - s.started_ms;
      data["tokens"] = s.cost.tokens_in + s.cost.tokens_out;
    }
    if (s.error) data["error"] = agents::to_json(*s.error);
  }
  if (agents::is_terminal(t.state)) {
    data["result"] = t.result;
    data["cost"] = agents::to_json(t.cost);
    if (t.error) data["error"] = agents::to_json(*t.error);
  }
  ev->data = std::move(data);
  env.bus->publish(ev);
}

void persist_task(caf::event_based_actor* self, const task_env& env, agents::task& t,
                  const std::vector<std::size_t>& steps, const std::vector<std::size_t>& decisions,
                  std::vector<base::cost_row> costs, std::vector<base::entity_row> spend, std::function<void()> then,
                  bool can_wait) {
  t.updated_ms = base::now_ms();
  if (!env.store) {
    then();
    return;
  }
  ++t.seq;
  auto batch = std::make_shared<base::write_batch>();
  batch->can_wait = can_wait;
  if (agents::is_terminal(t.state) || t.seq - t.snapshot_seq >= env.snapshot_every) {
    base::task_row row;
    row.id = t.id;
    row.team = t.team;
    row.agent = t.agent;
    row.priority = t.priority;
    row.state = std::string(agents::to_string(t.state));
    row.idempotency_key = t.idempotency_key;
    row.snapshot = agents::snapshot_text(t);
    row.seq = t.seq;
    row.created_ms = t.created_ms;
    row.updated_ms = t.updated_ms;
    batch->snapshots.push_back(std::move(row));
    t.snapshot_seq = t.seq;
  } else {
    base::journal_row j;
    j.task_id = t.id;
    j.seq = t.seq;
    j.kind = "patch";
    j.payload = agents::patch_text(t, steps, decisions);
    j.ts_ms = t.updated_ms;
    batch->journal.push_back(std::move(j));
  }
  for (auto d : decisions) {
    const auto& rec = t.decisions[d];
    base::decision_row row;
    row.id = rec.id;
    row.task_id = t.id;
    row.step_id = rec.step;
    row.state = rec.pending ? "pending" : "resolved";
    row.record = agents::to_json(rec).dump();
    row.deadline_ms = rec.deadline_ms;
    batch->decisions.push_back(std::move(row));
  }
  // Spend travels with its cost rows: no extra commit per call, and after a crash the
  // budget spent and the calls recorded agree.
  batch->entities = std::move(spend);
  batch->costs = std::move(costs);
  self->request(env.store, caf::infinite, write_atom::value, batch)
      .then([then](commit_reply&) { then(); },
            [](caf::error&) { /* the store actor is gone: the daemon is stopping */ });
}

}  // namespace troupe::actors::detail
