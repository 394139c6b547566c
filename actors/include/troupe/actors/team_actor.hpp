#pragma once
/// The team actor: supervisor of its agents, task actors and decision actors, and
/// dispatcher of its tasks.
///
/// Queued tasks are plain data in its priority queues (a million queued tasks cost
/// no actors). When a task starts, a task actor (actors/src/task_actor.hpp) takes
/// it and drives it through the workflow until it is terminal; the team assigns the
/// steps it wants to agents with free capacity, checks budgets, forwards each call's
/// result to it, restarts it from its last record if it throws, and restarts crashed agents with the team's strategy
/// (`one_for_one`, `one_for_all`, `rest_for_one`) within its restart intensity.
/// Past the intensity the team goes `failed`: its agents stop, it keeps its
/// queue, and it resumes on an operator `restart`. Each pending human decision is
/// a decision actor it supervises (one_for_one, transient).
///
/// The team itself is a child of the root supervisor (supervision/root_supervisor.hpp).
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/agent_actor.hpp"
#include "troupe/agents/event.hpp"
#include "troupe/agents/task.hpp"
#include "troupe/base/histogram.hpp"
#include "troupe/base/ids.hpp"
#include "troupe/base/store_port.hpp"
#include "troupe/config/config.hpp"

namespace troupe::actors {

/// Counters for /metrics, written by the team actor, read by anyone.
struct team_stats {
  std::atomic<std::uint64_t> submitted{0}, succeeded{0}, failed{0}, cancelled{0}, rejected{0};
  std::atomic<std::int64_t> queued{0};
  std::atomic<std::uint64_t> team_restarts{0};  ///< incarnations of the team actor after the first
  std::atomic<std::uint64_t> decision_restarts{0};
  std::atomic<std::uint64_t> task_restarts{0};  ///< task actors restarted after an exception
  std::atomic<std::uint64_t> restarts{0}, llm_calls{0}, llm_failures{0}, tokens_in{0}, tokens_out{0};
  std::atomic<std::uint64_t> cost_micro_usd{0};
  std::atomic<std::uint64_t> step_latency_ms_total{0};
  // Latency histograms for /metrics (seconds).
  base::histogram_pair_family llm_seconds{base::histogram::call_seconds()};  ///< by provider, model
  base::histogram step_seconds{base::histogram::call_seconds()};   ///< agent steps, start to result
  base::histogram task_seconds{base::histogram::task_seconds()};   ///< submit to terminal state
};

/// What a team actor that dies of an exception leaves behind (written by its
/// exception handler, read by the root supervisor after the down message): its
/// unfinished tasks as they were in memory, and what it had spent.
struct team_leftovers {
  std::mutex mutex;
  bool filled = false;
  std::vector<agents::task> tasks;
  double spent_usd = 0;
  std::vector<std::pair<std::string, double>> agent_spent_usd;
};

struct team_spec {
  config::team team;
  std::vector<agent_spec> agents;  ///< resolved agent + model + provider (shared parts), config order
  caf::actor store;                ///< invalid: no persistence (benchmarks)
  std::shared_ptr<agents::event_bus> bus;
  std::shared_ptr<base::id_generator> task_ids;
  std::shared_ptr<team_stats> stats;
  int snapshot_every = 16;
  std::size_t keep_terminal = 10000;  ///< finished tasks kept in memory for queries
  std::int64_t tick_ms = 200;          ///< watchdog/deadline resolution
  std::vector<agents::task> recovered;
  /// Spent budget carried over from a previous incarnation.
  double spent_usd = 0;
  std::vector<std::pair<std::string, double>> agent_spent_usd;
  /// Start `failed` (the root gave up on it): agents stay stopped until an operator `restart`.
  bool start_failed = false;
  /// Filled if this incarnation dies of an exception; may be null.
  std::shared_ptr<team_leftovers> leftovers;
  /// The team's committed entity state at start: its own row (agent "") and
  /// one per agent (paused, failed, spent_usd); empty without a store or on a
  /// first start. See docs/durability.md, "Agent and team state".
  std::vector<base::entity_row> recovered_entities;
  std::shared_ptr<base::llm_client> llm;  ///< network providers; may be null
};

/// A hot reload of one team (sent with high priority, answered at once with a
/// summary of what the team changed). The team takes the new settings and
/// workflow for new work; tasks already accepted keep the workflow they started
/// with. Agents missing from `agents` retire: they finish the work only they can
/// run (their in-flight calls and steps queued for them by older tasks), then
/// stop. With `retire` set the whole team was removed from the config: it keeps
/// running its accepted tasks and calls `retired` (on its own thread) once none
/// is left; the runtime then stops it. A later update without `retire` cancels
/// the retirement.
struct team_update {
  config::team team;
  std::vector<agent_spec> agents;  ///< the new members, resolved
  int snapshot_every = 16;
  bool retire = false;
  std::function<void()> retired;
};
using team_update_ptr = std::shared_ptr<team_update>;
using reload_atom = caf::atom_constant<caf::atom("reload")>;

/// Spawns a team actor (unlinked; the root supervisor links and monitors it).
caf::actor spawn_team(caf::actor_system& sys, team_spec spec);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::team_update_ptr)
