// The team as supervisor of its agents, deterministic on CAF's test coordinator:
// each strategy, which work is requeued (not charged an attempt) and which is
// retried, the agent.status sequence, escalation and the operator restart.
#include "team_fixture.hpp"

namespace troupe::actors::testing {
namespace {

using nlohmann::json;
using states = std::vector<std::string>;

/// The first `n` agent states (a restarted agent may take requeued work right after `idle`).
states first(states s, std::size_t n) {
  if (s.size() > n) s.resize(n);
  return s;
}

json crash_on_boom() {
  return json::array({{{"match", "boom"}, {"fault", "throw"}, {"error", "kaboom"}}, {{"text", "ok {{input}}"}}});
}
json one_step() { return json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}}"}}}); }

class team_supervision : public team_fixture {
 public:
  int attempts(const std::string& id) {
    auto r = ask(caf::make_message(task_atom::value, id));
    EXPECT_TRUE(r);
    return r ? (*r)["steps"][0]["attempts"].get<int>() : -1;
  }
  std::size_t requeued(const std::string& id) {
    return count("task.update", [&](const json& d) { return d["task"] == id && d["what"] == "step_requeued"; });
  }
  int restarts_of(const std::string& agent) {
    auto st = status();
    for (const auto& a : st["agents"])
      if (a["name"] == agent) return a["restarts"].get<int>();
    return -1;
  }
};

TEST_F(team_supervision, one_for_all_restarts_every_agent_and_requeues_the_others_work_without_an_attempt) {
  spawn(spec_of(team_config(crash_on_boom(), one_step(), 3, {{"strategy", "one_for_all"}})));
  auto x1 = submit("x1", "a1");
  auto x2 = submit("x2", "a2");
  auto boom = submit("boom", "a3", 1);  // a3 throws on it
  ASSERT_EQ(finished.count(boom), 1u);
  EXPECT_EQ(finished[boom]["state"], "failed");
  EXPECT_NE(finished[boom]["error"]["message"].get<std::string>().find("crashed"), std::string::npos);
  EXPECT_EQ(first(agent_states("a1"), 4), states({"idle", "busy", "restarting", "idle"}));
  EXPECT_EQ(first(agent_states("a2"), 4), states({"idle", "busy", "restarting", "idle"}));
  EXPECT_EQ(agent_states("a3"), states({"idle", "busy", "restarting", "idle"}));
  EXPECT_EQ(requeued(x1), 1u);
  EXPECT_EQ(requeued(x2), 1u);
  ASSERT_TRUE(run_until([&] { return finished.count(x1) && finished.count(x2); }));
  EXPECT_EQ(finished[x1]["state"], "succeeded");
  EXPECT_EQ(finished[x2]["state"], "succeeded");
  EXPECT_EQ(attempts(x1), 1) << "a sibling's restart is not a failed attempt";
  EXPECT_EQ(attempts(x2), 1);
  EXPECT_EQ(restarts_of("a3"), 1);
  EXPECT_EQ(restarts_of("a1"), 0);
  EXPECT_EQ(status()["strategy"], "one_for_all");
}

TEST_F(team_supervision, rest_for_one_restarts_the_crashed_agent_and_those_after_it_in_config_order) {
  spawn(spec_of(team_config(crash_on_boom(), one_step(), 3, {{"strategy", "rest_for_one"}})));
  auto x1 = submit("x1", "a1");
  auto x3 = submit("x3", "a3");
  auto boom = submit("boom", "a2", 1);
  ASSERT_EQ(finished.count(boom), 1u);
  EXPECT_EQ(agent_states("a1"), states({"idle", "busy"})) << "a1 comes before the crashed agent";
  EXPECT_EQ(agent_states("a2"), states({"idle", "busy", "restarting", "idle"}));
  EXPECT_EQ(first(agent_states("a3"), 4), states({"idle", "busy", "restarting", "idle"}));
  EXPECT_EQ(requeued(x1), 0u);
  EXPECT_EQ(requeued(x3), 1u);
  ASSERT_TRUE(run_until([&] { return finished.count(x1) && finished.count(x3); }));
  EXPECT_EQ(finished[x1]["state"], "succeeded");
  EXPECT_EQ(finished[x3]["state"], "succeeded");
  EXPECT_EQ(attempts(x1), 1);
  EXPECT_EQ(attempts(x3), 1);
}

TEST_F(team_supervision, one_for_one_retries_the_crashed_agents_task_per_its_attempts) {
  json replies = json::array({{{"match", "boom try 1"}, {"fault", "throw"}}, {{"text", "ok {{input}}"}}});
  json wf = json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}} try {{attempt}}"}}});
  spawn(spec_of(team_config(replies, wf, 2, {{"strategy", "one_for_one"}})));
  auto x = submit("x");        // a1, in flight
  auto boom = submit("boom");  // a2 throws on its first attempt
  EXPECT_EQ(agent_states("a1"), states({"idle", "busy"}));
  EXPECT_EQ(agent_states("a2"), states({"idle", "busy", "restarting", "idle"}));
  ASSERT_TRUE(run_until([&] { return finished.count(x) && finished.count(boom); }));
  EXPECT_EQ(finished[boom]["state"], "succeeded");
  EXPECT_EQ(attempts(boom), 2);
  EXPECT_EQ(attempts(x), 1);
  EXPECT_EQ(requeued(x), 0u);
}

TEST_F(team_supervision, past_the_intensity_the_team_fails_keeps_its_queue_and_an_operator_restart_revives_it) {
  json replies = json::array({{{"match", "boom try [12]$"}, {"regex", true}, {"fault", "throw"}}, {{"text", "ok"}}});
  json wf = json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}} try {{attempt}}"}}});
  spawn(spec_of(team_config(replies, wf, 1, {{"max_restarts", 1}, {"within_ms", 60000}}, 0)));
  auto boom = submit("boom", "", 5);
  // First crash: restarted. Its retry crashes again within the window: escalation.
  ASSERT_TRUE(run_until([&] { return status()["state"] == "failed"; }, 1000, 10));
  EXPECT_EQ(agent_states("a1").back(), "failed");
  auto x = submit("x");
  run_until([] { return false; }, 500);
  EXPECT_EQ(finished.count(x), 0u) << "a failed team runs nothing";
  EXPECT_EQ(finished.count(boom), 0u);
  auto st = status();
  EXPECT_EQ(st["agents"][0]["state"], "failed");
  EXPECT_EQ(st["queued"], 1) << "the queue is kept";
  ASSERT_TRUE(ask(caf::make_message(restart_atom::value)));
  auto seq = agent_states("a1");
  auto failed_at = std::find(seq.begin(), seq.end(), "failed");
  ASSERT_NE(failed_at, seq.end());
  ASSERT_NE(failed_at + 1, seq.end());
  EXPECT_EQ(*(failed_at + 1), "idle") << "the operator restart brings the agent back";
  ASSERT_TRUE(run_until([&] { return finished.count(x) && finished.count(boom); }));
  EXPECT_EQ(finished[boom]["state"], "succeeded");
  EXPECT_EQ(finished[x]["state"], "succeeded");
  EXPECT_EQ(status()["state"], "running");
}

}  // namespace
}  // namespace troupe::actors::testing
