#include "troupe/actors/llm_call_actor.hpp"

#include <stdexcept>
#include <string>

#include "exception_error.hpp"
#include "troupe/actors/messages.hpp"

namespace troupe::actors {
namespace {

struct call_state {
  std::shared_ptr<base::llm_call_handle> handle;
  static inline const char* name = "troupe.llm_call";
};

caf::behavior llm_call_actor(caf::stateful_actor<call_state>* self, caf::actor agent, std::uint64_t id,
                             std::shared_ptr<base::llm_client> llm, base::llm_request req,
                             base::llm_token_fn on_token) {
  // An exception ends the call, and the call reports it itself as a retryable failure
  // (the step is retried per its attempts): its agent does not monitor it, which saves a
  // down message per call. A call that ends silently anyway is the agent's sweep's.
  self->set_exception_handler([self, agent, id](caf::scheduled_actor* s, std::exception_ptr& ep) {
    if (self->state.handle) self->state.handle->cancel();
    self->state.handle.reset();
    self->send(agent, llm_done_atom::value, id,
               std::make_shared<base::result<base::llm_response>>(base::fail(
                   base::errc::internal, "LLM call actor failed: " + detail::exception_what(ep), true)));
    return detail::exception_to_error(s, ep);
  });
  auto me = caf::actor_cast<caf::actor>(self);
  // The client calls back on an I/O thread; the outcome comes back as a message.
  self->state.handle = llm->call(std::move(req), std::move(on_token), [me](base::result<base::llm_response> res) {
    caf::anon_send(me, llm_done_atom::value, std::make_shared<base::result<base::llm_response>>(std::move(res)));
  });
  auto report = [=](llm_outcome res) {
    self->send(agent, llm_done_atom::value, id, std::move(res));
    self->state.handle.reset();
    self->quit();
  };
  return {
      [=](llm_done_atom, llm_outcome& res) { report(std::move(res)); },
      // Test hook: an exception inside a call actor (reported by the exception handler).
      [=](fault_atom, const std::string&) -> void {
        throw std::runtime_error("injected fault in an LLM call actor");
      },
      [=](cancel_atom) {
        if (self->state.handle) self->state.handle->cancel();
        self->state.handle.reset();
        self->quit();
      },
  };
}

}  // namespace

caf::actor spawn_llm_call(caf::local_actor* agent, std::uint64_t call_id, std::shared_ptr<base::llm_client> llm,
                          base::llm_request request, base::llm_token_fn on_token) {
  return agent->spawn(llm_call_actor, caf::actor_cast<caf::actor>(agent), call_id, std::move(llm),
                                      std::move(request), std::move(on_token));
}

}  // namespace troupe::actors
