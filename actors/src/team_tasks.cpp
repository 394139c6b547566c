// Team actor: its task actors. The team spawns a task's actor when the task starts,
// takes its final record when it ends, supervises it (one_for_one, with the team's
// restart intensity) and routes queries about running tasks to it; and submits refused
// with their commit in doubt, until a read of the store settles them.
#include <spdlog/spdlog.h>

#include "team_state.hpp"
#include "troupe/agents/task_json.hpp"

namespace troupe::actors::detail {

using agents::step_state;
using agents::task_state;

void team_state::refresh_task_env(self_ptr self) {
  auto te = std::make_shared<task_env>();
  te->team = spec.team.name;
  te->team_actor = caf::actor_cast<caf::actor>(self);
  te->store = spec.store;
  te->bus = spec.bus;
  te->stats = spec.stats;
  te->snapshot_every = spec.snapshot_every;
  te->max_attempts = spec.team.max_attempts;
  te->backoff_ms = spec.team.backoff_ms;
  te->backoff_max_ms = spec.team.backoff_max_ms;
  tenv = std::move(te);
}

void team_state::spawn_task(self_ptr self, task_entry& e, std::string restarted_after, bool kick) {
  if (e.t.state == task_state::queued) {
    --queued;
    spec.stats->queued.store(queued, std::memory_order_relaxed);
    e.t.state = task_state::running;
    tally(task_state::running, 1);
  }
  if (!e.run) e.run = std::make_unique<running_task>();
  e.run->box = std::make_shared<task_crash_box>();
  task_start start;
  start.t = e.t;  // the team keeps the record as it was at start (see task_entry)
  start.wf = e.wf;
  start.env = tenv;
  start.box = e.run->box;
  start.restarted_after = std::move(restarted_after);
  start.ref = ref_of(e);
  e.run->actor = spawn_task_actor(self, std::move(start));
  // The actor starts with its first message: the report of a call already dispatched
  // for it (assign), else this kick.
  if (kick) self->send(e.run->actor, tick_atom::value);
}

task_entry& team_state::admit(std::string id, task_entry e) {
  auto [it, inserted] = tasks.emplace(std::move(id), std::move(e));
  auto& entry = it->second;
  if (!inserted) return entry;
  if (!free_slots.empty()) {
    entry.slot = free_slots.back();
    free_slots.pop_back();
  } else {
    entry.slot = static_cast<std::uint32_t>(slots.size());
    slots.push_back(nullptr);
  }
  entry.gen = next_gen++;
  slots[entry.slot] = &entry;  // nodes of an unordered_map stay put when it rehashes
  return entry;
}

void team_state::forget(std::unordered_map<std::string, task_entry>::iterator it) {
  slots[it->second.slot] = nullptr;
  free_slots.push_back(it->second.slot);
  tasks.erase(it);
}

task_entry* team_state::find_task(const task_ref& ref) {
  if (ref.slot >= slots.size()) return nullptr;
  auto* e = slots[ref.slot];
  return e != nullptr && e->gen == ref.gen ? e : nullptr;
}

void team_state::on_task_ended(self_ptr self, agents::task t, bool wait, task_ref ref) {
  auto* ep = find_task(ref);
  if (ep == nullptr) return;
  auto& e = *ep;
  if (e.run) {
    // It waits for this so that reports forwarded before now still reach it.
    if (e.run->actor && wait) self->send(e.run->actor, done_atom::value);
    e.run.reset();
  }
  if (agents::is_terminal(e.t.state)) return;  // already ended by the team (parked and cancelled)
  auto cost = e.t.cost;  // the team's count includes calls the task actor never saw (abandoned)
  tally(e.t.state, -1);
  e.t = std::move(t);
  tally(e.t.state, 1);
  if (cost.calls > e.t.cost.calls) e.t.cost = cost;
  ended(self, e);
}

team_state::~team_state() {
  // Task actors and agents are monitored, not linked (memory per idle agent, a lock per
  // task's end): whatever ends the team, they end with it here.
  for (auto& [id, e] : tasks)
    if (e.run && e.run->actor) caf::anon_send_exit(e.run->actor, caf::exit_reason::user_shutdown);
  for (auto& a : agents)
    if (a.handle) caf::anon_send_exit(a.handle, caf::exit_reason::user_shutdown);
}

void team_state::on_task_crashed(self_ptr self, const std::string& id, caf::actor_id actor, const std::string& reason) {
  auto it = tasks.find(id);
  if (it == tasks.end() || !it->second.run || !it->second.run->actor || it->second.run->actor.id() != actor) return;
  auto& e = it->second;
  spdlog::warn("task actor crashed task={} team={} reason=\"{}\"", id, spec.team.name, reason);
  spec.stats->task_restarts.fetch_add(1, std::memory_order_relaxed);
  // Its record as it was when it threw (else as it was when it started): completed
  // steps stay completed; the steps it was running are run again per their attempts.
  {
    std::lock_guard guard{e.run->box->mutex};
    if (e.run->box->task) {
      auto cost = e.t.cost;
      tally(e.t.state, -1);
      e.t = std::move(*e.run->box->task);
      tally(e.t.state, 1);
      if (cost.calls > e.t.cost.calls) e.t.cost = cost;
    }
  }
  e.run->actor = nullptr;
  e.run->prepared.clear();  // its queued wants are stale now
  emit_task(e, "task_restarting");
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
  if (task_policy.on_failure(0, 1, now).escalate) {
    // Past the intensity: the team fails like it does for its agents; this task stays
    // parked with its record and restarts with the team (operator `restart`).
    spdlog::error("team failed: task actors exceeded the restart intensity team={} task={} reason=\"{}\"",
                  spec.team.name, id, reason);
    mark_failed(self);
    agent_sup.stop_all(self);
    return;
  }
  spawn_task(self, e, reason);
}

void team_state::restart_parked_tasks(self_ptr self) {
  std::vector<std::string> parked;
  for (const auto& [id, e] : tasks)
    if (e.run && !e.run->actor && !agents::is_terminal(e.t.state)) parked.push_back(id);
  for (const auto& id : parked) spawn_task(self, tasks.at(id), "restarted by an operator after the team failed");
}

namespace {

/// The record of task `id` as the team holds it now (final once the task actor reported).
base::result<nlohmann::json> held_record(self_ptr self, const std::string& id) {
  auto it = self->state.tasks.find(id);
  if (it == self->state.tasks.end()) return base::fail(base::errc::not_found, "no task '" + id + "'");
  return agents::to_json(it->second.t);
}

}  // namespace

void team_state::answer_task(self_ptr self, const task_entry& e, reply_fn reply, bool existing) {
  auto finish_reply = [reply = std::move(reply), existing](base::result<nlohmann::json> r) {
    if (r && existing) (*r)["existing"] = true;
    reply(std::move(r));
  };
  if (e.run && e.run->actor) {
    // A task actor that ended meanwhile answers with an error; its final record reached
    // the team before that error did (both come from it, in order).
    auto id = e.t.id;
    self->request(e.run->actor, caf::infinite, task_atom::value)
        .then([finish_reply](json_reply& j) { finish_reply(std::move(j.value)); },
              [self, finish_reply, id](caf::error&) { finish_reply(held_record(self, id)); });
    return;
  }
  finish_reply(agents::to_json(e.t));
}

namespace {

/// Collects a task list whose running tasks answer from their actors; answers when
/// the last piece is in.
struct task_list {
  explicit task_list(reply_fn r) : reply(std::move(r)) {}
  ~task_list() { reply(nlohmann::json{{"tasks", std::move(out)}}); }
  task_list(const task_list&) = delete;
  task_list& operator=(const task_list&) = delete;
  reply_fn reply;
  nlohmann::json out = nlohmann::json::array();
};

}  // namespace

void team_state::list_tasks(self_ptr self, const list_filter& f, reply_fn reply) {
  auto list = std::make_shared<task_list>(std::move(reply));
  std::size_t n = 0;
  for (const auto& [id, e] : tasks) {
    if (n >= f.limit) break;
    if (!f.state.empty() && agents::to_string(e.t.state) != f.state) continue;
    ++n;
    if (!e.run || !e.run->actor) {
      list->out.push_back(agents::to_json(e.t));
      continue;
    }
    auto keep = [list, state = f.state](base::result<nlohmann::json> r) {
      if (r && (state.empty() || (*r)["state"] == state)) list->out.push_back(std::move(*r));
    };
    self->request(e.run->actor, caf::infinite, task_atom::value)
        .then([keep](json_reply& j) { keep(std::move(j.value)); },
              [self, keep, id = id](caf::error&) { keep(held_record(self, id)); });
  }
}

void team_state::check_in_doubt(self_ptr self) {
  if (in_doubt.empty() || !spec.store) return;
  doubt_reading = true;
  doubt_read_ms = std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
  const auto& id = in_doubt.begin()->first;
  reply_fn answer = [team = caf::actor_cast<caf::actor>(self), id, read = ++doubt_reads](base::result<nlohmann::json> r) {
    const int stored = r ? 1 : r.error().code == base::errc::not_found ? 0 : -1;
    caf::anon_send(team, doubt_atom::value, id, stored, read);
  };
  self->send(spec.store, load_atom::value, id, std::move(answer));
}

void team_state::on_doubt_resolved(self_ptr self, const std::string& id, int stored, std::uint64_t read) {
  if (!doubt_reading || read != doubt_reads) return;  // a read given up (tick): another is out
  doubt_reading = false;
  if (stored < 0) return;  // the store cannot answer yet: the next tick's round asks again
  auto it = in_doubt.find(id);
  if (it != in_doubt.end()) {
    auto d = std::move(it->second);
    in_doubt.erase(it);
    if (stored == 1) {
      spdlog::warn("a submit refused while its commit was in doubt was stored after all; running it team={} task={}",
                   spec.team.name, id);
      accept(self, std::move(d.t), std::move(d.wf));
    }
  }
  check_in_doubt(self);
}

}  // namespace troupe::actors::detail
