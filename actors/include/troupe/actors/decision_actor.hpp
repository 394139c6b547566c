#pragma once
/// The decision actor: one small actor per pending human decision, spawned and
/// supervised by its team (one_for_one, transient). It owns the decision's
/// timeout (a delayed message to itself on the actor clock) and validates an
/// operator's `decide` (the option must be one of the options). It reports the
/// resolution to the team, which commits it before the task moves on and before
/// the operator is answered; the team then tells it to finish.
///
/// It holds no state of its own beyond the decision record, so a restart after
/// an exception rebuilds it from the task's record; a decision whose timeout
/// passed while the daemon was down takes its default as soon as it starts.
#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/messages.hpp"

namespace troupe::actors {

/// What a decision actor needs: the parts of the decision record it enforces.
struct decision_spec {
  std::string id;
  std::string task_id;
  std::vector<std::string> options;
  std::string default_option;
  std::int64_t deadline_ms = 0;  ///< absolute wall-clock ms; 0 = waits for an operator forever
  caf::actor team;               ///< receives decided_atom
};

/// Spawns a decision actor; the caller (its team) links and monitors it.
caf::actor spawn_decision(caf::local_actor* team, decision_spec spec);

}  // namespace troupe::actors
