// Deterministic test of the LLM call actor's backstop on CAF's test coordinator:
// virtual time, so the 2 s grace period passes without waiting.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>

#include "troupe/actors/llm_call_actor.hpp"

namespace troupe::actors {
namespace {

struct testing_config : caf::actor_system_config {
  testing_config() { set("scheduler.policy", caf::atom("testing")); }
};

/// A client that answers only when the test says so; counts cancels.
struct held_client final : base::llm_client {
  struct handle final : base::llm_call_handle {
    int* cancels;
    explicit handle(int* c) : cancels(c) {}
    void cancel() override { ++*cancels; }
  };
  int cancels = 0;
  base::llm_done_fn done;
  std::shared_ptr<base::llm_call_handle> call(base::llm_request, base::llm_token_fn, base::llm_done_fn d) override {
    done = std::move(d);
    return std::make_shared<handle>(&cancels);
  }
};

struct call_fixture : ::testing::Test {
  testing_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<held_client> client = std::make_shared<held_client>();
  std::optional<llm_outcome> got;
  bool down = false;

  /// The agent's part: spawn the call, note its answer and its down message.
  static caf::behavior agent(caf::event_based_actor* self, call_fixture* f) {
    self->set_down_handler([f](caf::down_msg&) { f->down = true; });
    base::llm_request req;
    req.timeout_ms = 100;
    spawn_llm_call(self, 7, f->client, std::move(req), nullptr);
    return {[f](llm_done_atom, std::uint64_t id, llm_outcome& o) {
      EXPECT_EQ(id, 7u);
      f->got = o;
    }};
  }

  void start() {
    // An argument for the spawned function: CAF 0.17 binds a null tuple for none.
    sys.spawn(agent, this);
    sched.run();
  }
};

TEST_F(call_fixture, a_client_that_never_answers_times_out_after_the_grace_period) {
  start();
  EXPECT_FALSE(got);
  sched.advance_time(std::chrono::milliseconds(2000));  // the request's 100 ms plus 1.9 s of grace
  sched.run();
  EXPECT_FALSE(got);
  sched.advance_time(std::chrono::milliseconds(200));
  sched.run();
  ASSERT_TRUE(got);
  ASSERT_FALSE((*got)->has_value());
  EXPECT_EQ((*got)->error().code, base::errc::timeout);
  EXPECT_EQ(client->cancels, 1);
  EXPECT_TRUE(down);
}

}  // namespace
}  // namespace troupe::actors
