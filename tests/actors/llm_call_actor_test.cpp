// Deterministic tests of the backstop for LLM clients that never answer, on CAF's
// test coordinator: virtual time, so the 2 s grace period passes without waiting.
// The agent keeps each network call's deadline (request timeout + grace) and
// sweeps its calls once a second while any is in flight.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "troupe/actors/agent_actor.hpp"
#include "troupe/actors/llm_call_actor.hpp"
#include "troupe/actors/messages.hpp"

namespace troupe::actors {
namespace {

using std::chrono::milliseconds;

struct testing_config : caf::actor_system_config {
  testing_config() { set("scheduler.policy", caf::atom("testing")); }
};

/// A client that answers only when the test says so; counts cancels per call.
struct held_client final : base::llm_client {
  struct handle final : base::llm_call_handle {
    int* cancels;
    explicit handle(int* c) : cancels(c) {}
    void cancel() override { ++*cancels; }
  };
  std::vector<base::llm_done_fn> done;
  std::vector<std::unique_ptr<int>> cancels;  ///< per call, in call order
  std::shared_ptr<base::llm_call_handle> call(base::llm_request, base::llm_token_fn, base::llm_done_fn d) override {
    done.push_back(std::move(d));
    cancels.push_back(std::make_unique<int>(0));
    return std::make_shared<handle>(cancels.back().get());
  }
};

struct agent_fixture : ::testing::Test {
  testing_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<held_client> client = std::make_shared<held_client>();
  std::vector<step_result> done;  ///< what the agent reported to its team, in order
  caf::actor agent;

  /// An openai agent whose provider times requests out after 100 ms; its team is a
  /// collector of step_done messages.
  void SetUp() override {
    // Spawned functions take an argument: with none, CAF 0.17 dereferences a null
    // argument tuple (UBSan reports it).
    auto team = sys.spawn(
        [](caf::event_based_actor*, agent_fixture* f) -> caf::behavior {
          return {[f](step_done_atom, step_result& r) { f->done.push_back(std::move(r)); }};
        },
        this);
    auto a = std::make_shared<config::agent>();
    a->name = "writer";
    a->model = "m";
    auto m = std::make_shared<config::model>();
    m->name = "m";
    auto p = std::make_shared<config::provider>();
    p->name = "p";
    p->kind = config::provider_kind::openai;
    p->timeout_ms = 100;
    auto env = std::make_shared<agent_env>();
    env->team = "t";
    env->dispatcher = team;
    env->llm = client;
    auto spec = std::make_shared<const agent_spec>(agent_spec{a, m, p, env});
    sys.spawn(
        [](caf::event_based_actor* self, agent_fixture* f, std::shared_ptr<const agent_spec> s) -> caf::behavior {
          f->agent = spawn_agent(self, std::move(s));
          return {[](caf::down_msg&) {}};
        },
        this, spec);
    sched.run();
  }

  // Ends the agent, so that a sweep still scheduled (the clock holds the agent)
  // cannot keep the actor system from shutting down when a check failed.
  void TearDown() override {
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    sched.run();
  }

  void assign(std::uint64_t call_id) {
    work_order w;
    w.call_id = call_id;
    w.task_id = "task-" + std::to_string(call_id);
    w.prompt = "hello";
    caf::anon_send(agent, assign_atom::value, w);
    sched.run();
  }

  void advance(milliseconds by) {
    sched.advance_time(by);
    sched.run();
  }
};

TEST_F(agent_fixture, a_call_whose_client_never_answers_is_abandoned_as_timed_out_after_the_grace_period) {
  assign(7);
  ASSERT_EQ(client->done.size(), 1u);
  advance(milliseconds(2000));  // sweeps at 1 s and 2 s; the deadline is 100 ms + 2 s
  EXPECT_TRUE(done.empty());
  advance(milliseconds(1000));  // the sweep at 3 s finds it overdue
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].call_id, 7u);
  EXPECT_FALSE(done[0].ok);
  EXPECT_EQ(done[0].error.code, base::errc::timeout);
  EXPECT_TRUE(done[0].error.retryable);
  EXPECT_NE(done[0].error.message.find("2100 ms"), std::string::npos) << done[0].error.message;
  EXPECT_EQ(*client->cancels[0], 1);  // the call actor aborted the request
  // An answer the client gives after all is dropped: the step was already reported.
  client->done[0](base::llm_response{});
  sched.run();
  EXPECT_EQ(done.size(), 1u);
  // Nothing left in flight: the sweeps stop.
  advance(milliseconds(1000));
  EXPECT_TRUE(sched.clock().schedule().empty());
}

TEST_F(agent_fixture, each_call_keeps_its_own_deadline_and_an_answered_call_is_never_swept) {
  assign(1);
  advance(milliseconds(1500));
  assign(2);  // deadline 3.6 s
  assign(3);  // answered in time
  client->done[2](base::llm_response{});
  sched.run();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].call_id, 3u);
  EXPECT_TRUE(done[0].ok);
  advance(milliseconds(1500));  // 3 s: call 1 (deadline 2.1 s) is overdue, call 2 is not
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[1].call_id, 1u);
  EXPECT_EQ(done[1].error.code, base::errc::timeout);
  advance(milliseconds(1000));  // 4 s: call 2 is overdue
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[2].call_id, 2u);
  EXPECT_EQ(done[2].error.code, base::errc::timeout);
  EXPECT_EQ(*client->cancels[0], 1);
  EXPECT_EQ(*client->cancels[1], 1);
  EXPECT_EQ(*client->cancels[2], 0);
  advance(milliseconds(1000));
  EXPECT_TRUE(sched.clock().schedule().empty());
}

TEST_F(agent_fixture, a_call_actor_that_throws_reports_a_retryable_failure_at_once_and_cancels_its_request) {
  assign(5);
  caf::anon_send(agent, fault_atom::value, std::string("call:writer"));  // the test hook
  sched.run();
  ASSERT_EQ(done.size(), 1u);  // no time passed: not the sweep
  EXPECT_EQ(done[0].call_id, 5u);
  EXPECT_FALSE(done[0].ok);
  EXPECT_EQ(done[0].error.code, base::errc::internal);
  EXPECT_TRUE(done[0].error.retryable);
  EXPECT_NE(done[0].error.message.find("LLM call actor failed: injected fault"), std::string::npos)
      << done[0].error.message;
  EXPECT_EQ(*client->cancels[0], 1);
  // The call is over: a late answer from the client changes nothing, no sweep stays armed.
  client->done[0](base::llm_response{});
  advance(milliseconds(1000));
  EXPECT_EQ(done.size(), 1u);
  EXPECT_TRUE(sched.clock().schedule().empty());
}

}  // namespace
}  // namespace troupe::actors
