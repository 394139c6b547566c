// The root supervisor in the real runtime (real threads, a SQLite store): a team
// actor that throws is restarted from its last committed state, the control
// plane reaches the new incarnation, and the other team is not disturbed.
#include <filesystem>

#include <unistd.h>

#include "runtime_fixture.hpp"

namespace troupe::test {
namespace {

using nlohmann::json;

json two_teams(const std::string& store) {
  json cfg;
  cfg["store"] = store;
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", 300}, {"replies", json::array({{{"text", "ok {{input}}"}}})}};
  cfg["models"]["m"] = {{"provider", "p"}};
  cfg["agents"] = json::array({{{"name", "a1"}, {"model", "m"}}, {{"name", "b1"}, {"model", "m"}}});
  cfg["teams"] = json::array({
      {{"name", "t"}, {"agents", {"a1"}}, {"workflow", json::array({{{"id", "s"}, {"agent", "a1"}}})}},
      {{"name", "u"}, {"agents", {"b1"}}, {"workflow", json::array({{{"id", "s"}, {"agent", "b1"}}})}},
  });
  cfg["runtime"]["supervision"] = {{"max_restarts", 3}, {"within_ms", 60000}};
  return cfg;
}

struct runtime_supervision : ::testing::Test {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("troupe-rtsup-" + std::to_string(::getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  void SetUp() override { std::filesystem::create_directories(dir); }
  void TearDown() override { std::filesystem::remove_all(dir); }
};

TEST_F(runtime_supervision, a_team_that_throws_restarts_from_the_store_and_the_other_team_runs_on) {
  host::runtime rt{load(two_teams("sqlite:" + (dir / "s.db").string()).dump()), host::runtime_options{true, {}, 20}};
  event_log log{rt};
  ASSERT_TRUE(rt.start());
  std::vector<std::string> mine;
  for (int i = 0; i < 5; ++i) {
    auto r = call(rt, "submit", {{"team", "t"}, {"input", "x" + std::to_string(i)}});
    ASSERT_TRUE(r) << r.error().message;
    mine.push_back((*r)["id"]);
  }
  auto other = call(rt, "submit", {{"team", "u"}, {"input", "y"}});
  ASSERT_TRUE(other);
  std::string y = (*other)["id"];
  log.wait_event("task.update", [&](const json& d) { return d["task"] == mine[0] && d["what"] == "step_started"; });
  log.wait_event("task.update", [&](const json& d) { return d["task"] == y && d["what"] == "step_started"; });
  ASSERT_TRUE(rt.inject_fault_for_tests("t"));
  // Requests reach the new incarnation once it is up (until then: unavailable, never lost).
  for (const auto& id : mine) EXPECT_EQ(log.wait_terminal(id)["state"], "succeeded") << id;
  EXPECT_EQ(log.wait_terminal(y)["state"], "succeeded");
  auto metrics = call(rt, "metrics", json::object());
  ASSERT_TRUE(metrics);
  EXPECT_EQ((*metrics)["teams"]["t"]["team_restarts"], 1);
  EXPECT_EQ((*metrics)["teams"]["u"]["team_restarts"], 0);
  auto ytask = call(rt, "task", {{"id", y}});
  ASSERT_TRUE(ytask);
  EXPECT_EQ((*ytask)["steps"][0]["attempts"], 1) << "the other team's work was disturbed";
  EXPECT_EQ(log.count("task.update", [&](const json& d) { return d["task"] == y && d["what"] == "step_requeued"; }), 0u);
  // After the restart the team answers and takes new work.
  auto again = call(rt, "submit", {{"team", "t"}, {"input", "after"}});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(log.wait_terminal((*again)["id"])["state"], "succeeded");
  auto teams = call(rt, "teams", json::object());
  ASSERT_TRUE(teams);
  for (const auto& t : (*teams)["teams"]) {
    if (t["name"] == "t") {
      EXPECT_EQ(t["restarts"], 1);
    }
  }
  rt.stop(1000);
}

TEST_F(runtime_supervision, without_a_store_the_team_restarts_from_what_it_held) {
  host::runtime rt{load(two_teams("sqlite:unused.db").dump()), host::runtime_options{false, {}, 20}};
  event_log log{rt};
  ASSERT_TRUE(rt.start());
  std::vector<std::string> mine;
  for (int i = 0; i < 3; ++i) {
    auto r = call(rt, "submit", {{"team", "t"}, {"input", "x" + std::to_string(i)}});
    ASSERT_TRUE(r) << r.error().message;
    mine.push_back((*r)["id"]);
  }
  log.wait_event("task.update", [&](const json& d) { return d["task"] == mine[0] && d["what"] == "step_started"; });
  ASSERT_TRUE(rt.inject_fault_for_tests("t"));
  for (const auto& id : mine) EXPECT_EQ(log.wait_terminal(id)["state"], "succeeded") << id;
  rt.stop(1000);
}

}  // namespace
}  // namespace troupe::test
