#pragma once
/// The root supervisor: parent of every team actor (one_for_one, the restart
/// intensity counted per team so one crashing team never spends another's budget).
///
/// When a team actor dies of an exception, the root restarts it from its last
/// committed state: with a store it asks the store actor for the team's unfinished
/// tasks (after committing the writes already queued), like recovery at start;
/// without a store, or when the store cannot answer, from the tasks the team held
/// in memory when it threw (team_leftovers). Other teams are not touched. Past the
/// intensity the team is started once more, `failed` (agents stopped, queue kept),
/// and an operator `restart` revives it. The directory always names the current
/// incarnation, so the control plane routes to the new team after a restart.
#include <memory>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/supervision/team_directory.hpp"
#include "troupe/actors/team_actor.hpp"
#include "troupe/config/config.hpp"

namespace troupe::actors::supervision {

struct root_spec {
  std::vector<team_spec> teams;  ///< templates; `recovered` is used for the first start only
  config::supervision intensity;  ///< max_restarts/within_ms per team (strategy ignored: one_for_one)
  caf::actor store;               ///< invalid: restart from the leftovers in memory
  std::shared_ptr<team_directory> directory;
};

/// Spawns the root supervisor; it starts every team at once. (ready_atom) is answered
/// with the number of teams once they all have a handle in the directory.
caf::actor spawn_root_supervisor(caf::actor_system& sys, root_spec spec);

/// Hot reload, sent to the root by the runtime:
/// - (adopt_team_atom, team_spec_ptr, caf::actor): supervise a team the runtime just
///   spawned (and put in the directory); the spec is the template for restarts and
///   should carry the `leftovers` box the team was spawned with;
/// - (reload_atom, name, team_update_ptr): the update the team got, so that a restart
///   uses the new settings (and a team being retired is retired again after a restart);
/// - (stop_team_atom, name): the team was removed and has finished: stop it for good.
using adopt_team_atom = caf::atom_constant<caf::atom("adoptteam")>;
using stop_team_atom = caf::atom_constant<caf::atom("stopteam")>;
using team_spec_ptr = std::shared_ptr<team_spec>;

}  // namespace troupe::actors::supervision

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::supervision::team_spec_ptr)
