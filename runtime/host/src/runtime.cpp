// The composition root and control-plane bridge: the only code that sees both
// the actors and the network-facing control_port.
#include "troupe/host/runtime.hpp"

#include "metrics_histograms.hpp"
#include "runtime_impl.hpp"

#include <chrono>
#include <future>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/store_actor.hpp"
#include "troupe/actors/supervision/root_supervisor.hpp"
#include "troupe/actors/team_actor.hpp"
#include "troupe/agents/recovery.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"
#include "troupe/host/lean_coordinator.hpp"
#include "troupe/persistence/open_store.hpp"
#include "troupe/protocols/llm/llm_pool.hpp"
#include "troupe/protocols/wire/submit.hpp"

namespace troupe::host {
namespace {

using nlohmann::json;
using protocols::reply_fn;
using detail::fan_in;

/// First success among the replies, else the most specific error (not_found last).
base::result<json> first_success(fan_in::results& all, const std::string& what) {
  std::optional<base::error> err;
  for (auto& r : all) {
    if (r) return std::move(r);
    if (!err || err->code == base::errc::not_found) err = r.error();
  }
  if (err) return base::fail(*err);
  return base::fail(base::errc::not_found, what);
}

bool flag(const json& args, const char* key) {
  auto it = args.find(key);
  return it != args.end() && it->is_boolean() && it->get<bool>();
}

std::string str_arg(const json& args, const char* key) {
  auto it = args.find(key);
  return it != args.end() && it->is_string() ? it->get<std::string>() : std::string();
}

struct caf_config : caf::actor_system_config {
  explicit caf_config(int threads) {
    set("scheduler.max-threads", threads);
    // A worker whose queue ran dry polls "moderately" for a while before it sleeps
    // on a condition variable; with the lean coordinator only one worker at a time
    // polls, and it polls the llm client's sockets too (below). CAF's default is
    // 500 polls 50 us apart; every poll is a timed wake-up, which costs tens of
    // microseconds of CPU on a virtual machine. 50 polls 500 us apart keep a 25 ms
    // window; a reply or a job from the store waits half a millisecond on average.
    // Measured (docs/benchmarks.md, "LLM calls" and "One poller"): 1 ms apart cost
    // 0.5-1 % of the calls at 256 in flight, 500 us none, at the same CPU per call.
    set("work-stealing.moderate-poll-attempts", 50);
    set("work-stealing.moderate-sleep-duration", caf::timespan{std::chrono::microseconds{500}});
    // Work stealing, with a clock that ending actors without timeouts leave alone
    // (troupe/host/lean_coordinator.hpp): CAF's own choice of scheduler is skipped.
    load<lean_coordinator>();
  }
};

}  // namespace

namespace {

/// Sends to every team (through `send(name, slot)`) and answers with the first success.
template <class Send>
void broadcast(const detail::routes& table, reply_fn reply, const std::string& missing, Send send) {
  auto f = std::make_shared<fan_in>(table.team_names.size(), [reply, missing](fan_in::results all) {
    reply(first_success(all, missing));
  });
  for (const auto& name : table.team_names) send(name, f->slot(f));
}

}  // namespace

runtime::runtime(config::config cfg, runtime_options opts) : impl_(std::make_unique<impl>()) {
  impl_->cfg = std::make_shared<const config::config>(std::move(cfg));
  impl_->opts = std::move(opts);
}

runtime::~runtime() { stop(0); }

const config::config& runtime::cfg() const { return *impl_->cfg; }
void runtime::set_config_source(std::function<config::load_result()> fn) { impl_->config_source = std::move(fn); }
std::shared_ptr<agents::event_bus> runtime::bus() const { return impl_->bus; }
void runtime::on_shutdown_request(std::function<void()> fn) { impl_->shutdown_fn = std::move(fn); }

base::result<startup_report> runtime::start() {
  auto& d = *impl_;
  startup_report report;
  std::unordered_map<std::string, std::vector<agents::task>> recovered;
  std::unordered_map<std::string, std::vector<base::entity_row>> entities;  ///< by team
  if (d.opts.persistent) {
    auto url = d.opts.store_override.empty() ? d.cfg->store : d.opts.store_override;
    auto opened = persistence::open_store(url);
    if (!opened) return base::fail(opened.error());
    d.store = std::shared_ptr<base::snapshot_store>(std::move(*opened));
    auto version = d.store->migrate();
    if (!version) return base::fail(version.error());
    report.store = d.store->describe();
    report.schema_version = *version;
    auto started = std::chrono::steady_clock::now();
    auto state = d.store->recover();
    if (!state) return base::fail(state.error());
    // Rebuild each task from its snapshot plus the deltas journalled after it.
    auto rebuilt = agents::rebuild_tasks(*state);
    for (const auto& p : rebuilt.problems) spdlog::error("skipping task on recovery {}", p);
    for (auto& t : rebuilt.tasks) {
      auto team = t.team;
      if (!d.cfg->find_team(team)) {
        spdlog::warn("recovered task belongs to a team no longer configured; it stays stored task={} team={}", t.id, team);
        continue;
      }
      recovered[team].push_back(std::move(t));
      ++report.recovered_tasks;
    }
    report.pending_decisions = state->pending_decisions.size();
    for (auto& e : state->entities) entities[e.team].push_back(std::move(e));
    report.recovery_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  } else {
    report.store = "none (in-memory)";
  }
  bool network = std::any_of(d.cfg->providers.begin(), d.cfg->providers.end(),
                             [](const auto& p) { return p.second.kind != config::provider_kind::scripted; });
  if (network) d.llm = protocols::llm::make_llm_pool(d.cfg->providers, 1);
  d.sys_cfg = std::make_unique<caf_config>(d.cfg->rt.threads);
  d.sys = std::make_unique<caf::actor_system>(*d.sys_cfg);
  // The llm I/O thread's loop is polled by the idle worker that polls anyway.
  if (d.llm)
    if (auto io = d.llm->driver())
      if (auto* coordinator = dynamic_cast<lean_coordinator*>(&d.sys->scheduler())) coordinator->drive(io);
  if (d.store) {
    actors::store_options so;
    so.max_batch = static_cast<std::size_t>(d.cfg->rt.commit_batch);
    so.linger_us = d.cfg->rt.commit_interval_ms * 1000;
    so.end_us = d.cfg->rt.end_commit_interval_ms * 1000;
    so.retention_ms = static_cast<std::int64_t>(d.cfg->rt.retention_days) * 24 * 3600 * 1000;
    // PostgreSQL: more connections, so that commits overlap their WAL flushes.
    auto url = d.opts.store_override.empty() ? d.cfg->store : d.opts.store_override;
    for (std::size_t i = 0, n = persistence::overlapped_writers(url); i < n; ++i) {
      auto writer = persistence::open_store(url);
      if (!writer) return base::fail(writer.error());
      so.extra_writers.push_back(std::shared_ptr<base::snapshot_store>(std::move(*writer)));
    }
    d.store_actor = actors::spawn_store(*d.sys, d.store, d.store_stats, so);
  }
  auto table = std::make_shared<detail::routes>();
  actors::supervision::root_spec root;
  root.intensity = d.cfg->rt.teams_sup;
  root.store = d.store_actor;
  root.directory = d.directory;
  for (const auto& team : d.cfg->teams) {
    auto spec = d.team_spec_of(d.cfg, team);
    if (!spec) return base::fail(spec.error());
    for (const auto& agent_name : team.agents) table->agent_team.emplace(agent_name, team.name);
    spec->recovered = std::move(recovered[team.name]);
    spec->recovered_entities = std::move(entities[team.name]);
    table->stats[team.name] = spec->stats;
    table->team_names.push_back(team.name);
    root.teams.push_back(std::move(*spec));
  }
  // The root supervisor spawns the teams and keeps the directory of their current incarnations.
  d.root = actors::supervision::spawn_root_supervisor(*d.sys, std::move(root));
  {
    caf::scoped_actor self{*d.sys};
    bool ready = false;
    self->request(d.root, std::chrono::seconds(30), actors::ready_atom::value)
        .receive([&](int) { ready = true; }, [](caf::error&) {});
    if (!ready) return base::fail(base::errc::internal, "the root supervisor did not start the teams");
  }
  {
    std::lock_guard guard{d.mutex};
    d.table = std::move(table);
  }
  if (!d.config_source) {
    auto path = d.cfg->source_path;
    d.config_source = [path] {
      if (path.empty()) return config::load_result{std::nullopt, {{"", "the running config was not loaded from a file; nothing to reload"}}, {}};
      return config::load_config_file(path);
    };
  }
  d.started = true;
  return report;
}

void runtime::stop(std::int64_t grace_ms) {
  auto& d = *impl_;
  {
    std::lock_guard guard{d.mutex};
    if (!d.started || d.stopped) return;
    d.stopped = true;
  }
  auto routes = d.routes();
  // Drain: no new tasks, let in-flight calls finish and commit.
  if (grace_ms > 0) {
    auto all = std::make_shared<std::promise<void>>();
    auto fut = all->get_future();
    auto f = std::make_shared<fan_in>(routes->team_names.size(), [all](fan_in::results) { all->set_value(); });
    for (const auto& name : routes->team_names)
      d.send_team<caf::message_priority::high>(name, f->slot(f), actors::drain_atom::value);
    if (fut.wait_for(std::chrono::milliseconds(grace_ms)) != std::future_status::ready)
      spdlog::warn("drain timed out after {} ms; unfinished calls resume after restart", grace_ms);
  }
  // The teams are linked to the root supervisor: they end with it.
  caf::anon_send_exit(d.root, caf::exit_reason::user_shutdown);
  // Network calls still in flight are aborted; their callbacks must not outlive the actor system.
  if (d.llm) d.llm->shutdown();
  if (d.store_actor) {
    // The store answers writes in order: a last empty write returns after everything before it.
    caf::scoped_actor self{*d.sys};
    self->request(d.store_actor, std::chrono::seconds(10), actors::write_atom::value,
                  std::make_shared<base::write_batch>())
        .receive([](actors::commit_reply&) {}, [](caf::error&) {});
    caf::anon_send_exit(d.store_actor, caf::exit_reason::user_shutdown);
  }
  // A detached actor's thread ends only when the last handle to it is gone.
  d.store_actor = nullptr;
  d.root = nullptr;
  d.directory->clear();
  routes.reset();
  {
    std::lock_guard guard{d.mutex};
    d.table = std::make_shared<detail::routes>();
  }
  d.sys.reset();  // waits for every actor
}

std::shared_ptr<void> runtime::listen(protocols::event_fn fn) {
  return impl_->bus->subscribe([fn = std::move(fn)](const agents::event_ptr& ev) {
    auto out = std::make_shared<protocols::event>();
    out->name = ev->name;
    out->topic = ev->topic;
    out->team = ev->team;
    out->agent = ev->agent;
    out->task = ev->task;
    out->ts_ms = ev->ts_ms;
    out->data = ev->data;
    fn(out);
  });
}

namespace {
/// The reply of one control request. If every copy is dropped unanswered (the
/// message died in the mailbox of a team that crashed, or with the actor system),
/// the client still gets an answer instead of waiting forever.
struct pending_reply {
  reply_fn reply;
  std::atomic<bool> answered{false};
  explicit pending_reply(reply_fn r) : reply(std::move(r)) {}
  pending_reply(const pending_reply&) = delete;
  pending_reply& operator=(const pending_reply&) = delete;
  ~pending_reply() {
    if (answered.exchange(true)) return;
    try {
      reply(base::fail(base::errc::unavailable,
                       "the request was dropped unanswered (its team restarted or the daemon is stopping); retry"));
    } catch (...) {  // a destructor must not throw; the session is gone anyway
    }
  }
};
}  // namespace

bool runtime::inject_fault_for_tests(const std::string& team, const std::string& target) {
  auto h = impl_->directory->get(team);
  if (!h) return false;
  caf::anon_send(h, actors::fault_atom::value, target);
  return true;
}

void runtime::call(const protocols::principal& who, const std::string& op, json args, reply_fn reply) {
  auto pending = std::make_shared<pending_reply>(std::move(reply));
  auto once = [pending](base::result<json> r) {
    if (!pending->answered.exchange(true)) pending->reply(std::move(r));
  };
  // A malformed argument must never escape as an exception into an I/O thread.
  try {
    dispatch(who, op, std::move(args), once);
  } catch (const std::exception& e) {
    once(base::fail(base::errc::bad_request, "op '" + op + "': " + e.what()));
  }
}

void runtime::dispatch(const protocols::principal& who, const std::string& op, json args, reply_fn reply) {
  auto& d = *impl_;
  using base::errc;
  if (!d.started || d.stopped) return reply(base::fail(errc::unavailable, "the runtime is not running"));
  if (!args.is_object()) args = json::object();
  const auto routes = d.routes();  // this request's view, whatever a reload does meanwhile
  const auto& table = *routes;
  if (op == "submit") {
    // The audit row goes into the task's own commit when the team can put it there
    // (see team_state::submit); otherwise it is written when the submit is answered.
    std::shared_ptr<agents::submit_audit> audit;
    if (d.store_actor) {
      audit = std::make_shared<agents::submit_audit>();
      audit->principal = who.name;
      audit->args_json = actors::audit_args(args);
      auto logged = actors::audited(d.store_actor, who.name, "submit", "", audit->args_json, reply);
      reply = [audit, plain = std::move(reply), logged = std::move(logged)](base::result<json> r) {
        if (audit->committed.load()) return plain(std::move(r));
        logged(std::move(r));  // target: the new task's id
      };
    }
    auto spec = protocols::wire::parse_submit(args);
    if (!spec) return reply(base::fail(spec.error()));
    spec->audit = audit;
    std::string team = spec->team;
    if (team.empty()) {
      auto it = table.agent_team.find(spec->agent);
      if (it == table.agent_team.end()) return reply(base::fail(errc::not_found, "no agent '" + spec->agent + "' in any team"));
      team = it->second;
    }
    if (table.retiring.count(team))
      return reply(base::fail(errc::not_found, "team '" + team +
                                                   "' was removed from the config; it finishes its tasks but takes no new ones"));
    if (!table.stats.count(team)) return reply(base::fail(errc::not_found, "no team '" + team + "'"));
    if (!d.store_stats->healthy.load(std::memory_order_relaxed) && d.store_actor) {
      // Do not even try: nothing is acknowledged without a commit.
      return reply(base::fail(errc::unavailable, "the store cannot commit right now; retry later"));
    }
    d.send_team(team, reply, actors::submit_atom::value, std::move(*spec));
    return;
  }
  if (op == "task" || (op == "tasks" && (args.contains("task") || args.contains("id")))) {
    // "tasks" filtered to one task (a subscriber's snapshot) is answered like "task".
    auto id = str_arg(args, "id");
    if (id.empty()) id = str_arg(args, "task");
    if (op == "tasks") {
      auto inner = reply;
      reply = [inner](base::result<json> r) {
        if (r) return inner(json{{"tasks", json::array({std::move(*r)})}});
        if (r.error().code == errc::not_found) return inner(json{{"tasks", json::array()}});
        inner(std::move(r));
      };
    }
    if (id.empty()) return reply(base::fail(errc::bad_request, "field 'id' (task id) is required"));
    auto store = d.store_actor;
    auto f = std::make_shared<fan_in>(table.team_names.size(), [reply, id, store](fan_in::results all) {
      auto r = first_success(all, "no task '" + id + "'");
      if (r || r.error().code != errc::not_found || !store) return reply(std::move(r));
      caf::anon_send(store, actors::load_atom::value, id, reply);  // finished long ago: ask the store
    });
    for (const auto& name : table.team_names) d.send_team(name, f->slot(f), actors::task_atom::value, id);
    return;
  }
  if (op == "tasks") {
    actors::list_filter filter;
    filter.state = str_arg(args, "state");
    if (auto it = args.find("limit"); it != args.end() && it->is_number_integer())
      filter.limit = static_cast<std::size_t>(std::clamp<long long>(it->get<long long>(), 1, 10000));
    auto team = str_arg(args, "team");
    std::vector<std::string> targets;
    for (const auto& name : table.team_names)
      if (team.empty() || team == name) targets.push_back(name);
    auto limit = filter.limit;
    auto f = std::make_shared<fan_in>(targets.size(), [reply, limit](fan_in::results all) {
      auto out = json::array();
      for (auto& r : all)
        if (r)
          for (auto& t : (*r)["tasks"])
            if (out.size() < limit) out.push_back(std::move(t));
      reply(json{{"tasks", std::move(out)}});
    });
    for (const auto& name : targets) d.send_team(name, f->slot(f), actors::tasks_atom::value, filter);
    return;
  }
  if (op == "cancel") {
    auto id = str_arg(args, "id");
    if (id.empty()) id = str_arg(args, "task");
    reply = d.audited(who, "cancel", id, args, std::move(reply));
    if (id.empty()) return reply(base::fail(errc::bad_request, "field 'id' (task id) is required"));
    broadcast(table, reply, "no task '" + id + "'", [&d, id](const std::string& name, reply_fn slot) {
      d.send_team<caf::message_priority::high>(name, slot, actors::cancel_atom::value, id);
    });
    return;
  }
  if (op == "decide") {
    actors::decide_cmd cmd;
    cmd.decision_id = str_arg(args, "decision_id");
    if (cmd.decision_id.empty()) cmd.decision_id = str_arg(args, "id");
    cmd.option = str_arg(args, "option");
    cmd.comment = str_arg(args, "comment");
    cmd.who = who.name;
    reply = d.audited(who, "decide", cmd.decision_id, args, std::move(reply));
    if (cmd.decision_id.empty()) return reply(base::fail(errc::bad_request, "field 'decision_id' is required"));
    if (cmd.option.empty()) return reply(base::fail(errc::bad_request, "field 'option' is required"));
    broadcast(table, reply, "no pending decision '" + cmd.decision_id + "'", [&d, cmd](const std::string& name, reply_fn slot) {
      d.send_team<caf::message_priority::high>(name, slot, actors::decide_atom::value, cmd);
    });
    return;
  }
  if (op == "decisions" || op == "agents" || op == "teams") {
    bool decisions = op == "decisions";
    auto team = str_arg(args, "team");
    std::vector<std::string> targets;
    for (const auto& name : table.team_names)
      if (team.empty() || team == name) targets.push_back(name);
    auto f = std::make_shared<fan_in>(targets.size(), [reply, op, decisions](fan_in::results all) {
      auto out = json::array();
      for (auto& r : all) {
        if (!r) continue;
        if (decisions)
          for (auto& x : (*r)["decisions"]) out.push_back(std::move(x));
        else if (op == "agents")
          for (auto& x : (*r)["agents"]) out.push_back(std::move(x));
        else
          out.push_back(std::move(*r));
      }
      reply(json{{op, std::move(out)}});
    });
    for (const auto& name : targets) {
      if (decisions)
        d.send_team(name, f->slot(f), actors::decisions_atom::value);
      else
        d.send_team(name, f->slot(f), actors::status_atom::value);
    }
    return;
  }
  if (op == "pause" || op == "resume" || op == "restart") {
    auto team = str_arg(args, "team");
    auto agent = str_arg(args, "agent");
    if (team.empty() && !agent.empty())
      if (auto it = table.agent_team.find(agent); it != table.agent_team.end()) team = it->second;
    reply = d.audited(who, op, agent.empty() ? team : agent, args, std::move(reply));
    if (!table.stats.count(team))
      return reply(base::fail(team.empty() ? errc::bad_request : errc::not_found,
                              team.empty() ? "field 'team' or 'agent' is required" : "no team '" + team + "'"));
    constexpr auto high = caf::message_priority::high;
    if (op == "pause")
      d.send_team<high>(team, reply, actors::pause_atom::value, agent, flag(args, "abort"));
    else if (op == "resume")
      d.send_team<high>(team, reply, actors::resume_atom::value, agent);
    else
      d.send_team<high>(team, reply, actors::restart_atom::value);
    return;
  }
  if (op == "ready") {
    if (!d.store_actor) return reply(json{{"status", "ready"}, {"store", "none"}, {"teams", table.team_names.size()}});
    auto teams = table.team_names.size();
    auto stats = d.store_stats;
    caf::anon_send(d.store_actor, actors::ping_atom::value, reply_fn([reply, teams, stats](base::result<json> r) {
      if (!r) return reply(base::fail(base::errc::unavailable, "store unreachable: " + r.error().message));
      if (!stats->healthy.load()) return reply(base::fail(base::errc::unavailable, "store is reconnecting; commits are failing"));
      (*r)["status"] = "ready";
      (*r)["teams"] = teams;
      reply(std::move(*r));
    }));
    return;
  }
  if (op == "audit") {
    if (!d.store_actor) return reply(json{{"entries", json::array()}});
    std::size_t limit = 100;
    if (auto it = args.find("limit"); it != args.end() && it->is_number_integer())
      limit = static_cast<std::size_t>(std::clamp<long long>(it->get<long long>(), 1, 10000));
    caf::anon_send(d.store_actor, actors::audit_atom::value, limit, reply);
    return;
  }
  if (op == "metrics") {
    json teams = json::object();
    for (const auto& [name, s] : table.stats)
      teams[name] = {{"submitted", s->submitted.load()}, {"succeeded", s->succeeded.load()},
                     {"failed", s->failed.load()}, {"cancelled", s->cancelled.load()},
                     {"rejected", s->rejected.load()}, {"queued", s->queued.load()},
                     {"restarts", s->restarts.load()}, {"team_restarts", s->team_restarts.load()},
                     {"decision_restarts", s->decision_restarts.load()}, {"llm_calls", s->llm_calls.load()},
                     {"tokens_in", s->tokens_in.load()}, {"tokens_out", s->tokens_out.load()},
                     {"cost_usd", static_cast<double>(s->cost_micro_usd.load()) / 1e6}};
    return reply(json{{"teams", teams},
                      {"store", {{"healthy", d.store_stats->healthy.load()}, {"commits", d.store_stats->commits.load()},
                                 {"rows", d.store_stats->rows.load()}, {"failures", d.store_stats->failures.load()}}},
                      {"events_published", d.bus->published()}});
  }
  if (op == "shutdown") {
    reply = d.audited(who, "shutdown", "daemon", args, std::move(reply));
    if (!d.shutdown_fn) return reply(base::fail(errc::unavailable, "shutdown is not available in this process"));
    reply(json{{"shutting_down", true}});
    d.shutdown_fn();
    return;
  }
  if (op == "reload") return reload(who, std::move(reply));
  reply(base::fail(errc::bad_request, "unknown op '" + op + "'"));
}

std::string runtime::metrics_text() {
  auto& d = *impl_;
  const auto routes = d.routes();
  const auto& stats = routes->stats;
  std::ostringstream out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  };
  family("troupe_tasks_total", "counter", "Tasks by team and outcome.");
  for (const auto& [team, s] : stats) {
    out << "troupe_tasks_total{team=\"" << team << "\",outcome=\"submitted\"} " << s->submitted.load() << '\n';
    out << "troupe_tasks_total{team=\"" << team << "\",outcome=\"succeeded\"} " << s->succeeded.load() << '\n';
    out << "troupe_tasks_total{team=\"" << team << "\",outcome=\"failed\"} " << s->failed.load() << '\n';
    out << "troupe_tasks_total{team=\"" << team << "\",outcome=\"cancelled\"} " << s->cancelled.load() << '\n';
    out << "troupe_tasks_total{team=\"" << team << "\",outcome=\"rejected\"} " << s->rejected.load() << '\n';
  }
  family("troupe_queue_depth", "gauge", "Queued tasks per team.");
  for (const auto& [team, s] : stats) out << "troupe_queue_depth{team=\"" << team << "\"} " << s->queued.load() << '\n';
  family("troupe_agent_restarts_total", "counter", "Agent restarts per team.");
  for (const auto& [team, s] : stats) out << "troupe_agent_restarts_total{team=\"" << team << "\"} " << s->restarts.load() << '\n';
  family("troupe_team_restarts_total", "counter", "Restarts of the team actor by the root supervisor.");
  for (const auto& [team, s] : stats) out << "troupe_team_restarts_total{team=\"" << team << "\"} " << s->team_restarts.load() << '\n';
  family("troupe_llm_calls_total", "counter", "LLM calls per team.");
  for (const auto& [team, s] : stats) out << "troupe_llm_calls_total{team=\"" << team << "\"} " << s->llm_calls.load() << '\n';
  family("troupe_llm_tokens_total", "counter", "Tokens per team and direction.");
  for (const auto& [team, s] : stats) {
    out << "troupe_llm_tokens_total{team=\"" << team << "\",direction=\"in\"} " << s->tokens_in.load() << '\n';
    out << "troupe_llm_tokens_total{team=\"" << team << "\",direction=\"out\"} " << s->tokens_out.load() << '\n';
  }
  family("troupe_cost_usd_total", "counter", "Cost in USD per team.");
  for (const auto& [team, s] : stats)
    out << "troupe_cost_usd_total{team=\"" << team << "\"} " << static_cast<double>(s->cost_micro_usd.load()) / 1e6 << '\n';
  if (d.llm) {
    auto providers = d.llm->stats();
    family("troupe_llm_provider_calls_total", "counter", "Network LLM calls per provider and outcome.");
    for (const auto& [name, st] : providers) {
      out << "troupe_llm_provider_calls_total{provider=\"" << name << "\",outcome=\"all\"} " << st.calls << '\n';
      out << "troupe_llm_provider_calls_total{provider=\"" << name << "\",outcome=\"failed\"} " << st.failures << '\n';
    }
    family("troupe_llm_provider_retries_total", "counter", "Retried attempts per provider.");
    for (const auto& [name, st] : providers) out << "troupe_llm_provider_retries_total{provider=\"" << name << "\"} " << st.retries << '\n';
    family("troupe_llm_provider_in_flight", "gauge", "HTTP requests on the wire per provider.");
    for (const auto& [name, st] : providers) out << "troupe_llm_provider_in_flight{provider=\"" << name << "\"} " << st.in_flight << '\n';
    family("troupe_llm_breaker_open", "gauge", "1 while the provider's circuit breaker is open.");
    for (const auto& [name, st] : providers)
      out << "troupe_llm_breaker_open{provider=\"" << name << "\"} " << (st.breaker_state == "open" ? 1 : 0) << '\n';
  }
  family("troupe_store_commits_total", "counter", "Group commits.");
  out << "troupe_store_commits_total " << d.store_stats->commits.load() << '\n';
  family("troupe_store_rows_total", "counter", "Rows written in group commits.");
  out << "troupe_store_rows_total " << d.store_stats->rows.load() << '\n';
  family("troupe_store_commit_failures_total", "counter", "Failed commits.");
  out << "troupe_store_commit_failures_total " << d.store_stats->failures.load() << '\n';
  family("troupe_store_healthy", "gauge", "1 when the last commit succeeded.");
  out << "troupe_store_healthy " << (d.store_stats->healthy.load() ? 1 : 0) << '\n';
  family("troupe_store_last_batch_rows", "gauge", "Rows in the last group commit.");
  out << "troupe_store_last_batch_rows " << d.store_stats->last_batch_rows.load() << '\n';
  family("troupe_store_commit_seconds_total", "counter", "Time spent committing.");
  out << "troupe_store_commit_seconds_total " << static_cast<double>(d.store_stats->total_commit_us.load()) / 1e6 << '\n';
  family("troupe_store_pruned_tasks_total", "counter", "Terminal tasks pruned after retention_days.");
  out << "troupe_store_pruned_tasks_total " << d.store_stats->pruned_tasks.load() << '\n';
  family("troupe_events_published_total", "counter", "Events published on the bus.");
  out << "troupe_events_published_total " << d.bus->published() << '\n';
  out << histogram_text(stats, *d.store_stats);
  return out.str();
}

}  // namespace troupe::host
