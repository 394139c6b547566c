// Deterministic actor test on CAF's test coordinator: nothing runs until the test
// says so, so the mailbox order is exactly what the test built.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/team_actor.hpp"

namespace troupe::actors {
namespace {

struct testing_config : caf::actor_system_config {
  testing_config() { set("scheduler.policy", caf::atom("testing")); }
};

agent_spec scripted_agent() {
  config::agent agent;
  agent.name = "a1";
  agent.max_concurrent = 1;
  config::model model;
  model.name = "m";
  model.provider = "p";
  config::provider provider;
  provider.name = "p";
  provider.kind = config::provider_kind::scripted;
  provider.latency = {1000, 1000};  // calls stay in flight until virtual time moves
  agent_spec a;
  a.agent = std::make_shared<const config::agent>(agent);
  a.model = std::make_shared<const config::model>(model);
  a.provider = std::make_shared<const config::provider>(provider);
  return a;
}

/// Team "t": agent a1 (above) runs its one-step workflow; events go to a bus.
team_spec one_step_team() {
  team_spec spec;
  spec.team.name = "t";
  spec.team.agents = {"a1"};
  config::step only;
  only.id = "only";
  only.agent = "a1";
  spec.team.workflow = {only};
  spec.agents = {scripted_agent()};
  spec.bus = std::make_shared<agents::event_bus>();
  spec.task_ids = std::make_shared<base::id_generator>("t");
  spec.stats = std::make_shared<team_stats>();
  return spec;
}

TEST(team_actor, a_cancel_overtakes_ten_thousand_queued_submissions) {
  testing_config cfg;
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  auto spec = one_step_team();
  spec.team.max_queued = 100000;
  auto team = spawn_team(sys, spec);
  sched.run();

  [&] {  // checks apart: however they end, the team is stopped below
    // A first task is accepted and its call is in flight.
    std::string victim;
    agents::task_spec first;
    first.team = "t";
    first.input = "first";
    caf::anon_send(team, submit_atom::value, first, reply_fn([&](base::result<nlohmann::json> r) {
                     ASSERT_TRUE(r);
                     victim = (*r)["id"];
                   }));
    sched.run();
    ASSERT_FALSE(victim.empty());

    // 10,000 submissions queue up in the team's mailbox, then one cancel behind them.
    std::size_t submits_answered = 0;
    std::size_t answered_before_cancel = 0;
    bool cancelled = false;
    for (int i = 0; i < 10000; ++i) {
      agents::task_spec ts;
      ts.team = "t";
      ts.input = "x";
      caf::anon_send(team, submit_atom::value, ts, reply_fn([&](base::result<nlohmann::json>) { ++submits_answered; }));
    }
    // The team takes the cancel (it aborts the call and tells the task actor, both with high
    // priority) and says so with a `cancelling` event; the task actor answers after it ended
    // the task. The coordinator runs a mailbox dry per turn, so the answer itself comes only
    // after the team's turn: the event marks when the cancel took effect.
    bool took_effect = false;
    auto token = spec.bus->subscribe([&](const agents::event_ptr& ev) {
      if (ev->task == victim && ev->data.value("what", "") == "cancelling" && !took_effect) {
        took_effect = true;
        answered_before_cancel = submits_answered;
      }
    });
    std::string final_state;
    caf::anon_send<caf::message_priority::high>(team, cancel_atom::value, victim,
                                                reply_fn([&](base::result<nlohmann::json> r) {
                                                  EXPECT_TRUE(r) << r.error().message;
                                                  cancelled = true;
                                                  if (r) final_state = (*r)["state"];
                                                }));
    while (!cancelled && sched.try_run_once()) {
    }
    ASSERT_TRUE(cancelled);
    ASSERT_TRUE(took_effect);
    EXPECT_EQ(final_state, "cancelled");
    EXPECT_LT(answered_before_cancel, 100u) << "the cancel waited behind queued work";
    sched.run();
    EXPECT_EQ(submits_answered, 10000u);
  }();
  caf::anon_send_exit(team, caf::exit_reason::user_shutdown);
  sched.run();
}

// A cancel overtakes the work order of the task's call still in the agent's mailbox:
// the call must not run on for a task that already ended, holding the agent's only slot.
TEST(team_actor, a_cancel_that_overtakes_its_tasks_work_order_still_abandons_the_call) {
  testing_config cfg;
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  auto spec = one_step_team();
  std::vector<std::string> started;  // task ids, in the order their steps started
  auto token = spec.bus->subscribe([&](const agents::event_ptr& ev) {
    if (ev->data.value("what", "") == "step_started") started.push_back(ev->task);
  });
  auto team = spawn_team(sys, spec);
  sched.run();
  // Everything runs except the agent, whose mailbox keeps what it was sent.
  auto run_all_but_the_agent = [&] {
    while (sched.run_jobs_filtered([](caf::resumable* job) {
      auto* actor = dynamic_cast<caf::local_actor*>(job);
      return actor == nullptr || std::string(actor->name()) != "troupe.agent";
    }) > 0) {
    }
  };
  auto submit = [&](const std::string& input) {
    std::string id;
    agents::task_spec ts;
    ts.team = "t";
    ts.input = input;
    caf::anon_send(team, submit_atom::value, ts, reply_fn([&](base::result<nlohmann::json> r) {
                     ASSERT_TRUE(r) << r.error().message;
                     id = (*r)["id"];
                   }));
    run_all_but_the_agent();
    return id;
  };
  // The checks run in a body of their own: however it returns, the team is stopped
  // after it (an actor system waits for its actors when it goes).
  [&] {
    auto victim = submit("first");
    ASSERT_FALSE(victim.empty());
    ASSERT_EQ(started, std::vector<std::string>{victim});  // assigned: the work order waits in the agent's mailbox
    std::string final_state;
    caf::anon_send<caf::message_priority::high>(team, cancel_atom::value, victim,
                                                reply_fn([&](base::result<nlohmann::json> r) {
                                                  ASSERT_TRUE(r) << r.error().message;
                                                  final_state = (*r)["state"];
                                                }));
    run_all_but_the_agent();
    EXPECT_EQ(final_state, "cancelled");
    auto next = submit("second");  // queued: the agent's only slot is still taken
    ASSERT_FALSE(next.empty());
    ASSERT_EQ(started.size(), 1u);
    // The agent now reads its mailbox: the high-priority cancel first (no call yet), then
    // the work order, then what must abandon the call it started. Virtual time stands
    // still, so no call can have ended by itself.
    sched.run();
    ASSERT_EQ(started.size(), 2u) << "the cancelled task's call kept the agent's slot";
    EXPECT_EQ(started[1], next);
  }();
  caf::anon_send_exit(team, caf::exit_reason::user_shutdown);
  sched.run();
}

}  // namespace
}  // namespace troupe::actors
