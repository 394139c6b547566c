// Human decisions as decision actors under the team, deterministic on CAF's
// test coordinator: validation, the operator's choice, the timeout on the actor
// clock, a crash of the decision actor, and recovery of pending decisions.
#include "team_fixture.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::testing {
namespace {

using nlohmann::json;

json publish_flow(int timeout_ms) {
  return json::array({{{"id", "draft"}, {"agent", "a1"}, {"prompt", "Draft {{input}}"}},
                      {{"id", "publish"},
                       {"decision",
                        {{"by", "human"}, {"options", {"publish", "reject"}}, {"default", "reject"}, {"timeout_ms", timeout_ms}}}}});
}

class team_decisions : public team_fixture {
 public:
  void start(int timeout_ms = 5000) {
    spawn(spec_of(team_config(json::array({{{"text", "draft of {{input}}"}}}), publish_flow(timeout_ms), 1, json::object(), 0)));
  }
  /// Submits a task and returns the id of the decision it waits on.
  std::string pending_decision(const std::string& input, std::string* task = nullptr) {
    auto id = submit(input);
    if (task) *task = id;
    auto r = ask(caf::make_message(decisions_atom::value));
    EXPECT_TRUE(r);
    for (const auto& d : (*r)["decisions"])
      if (d["task"] == id) return d["id"];
    ADD_FAILURE() << "no pending decision for " << id;
    return {};
  }
  base::result<json> decide(const std::string& did, const std::string& option) {
    decide_cmd cmd;
    cmd.decision_id = did;
    cmd.option = option;
    cmd.who = "ops";
    cmd.comment = "looks good";
    return ask(caf::make_message(decide_atom::value, cmd));
  }
  json resolved(const std::string& did) {
    for (const auto& [name, d] : events)
      if (name == "decision.resolved" && d["id"] == did) return d;
    return {};
  }
};

TEST_F(team_decisions, the_decision_actor_validates_and_the_operators_choice_is_committed_and_applied) {
  start();
  std::string task;
  auto did = pending_decision("news", &task);
  auto bad = decide(did, "maybe");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, base::errc::bad_request);
  EXPECT_NE(bad.error().message.find("publish, reject"), std::string::npos) << bad.error().message;
  auto ok = decide(did, "publish");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ((*ok)["chosen"], "publish");
  EXPECT_EQ((*ok)["decided_by"], "ops");
  EXPECT_EQ((*ok)["comment"], "looks good");
  sched.run();
  ASSERT_EQ(finished.count(task), 1u);
  EXPECT_EQ(finished[task]["state"], "succeeded");
  auto again = decide(did, "reject");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, base::errc::not_found);
}

TEST_F(team_decisions, the_timeout_on_the_actor_clock_applies_the_default) {
  start(5000);
  std::string task;
  auto did = pending_decision("news", &task);
  sched.advance_time(std::chrono::milliseconds(4000));
  sched.run();
  EXPECT_TRUE(resolved(did).is_null()) << "resolved before its timeout";
  ASSERT_TRUE(run_until([&] { return !resolved(did).is_null(); }, 2000));
  EXPECT_EQ(resolved(did)["chosen"], "reject");
  EXPECT_EQ(resolved(did)["decided_by"], "timeout");
  EXPECT_EQ(finished[task]["state"], "succeeded");
}

TEST_F(team_decisions, a_crashed_decision_actor_is_restarted_from_the_record_and_keeps_its_timeout) {
  start(5000);
  auto did = pending_decision("a");
  auto other = pending_decision("b");
  caf::anon_send(team, fault_atom::value, "decision:" + did);
  sched.run();
  EXPECT_EQ(status()["decision_restarts"], 1);
  EXPECT_TRUE(resolved(did).is_null());
  // The new incarnation still validates and decides...
  auto bad = decide(did, "nope");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, base::errc::bad_request);
  // ...and still owns the timeout; the other decision was not disturbed.
  ASSERT_TRUE(run_until([&] { return !resolved(did).is_null() && !resolved(other).is_null(); }, 6000));
  EXPECT_EQ(resolved(did)["decided_by"], "timeout");
  EXPECT_EQ(resolved(other)["decided_by"], "timeout");
}

TEST_F(team_decisions, a_decision_whose_task_is_parked_in_a_failed_team_stays_pending_until_an_operator_restart) {
  spawn(spec_of(team_config(json::array({{{"text", "draft of {{input}}"}}}), publish_flow(600000), 1,
                            {{"max_restarts", 1}, {"within_ms", 60000}}, 0)));
  std::string task;
  auto did = pending_decision("news", &task);
  // The task's actor crashes twice while it waits: past max_restarts 1 the team fails and
  // the task is parked with its record.
  for (int i = 1; i <= 2; ++i) {
    caf::anon_send(team, fault_atom::value, "task:" + task);
    ASSERT_TRUE(run_until([&] { return status()["task_restarts"] == i || status()["state"] == "failed"; }, 1000, 10));
  }
  ASSERT_EQ(status()["state"], "failed");
  auto refused = decide(did, "publish");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, base::errc::unavailable);
  EXPECT_NE(refused.error().message.find("decide it again after the restart"), std::string::npos)
      << refused.error().message;
  ASSERT_TRUE(ask(caf::make_message(restart_atom::value)));
  sched.run();
  auto ok = decide(did, "publish");
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_TRUE(run_until([&] { return finished.count(task) > 0; }));
  EXPECT_EQ(finished[task]["state"], "succeeded");
  EXPECT_EQ(resolved(did)["chosen"], "publish") << resolved(did).dump();
}

TEST_F(team_decisions, recovery_recreates_pending_decisions_and_an_expired_one_takes_its_default) {
  start(3600000);
  std::string t1, t2;
  auto expired = pending_decision("old", &t1);
  auto waiting = pending_decision("new", &t2);
  std::vector<agents::task> saved;
  for (const auto& id : {t1, t2}) {
    auto r = ask(caf::make_message(task_atom::value, id));
    ASSERT_TRUE(r);
    auto t = agents::task_from_json(*r);
    ASSERT_TRUE(t);
    saved.push_back(std::move(*t));
  }
  saved[0].decisions[0].deadline_ms = base::now_ms() - 1000;  // passed while the daemon was down
  caf::anon_send_exit(team, caf::exit_reason::user_shutdown);
  sched.run();
  events.clear();
  finished.clear();
  auto spec = spec_of(team_config(json::array({{{"text", "x"}}}), publish_flow(3600000), 1, json::object(), 0));
  spec.recovered = std::move(saved);
  spawn(std::move(spec));
  ASSERT_FALSE(resolved(expired).is_null()) << "an expired decision must take its default at start";
  EXPECT_EQ(resolved(expired)["chosen"], "reject");
  EXPECT_EQ(finished[t1]["state"], "succeeded");
  EXPECT_TRUE(resolved(waiting).is_null());
  auto ok = decide(waiting, "publish");
  ASSERT_TRUE(ok) << ok.error().message;
  sched.run();
  EXPECT_EQ(finished[t2]["state"], "succeeded");
}

}  // namespace
}  // namespace troupe::actors::testing
