#include "troupe/actors/agent_actor.hpp"

#include <chrono>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "exception_error.hpp"
#include "troupe/actors/llm_call_actor.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/agents/scripted.hpp"
#include "troupe/base/clock.hpp"


namespace troupe::actors {
namespace {

using sweep_atom = caf::atom_constant<caf::atom("callsweep")>;

struct in_flight {
  std::string task_id;
  step_result result;                              ///< scripted: the answer to deliver later
  caf::actor call;                                 ///< network calls: the call actor
  std::chrono::steady_clock::time_point started;
  /// Network calls: the prompt's estimated tokens, recorded if the call is abandoned (the
  /// provider may have read and billed the prompt; the output tokens stay unknown).
  std::int64_t est_tokens_in = 0;
  /// Network calls: when the call is abandoned if its client has not answered (actor
  /// clock), and how long that is after its start.
  caf::actor_clock::time_point deadline{};
  std::int64_t limit_ms = 0;
};

/// What an agent needs once it has worked: made at its first work order, so that an
/// idle agent's actor carries two pointers of state (memory per idle agent matters at
/// 100,000 agents: it keeps the actor in a smaller allocation class).
struct agent_work {
  std::unique_ptr<agents::scripted_model> scripted;   ///< built at the first scripted call
  std::unordered_map<std::uint64_t, in_flight> calls;
  bool sweeping = false;  ///< a sweep for overdue network calls is scheduled
};

struct agent_state {
  std::shared_ptr<const agent_spec> spec;  ///< shared with the team's slot; replaced by a reload
  std::unique_ptr<agent_work> busy;
  agent_work& work() {
    if (!busy) busy = std::make_unique<agent_work>();
    return *busy;
  }
  const caf::actor& dispatcher() const { return spec->env->dispatcher; }
  static inline const char* name = "troupe.agent";
};


step_result base_result(const agent_state& st, const work_order& w) {
  step_result r;
  r.call_id = w.call_id;
  r.agent = st.spec->agent->name;
  r.provider = st.spec->provider->name;
  r.model = st.spec->model->name;
  return r;
}

void run_scripted(caf::stateful_actor<agent_state>* self, const work_order& w) {
  auto& st = self->state;
  auto lookup = [&w](std::string_view name, std::string& out) {
    for (const auto& [k, v] : w.vars)
      if (k == name) {
        out = v;
        return true;
      }
    return false;
  };
  auto& scripted = st.work().scripted;
  if (!scripted) scripted = std::make_unique<agents::scripted_model>(*st.spec->provider);
  auto outcome = scripted->answer(st.spec->agent->system, w.prompt, lookup);
  auto r = base_result(st, w);
  r.tokens_in = outcome.tokens_in;
  r.latency_ms = outcome.latency_ms;
  switch (outcome.fault) {
    case config::scripted_fault::throw_:
      // A scripted crash: the exception ends this actor and its team restarts it.
      throw std::runtime_error("scripted exception in agent '" + st.spec->agent->name + "': " + outcome.error);
    case config::scripted_fault::hang:
      st.work().calls[w.call_id] = in_flight{w.task_id, r, caf::actor{}, std::chrono::steady_clock::now()};
      return;
    case config::scripted_fault::error:
    case config::scripted_fault::fatal:
      r.ok = false;
      r.error = base::make_error(base::errc::provider_error, outcome.error,
                                 outcome.fault == config::scripted_fault::error);
      break;
    case config::scripted_fault::none:
      r.ok = true;
      r.text = std::move(outcome.text);
      r.tokens_out = outcome.tokens_out;
      break;
  }
  if (outcome.latency_ms <= 0) {
    self->send(st.dispatcher(), step_done_atom::value, std::move(r));
    return;
  }
  auto id = w.call_id;
  st.work().calls[id] = in_flight{w.task_id, std::move(r), caf::actor{}, std::chrono::steady_clock::now()};
  self->delayed_send(self, std::chrono::milliseconds(outcome.latency_ms), scripted_atom::value, id);
}

void run_network(caf::stateful_actor<agent_state>* self, const work_order& w) {
  auto& st = self->state;
  base::llm_request req;
  const auto& model = *st.spec->model;
  req.provider = st.spec->provider->name;
  req.model = model.api_name.empty() ? model.name : model.api_name;
  req.system = st.spec->agent->system;
  req.messages.push_back({"user", w.prompt});
  req.max_tokens = model.max_tokens;
  req.temperature = model.temperature.value_or(-1);
  req.stop = model.stop;
  req.stream = model.stream;
  req.timeout_ms = st.spec->provider->timeout_ms;
  req.priority = w.priority;
  req.team = st.spec->env->team;
  req.task_id = w.task_id;
  auto id = w.call_id;
  base::llm_token_fn on_token;
  if (st.spec->env->bus && req.stream) {
    auto bus = st.spec->env->bus;
    auto team = st.spec->env->team, agent = st.spec->agent->name, task = w.task_id, step = w.step_id;
    on_token = [bus, team, agent, task, step](std::string_view token) {
      if (!bus->active()) return;
      auto ev = agents::make_event("task.update", "tasks", team, agent, task);
      ev->data = {{"task", task}, {"team", team}, {"state", "running"}, {"step", step}, {"token", std::string(token)}};
      bus->publish(ev);
    };
  }
  const auto limit = std::chrono::milliseconds(req.timeout_ms) + call_grace;
  auto call = spawn_llm_call(self, id, st.spec->env->llm, std::move(req), std::move(on_token));
  auto& wk = st.work();
  wk.calls[id] = in_flight{w.task_id, base_result(st, w), call, std::chrono::steady_clock::now(),
                          agents::estimate_tokens(st.spec->agent->system) + agents::estimate_tokens(w.prompt),
                          self->clock().now() + limit, limit.count()};
  if (!wk.sweeping) {
    wk.sweeping = true;
    self->delayed_send(self, call_sweep_every, sweep_atom::value);
  }
}

/// The backstop for clients that never answer: abandons every network call past its
/// deadline as timed out (retryable, like a provider timeout), and sweeps again in a
/// second while network calls remain.
void sweep_calls(caf::stateful_actor<agent_state>* self) {
  auto& wk = self->state.work();
  const auto now = self->clock().now();
  bool pending = false;
  for (auto it = wk.calls.begin(); it != wk.calls.end();) {
    auto& c = it->second;
    if (!c.call || c.deadline > now) {
      pending = pending || c.call;
      ++it;
      continue;
    }
    // The call actor cancels its request and ends; its report, if one is already
    // on the way, finds no call here and is dropped.
    caf::anon_send<caf::message_priority::high>(c.call, cancel_atom::value);
    auto r = std::move(c.result);
    r.ok = false;
    r.tokens_in = c.est_tokens_in;  // the provider may have read the prompt
    r.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - c.started)
                       .count();
    r.error = base::make_error(
        base::errc::timeout, "the provider client did not answer within " + std::to_string(c.limit_ms) + " ms", true);
    self->send(self->state.dispatcher(), step_done_atom::value, std::move(r));
    it = wk.calls.erase(it);
  }
  wk.sweeping = pending;
  if (pending) self->delayed_send(self, call_sweep_every, sweep_atom::value);
}

caf::behavior agent_actor(caf::stateful_actor<agent_state>* self, std::shared_ptr<const agent_spec> spec) {
  self->state.spec = std::move(spec);
  // An exception ends this incarnation with an error its team (the supervisor) sees in the
  // down message; say what happened in our log instead of CAF's raw stderr line.
  self->set_exception_handler(detail::exception_to_error);
  return {
      [=](assign_atom, const work_order& w) {
        auto& st = self->state;
        if (st.spec->provider->kind == config::provider_kind::scripted) {
          run_scripted(self, w);
        } else if (st.spec->env->llm) {
          run_network(self, w);
        } else {
          auto r = base_result(st, w);
          r.error = base::make_error(base::errc::unavailable, "no client for provider '" + st.spec->provider->name + "'");
          self->send(st.dispatcher(), step_done_atom::value, std::move(r));
        }
      },
      // Test hook ("call:AGENT"): one of this agent's LLM call actors throws.
      [=](fault_atom, const std::string& target) {
        for (const auto& [id, c] : self->state.work().calls)
          if (c.call) {
            self->send(c.call, fault_atom::value, target);
            return;
          }
      },
      [=](reconfigure_atom, agent_spec& next) {
        auto& st = self->state;
        // A new provider means new scripted replies (and fresh reply counters).
        if (next.provider != st.spec->provider && st.busy) st.busy->scripted.reset();
        st.spec = std::make_shared<const agent_spec>(std::move(next));
      },
      [=](sweep_atom) { sweep_calls(self); },
      [=](scripted_atom, std::uint64_t id) {
        auto it = self->state.work().calls.find(id);
        if (it == self->state.work().calls.end()) return;  // cancelled meanwhile
        self->send(self->state.dispatcher(), step_done_atom::value, std::move(it->second.result));
        self->state.work().calls.erase(it);
      },
      [=](llm_done_atom, std::uint64_t id, const llm_outcome& res) {
        auto it = self->state.work().calls.find(id);
        if (it == self->state.work().calls.end()) return;
        auto r = std::move(it->second.result);
        r.latency_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - it->second.started).count();
        self->state.work().calls.erase(it);
        if (*res) {
          r.ok = true;
          r.text = std::move((*res)->text);
          r.tokens_in = (*res)->usage.tokens_in;
          r.tokens_out = (*res)->usage.tokens_out;
        } else {
          r.ok = false;
          r.error = res->error();
        }
        self->send(self->state.dispatcher(), step_done_atom::value, std::move(r));
      },
      [=](cancel_atom, const std::string& task_id) {
        auto& calls = self->state.work().calls;
        for (auto it = calls.begin(); it != calls.end();) {
          if (it->second.task_id == task_id) {
            if (it->second.call)
              caf::anon_send<caf::message_priority::high>(it->second.call, cancel_atom::value);
            // Abandoned, and reported as such at once: the team frees the slot and
            // records what the call cost so far (a scripted answer's tokens; for an
            // aborted network request, its prompt's estimated tokens and no output).
            auto r = std::move(it->second.result);
            r.ok = false;
            r.text.clear();
            if (it->second.call) {
              r.tokens_in = it->second.est_tokens_in;
              r.tokens_out = 0;
            }
            r.error = base::make_error(base::errc::cancelled, "call abandoned: its task was cancelled or ended");
            self->send(self->state.dispatcher(), step_done_atom::value, std::move(r));
            it = calls.erase(it);
          } else {
            ++it;
          }
        }
      },
  };
}

}  // namespace

caf::actor spawn_agent(caf::local_actor* parent, std::shared_ptr<const agent_spec> spec) {
  // The team's supervisor monitors the agent (supervisor::attach), so each crash comes
  // back as one down message; the team stops its agents when it ends. Lazy: the behavior is
  // built at the first message, so an agent that never works costs no handlers (memory
  // per idle agent).
  return parent->spawn<caf::lazy_init>(agent_actor, std::move(spec));
}

}  // namespace troupe::actors

