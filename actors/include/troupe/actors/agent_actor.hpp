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

struct agent_spec {
  config::agent agent;
  config::model model;
  config::provider provider;
  std::string team;
  caf::actor dispatcher;                    ///< receives step_done
  std::shared_ptr<base::llm_client> llm;    ///< for openai/anthropic providers
  std::shared_ptr<agents::event_bus> bus;   ///< for streamed tokens; may be null
};

/// Spawns an agent monitored by `parent` (its team).
caf::actor spawn_agent(caf::local_actor* parent, const agent_spec& spec);

}  // namespace troupe::actors
