#pragma once
/// The LLM call actor: one short-lived actor per network call, spawned and
/// monitored by its agent. It starts the request through the llm_client port,
/// keeps its own deadline (the request's timeout plus a grace period, a backstop
/// for a client that never answers), and reports exactly one outcome to the
/// agent. Cancel (high priority) aborts the HTTP request at once. A hung provider
/// therefore never blocks an agent's mailbox.
#include <cstdint>
#include <memory>

#include <caf/all.hpp>

#include "troupe/base/llm_port.hpp"

namespace troupe::actors {

using llm_done_atom = caf::atom_constant<caf::atom("llmdone")>;
using llm_outcome = std::shared_ptr<base::result<base::llm_response>>;

/// Spawns a call actor monitored by `agent`; it answers the agent with
/// (llm_done_atom, call_id, llm_outcome) and then ends.
caf::actor spawn_llm_call(caf::local_actor* agent, std::uint64_t call_id, std::shared_ptr<base::llm_client> llm,
                          base::llm_request request, base::llm_token_fn on_token);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::llm_outcome)
