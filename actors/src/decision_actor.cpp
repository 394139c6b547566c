#include "troupe/actors/decision_actor.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "exception_error.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors {
namespace {

using timeout_atom = caf::atom_constant<caf::atom("dtimeout")>;

struct decision_state {
  decision_spec spec;
  bool resolved = false;  ///< reported to the team; later decides are conflicts
  static inline const char* name = "troupe.decision";
};

using self_ptr = caf::stateful_actor<decision_state>*;

void report(self_ptr self, const std::string& option, const std::string& who, const std::string& comment,
            reply_fn reply) {
  self->state.resolved = true;
  self->send(self->state.spec.team, decided_atom::value, self->state.spec.id, option, who, comment, std::move(reply));
}

caf::behavior decision_actor(self_ptr self, decision_spec spec) {
  self->state.spec = std::move(spec);
  // A throw ends this incarnation with an error its team sees in the down message.
  self->set_exception_handler(detail::exception_to_error);
  if (auto deadline = self->state.spec.deadline_ms; deadline > 0) {
    // The record keeps a wall-clock deadline (it survives restarts of the daemon); the
    // timer runs on the actor clock for the time that is left, at once if none is.
    auto left = std::max<std::int64_t>(0, deadline - base::now_ms());
    if (left == 0)
      self->send(self, timeout_atom::value);
    else
      self->delayed_send(self, std::chrono::milliseconds(left), timeout_atom::value);
  }
  return {
      [=](decide_atom, decide_cmd& cmd, reply_fn& reply) {
        auto& st = self->state;
        if (st.resolved)
          return reply(base::fail(base::errc::conflict, "decision '" + st.spec.id + "' is already decided"));
        const auto& opts = st.spec.options;
        if (std::find(opts.begin(), opts.end(), cmd.option) == opts.end()) {
          std::string list;
          for (const auto& o : opts) list += (list.empty() ? "" : ", ") + o;
          return reply(base::fail(base::errc::bad_request,
                                  "option '" + cmd.option + "' is not one of: " + list));
        }
        report(self, cmd.option, cmd.who, cmd.comment, std::move(reply));
      },
      [=](timeout_atom) {
        if (self->state.resolved) return;
        report(self, self->state.spec.default_option, "timeout",
               "no decision before timeout_ms; default applied", reply_fn{});
      },
      [=](done_atom) { self->quit(); },
      [=](fault_atom, const std::string&) {
        throw std::runtime_error("injected fault in decision actor '" + self->state.spec.id + "'");
      },
  };
}

}  // namespace

caf::actor spawn_decision(caf::local_actor* team, decision_spec spec) {
  return team->spawn(decision_actor, std::move(spec));
}

}  // namespace troupe::actors
