// The root supervisor over team actors, deterministic on CAF's test coordinator
// (no store: a team restarts from what it held in memory). An exception inside a
// team restarts that team only; the directory routes to the new incarnation;
// past the root's intensity the team comes back failed until an operator restart.
#include "team_fixture.hpp"
#include "troupe/actors/supervision/root_supervisor.hpp"

namespace troupe::actors::testing {
namespace {

using nlohmann::json;

class root_supervision : public team_fixture {
 public:
  std::shared_ptr<supervision::team_directory> dir = std::make_shared<supervision::team_directory>();
  std::shared_ptr<team_stats> t_stats, u_stats;
  caf::actor root;

  void start_root(int max_restarts) {
    auto conf = team_config(json::array({{{"text", "ok {{input}}"}}}),
                           json::array({{{"id", "only"}, {"agent", "a1"}, {"prompt", "{{input}}"}}}), 1,
                           json::object(), 1000);
    auto u = conf["teams"][0];
    u["name"] = "u";
    conf["teams"].push_back(u);
    supervision::root_spec rs;
    for (const auto& name : {"t", "u"}) {
      auto s = spec_of(conf, name);
      s.bus = bus;
      (std::string(name) == "t" ? t_stats : u_stats) = s.stats;
      rs.teams.push_back(std::move(s));
    }
    rs.intensity.max_restarts = max_restarts;
    rs.intensity.within_ms = 60000;
    rs.directory = dir;
    root = supervision::spawn_root_supervisor(sys, std::move(rs));
    sched.run();
  }
  std::string submit_to(const std::string& team_name, const std::string& input) {
    agents::task_spec ts;
    ts.team = team_name;
    ts.input = input;
    auto r = ask(caf::make_message(submit_atom::value, ts), dir->get(team_name));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    sched.run();
    return r ? (*r)["id"].get<std::string>() : std::string();
  }
  json status_of(const std::string& team_name) {
    auto r = ask(caf::make_message(status_atom::value), dir->get(team_name));
    EXPECT_TRUE(r);
    return r ? *r : json{};
  }
  void crash(const std::string& team_name) {
    caf::anon_send(dir->get(team_name), fault_atom::value, std::string());
    sched.run();
  }
  ~root_supervision() override {
    if (root) caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
    sched.run();
  }
};

TEST_F(root_supervision, an_exception_in_a_team_restarts_that_team_only_from_what_it_held) {
  start_root(3);
  auto t_before = dir->get("t");
  auto u_before = dir->get("u");
  ASSERT_TRUE(t_before && u_before);
  auto x1 = submit_to("t", "x1");  // in flight on t's agent
  auto x2 = submit_to("t", "x2");  // queued behind it
  auto y = submit_to("u", "y");    // in flight on u's agent
  crash("t");
  auto t_after = dir->get("t");
  ASSERT_TRUE(t_after) << "the restarted team has a handle";
  EXPECT_NE(t_after, t_before);
  EXPECT_EQ(dir->get("u"), u_before) << "the other team was restarted too";
  EXPECT_EQ(t_stats->team_restarts.load(), 1u);
  EXPECT_EQ(u_stats->team_restarts.load(), 0u);
  // The new incarnation knows the old one's tasks; the control plane reaches it.
  EXPECT_EQ(status_of("t")["restarts"], 1);
  auto known = ask(caf::make_message(task_atom::value, x2), t_after);
  ASSERT_TRUE(known) << known.error().message;
  ASSERT_TRUE(run_until([&] { return finished.count(x1) && finished.count(x2) && finished.count(y); }));
  EXPECT_EQ(finished[x1]["state"], "succeeded");
  EXPECT_EQ(finished[x2]["state"], "succeeded");
  EXPECT_EQ(finished[y]["state"], "succeeded");
  EXPECT_EQ(count("task.update", [&](const json& d) { return d["task"] == y && d["what"] == "step_requeued"; }), 0u);
  auto y_task = ask(caf::make_message(task_atom::value, y), dir->get("u"));
  ASSERT_TRUE(y_task);
  EXPECT_EQ((*y_task)["steps"][0]["attempts"], 1) << "u's work was disturbed";
}

TEST_F(root_supervision, a_crashed_teams_agents_and_task_actors_end_with_it) {
  // Agents and task actors are monitored by their team, not linked to it: the team's
  // state stops them when it ends. Count every running actor before and after a crash.
  start_root(3);
  auto idle = sys.registry().running();
  // In the old incarnation: x's task actor, and an agent busy with x's call (its scripted
  // answer is 1 s away, so nothing but its team's end can stop it before then).
  auto x = submit_to("t", "x");
  crash("t");
  // Now: the idle count again (new agents for the old ones), plus x's new task actor.
  EXPECT_EQ(sys.registry().running(), idle + 1) << "actors of the crashed incarnation outlived it";
  ASSERT_TRUE(run_until([&] { return finished.count(x) > 0; }));
  sched.run();
  EXPECT_EQ(sys.registry().running(), idle) << "actors of the crashed incarnation outlived it";
}

TEST_F(root_supervision, past_the_roots_intensity_the_team_comes_back_failed_until_an_operator_restart) {
  start_root(1);
  auto x = submit_to("t", "x");
  crash("t");
  ASSERT_EQ(status_of("t")["state"], "running");
  crash("t");
  auto st = status_of("t");
  EXPECT_EQ(st["state"], "failed");
  EXPECT_EQ(st["agents"][0]["state"], "failed");
  EXPECT_EQ(status_of("u")["state"], "running");
  run_until([] { return false; }, 3000);
  EXPECT_EQ(finished.count(x), 0u) << "a failed team runs nothing";
  auto kept = ask(caf::make_message(task_atom::value, x), dir->get("t"));
  ASSERT_TRUE(kept) << "its tasks are kept";
  ASSERT_TRUE(ask(caf::make_message(restart_atom::value), dir->get("t")));
  ASSERT_TRUE(run_until([&] { return finished.count(x) > 0; }));
  EXPECT_EQ(finished[x]["state"], "succeeded");
  EXPECT_EQ(status_of("t")["state"], "running");
}

}  // namespace
}  // namespace troupe::actors::testing
