#pragma once
/// The LLM call actor: one short-lived actor per network call, spawned by its
/// agent. It starts the request through the llm_client port and reports at most
/// one outcome to the agent, an exception inside it included (as a retryable
/// failure), so the agent needs no monitor (no down message per call). Cancel
/// (high priority) aborts the HTTP request at once. A hung provider therefore
/// never blocks an agent's mailbox.
///
/// Each call has a deadline, the request's timeout plus a grace period: a backstop
/// for a client that never answers. The agent keeps the deadlines and sweeps its
/// calls once a second while any is in flight (`call_sweep_every`), abandoning the
/// overdue ones as timed out. A timer per call would cost two wake-ups of CAF's
/// clock thread per call (arming it, and cancelling it when the actor ends).
#include <chrono>
#include <cstdint>
#include <memory>

#include <caf/all.hpp>

#include "troupe/base/llm_port.hpp"

namespace troupe::actors {

using llm_done_atom = caf::atom_constant<caf::atom("llmdone")>;
using llm_outcome = std::shared_ptr<base::result<base::llm_response>>;

/// How long past its request's timeout a call may go unanswered before its agent gives up on it.
constexpr std::chrono::milliseconds call_grace{2000};
/// How often a busy agent looks for overdue calls: a call is abandoned between its
/// deadline and one sweep later.
constexpr std::chrono::milliseconds call_sweep_every{1000};

/// Spawns a call actor for `agent`; it answers the agent with
/// (llm_done_atom, call_id, llm_outcome) and then ends (or ends on cancel, silently).
caf::actor spawn_llm_call(caf::local_actor* agent, std::uint64_t call_id, std::shared_ptr<base::llm_client> llm,
                          base::llm_request request, base::llm_token_fn on_token);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::llm_outcome)
