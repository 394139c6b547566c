#pragma once
/// The agent actor: one mailbox per configured agent. It receives work orders
/// from its team's dispatcher, performs the LLM call (the offline scripted model
/// in-process, or a network provider through the llm_client port) and reports a
/// step_result back to the team. Its capacity (max_concurrent) is enforced by the
/// dispatcher, which only assigns work to agents with a free slot.
///
/// Cancel arrives with high priority and drops the task's in-flight calls at once
/// (network calls are aborted through their handle).
#include <memory>

#include <caf/all.hpp>

#include "troupe/agents/event.hpp"
#include "troupe/base/llm_port.hpp"
#include "troupe/config/config.hpp"

namespace troupe::actors {

/// What every agent of one team shares: its team's name, the team actor that
/// receives step results, the network client and the event bus.
struct agent_env {
  std::string team;
  caf::actor dispatcher;                    ///< receives step_done
  std::shared_ptr<base::llm_client> llm;    ///< for openai/anthropic providers; may be null
  std::shared_ptr<agents::event_bus> bus;   ///< for streamed tokens; may be null
};

/// An agent's configuration. Every part is immutable and shared: the model and
/// provider (with its scripted replies) by every agent using them, the agent's own
/// settings by its team's slot and its actor, so an idle agent costs one copy of
/// its own settings and four pointers. A hot reload replaces parts, never edits them.
struct agent_spec {
  std::shared_ptr<const config::agent> agent;
  std::shared_ptr<const config::model> model;
  std::shared_ptr<const config::provider> provider;
  std::shared_ptr<const agent_env> env;     ///< set by the team
};

/// Replaces a running agent's spec (hot reload): new calls use it; calls in
/// flight finish as they started.
using reconfigure_atom = caf::atom_constant<caf::atom("reconfig")>;

/// Spawns an agent; its team's supervisor monitors it and stops it when the team ends.
caf::actor spawn_agent(caf::local_actor* parent, std::shared_ptr<const agent_spec> spec);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::agent_spec)
