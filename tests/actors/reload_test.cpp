// Hot reload in-process: a real runtime reading its config from a file that the
// test rewrites, reloaded through the admin `reload` op. Synchronised on replies
// and events, never on sleeps.
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "runtime_fixture.hpp"

namespace troupe::test {
namespace {

using nlohmann::json;

json provider(const std::string& reply, int latency_ms = 0) {
  return {{"kind", "scripted"}, {"latency_ms", latency_ms}, {"replies", json::array({{{"text", reply}}})}};
}

json agent(const std::string& name, int max_concurrent = 1, json caps = json::array()) {
  return {{"name", name}, {"model", "m"}, {"max_concurrent", max_concurrent}, {"capabilities", caps}};
}

json step_on(const std::string& id, const std::string& agent_name) {
  return {{"id", id}, {"agent", agent_name}, {"prompt", id + " {{input}}"}};
}

json team(const std::string& name, json agents, json workflow) {
  return {{"name", name}, {"agents", agents}, {"workflow", workflow}, {"backoff_ms", 1}, {"backoff_max_ms", 5}};
}

json config_of(json providers, json agents, json teams) {
  return {{"store", "sqlite:unused.db"},
          {"providers", providers},
          {"models", {{"m", {{"provider", "p"}}}}},
          {"agents", agents},
          {"teams", teams}};
}

/// A runtime whose config lives in a file the test rewrites before each reload.
struct reloadable {
  std::filesystem::path dir;
  std::filesystem::path file;
  std::unique_ptr<host::runtime> rt;
  std::unique_ptr<event_log> log;

  explicit reloadable(const json& cfg, host::runtime_options opts = {false, {}, 20}) {
    dir = std::filesystem::temp_directory_path() /
          ("troupe-reload-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(dir);
    file = dir / "troupe.json";
    write(cfg);
    auto loaded = config::load_config_file(file.string());
    EXPECT_TRUE(loaded.cfg) << (loaded.problems.empty() ? "" : loaded.problems.front().message);
    if (!opts.store_override.empty()) opts.store_override = "sqlite:" + (dir / opts.store_override).string();
    rt = std::make_unique<host::runtime>(*loaded.cfg, opts);
    log = std::make_unique<event_log>(*rt);
    auto r = rt->start();
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  }
  ~reloadable() {
    log.reset();
    rt.reset();
    std::filesystem::remove_all(dir);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  void write(const json& cfg) const { std::ofstream(file) << cfg.dump(2); }
  base::result<json> reload(const json& cfg) {
    write(cfg);
    return call(*rt, "reload", json::object());
  }
  std::string submit(json args) {
    auto r = call(*rt, "submit", std::move(args));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? (*r)["id"].get<std::string>() : std::string();
  }
  json ok(const std::string& op, json args) {
    auto r = call(*rt, op, std::move(args));
    EXPECT_TRUE(r) << op << ": " << (r ? "" : r.error().message);
    return r ? *r : json{};
  }
};

std::vector<std::string> names_of(const json& list, const char* key = "name") {
  std::vector<std::string> out;
  for (const auto& x : list) out.push_back(x.value(key, ""));
  return out;
}

TEST(reload, a_new_team_starts_and_a_removed_team_finishes_its_queued_tasks_then_stops) {
  auto before = config_of({{"p", provider("done {{input}}")}}, {agent("a1"), agent("b1")},
                          {team("old", {"a1"}, {step_on("s", "a1")})});
  reloadable r{before};
  // Queue work behind a paused team so that it is certainly still queued at the reload.
  r.ok("pause", {{"team", "old"}});
  std::vector<std::string> old_tasks;
  for (int i = 0; i < 10; ++i) old_tasks.push_back(r.submit({{"team", "old"}, {"input", "x" + std::to_string(i)}}));
  EXPECT_EQ(r.ok("teams", json::object())["teams"][0]["queued"], 10);

  auto after = config_of({{"p", provider("done {{input}}")}}, {agent("a1"), agent("b1")},
                         {team("new", {"b1"}, {step_on("s", "b1")})});
  auto changes = r.reload(after);
  ASSERT_TRUE(changes) << changes.error().message;
  EXPECT_EQ((*changes)["teams_added"], json::array({"new"}));
  EXPECT_EQ((*changes)["teams_removed"], json::array({"old"}));
  auto announced = r.log->wait_event("system.reload", [](const json& d) { return d.contains("teams_added"); });
  EXPECT_EQ(announced["teams_removed"], json::array({"old"}));
  EXPECT_EQ(announced["by"], "anonymous");

  // The removed team takes no new work; the new one does.
  auto refused = call(*r.rt, "submit", {{"team", "old"}, {"input", "late"}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, base::errc::not_found);
  EXPECT_NE(refused.error().message.find("removed from the config"), std::string::npos) << refused.error().message;
  auto fresh = r.submit({{"team", "new"}, {"input", "y"}});
  EXPECT_EQ(r.log->wait_terminal(fresh)["result"], "done y");

  // Operators still reach the retiring team: resume it, and every queued task finishes.
  auto teams = r.ok("teams", json::object())["teams"];
  ASSERT_EQ(teams.size(), 2u) << teams.dump();
  for (const auto& t : teams) EXPECT_EQ(t["state"], t["name"] == "old" ? "retiring" : "running") << t.dump();
  r.ok("resume", {{"team", "old"}});
  for (std::size_t i = 0; i < old_tasks.size(); ++i) {
    auto done = r.log->wait_terminal(old_tasks[i]);
    EXPECT_EQ(done["state"], "succeeded") << done.dump();
    EXPECT_EQ(done["result"], "done x" + std::to_string(i));
  }
  // With its last task ended the team stops and leaves the listings.
  r.log->wait_event("system.team_stopped", [](const json& d) { return d.value("team", "") == "old"; });
  EXPECT_EQ(names_of(r.ok("teams", json::object())["teams"]), std::vector<std::string>{"new"});
}

TEST(reload, a_changed_agent_uses_its_new_settings_for_new_work_while_a_running_call_finishes_as_started) {
  // The scripted answer is fixed when the call starts and delivered after the latency.
  auto before = config_of({{"p", provider("v1 {{input}}", 300)}}, {agent("a1")}, {team("t", {"a1"}, {step_on("s", "a1")})});
  reloadable r{before};
  auto running = r.submit({{"team", "t"}, {"input", "first"}});
  r.log->wait_event("task.update", [&](const json& d) { return d.value("task", "") == running && d.value("what", "") == "step_started"; });

  auto after = config_of({{"p", provider("v2 {{input}}", 0)}}, {agent("a1", 3, {"extra"}), agent("a2")},
                         {team("t", {"a1", "a2"}, {step_on("s", "a1")})});
  after["teams"][0]["max_queued"] = 7;
  auto changes = r.reload(after);
  ASSERT_TRUE(changes) << changes.error().message;
  ASSERT_EQ((*changes)["teams_changed"].size(), 1u) << changes->dump();
  const auto& t = (*changes)["teams_changed"][0];
  EXPECT_EQ(t["team"], "t");
  EXPECT_EQ(t["settings"], json::array({"max_queued"}));
  EXPECT_EQ(t["agents_added"], json::array({"a2"}));
  EXPECT_EQ(t["agents_changed"][0]["agent"], "a1");
  EXPECT_EQ(t["agents_changed"][0]["settings"], json::array({"capabilities", "max_concurrent", "provider settings"}));

  EXPECT_EQ(r.log->wait_terminal(running)["result"], "v1 first");
  auto next = r.submit({{"team", "t"}, {"input", "second"}});
  EXPECT_EQ(r.log->wait_terminal(next)["result"], "v2 second");
  auto direct = r.submit({{"agent", "a2"}, {"input", "third"}});  // the new agent runs one-agent tasks
  EXPECT_EQ(r.log->wait_terminal(direct)["result"], "v2 third");
  auto status = r.ok("teams", json::object())["teams"][0];
  EXPECT_EQ(status["max_queued"], 7);
  ASSERT_EQ(status["agents"].size(), 2u);
  EXPECT_EQ(status["agents"][0]["max_concurrent"], 3);
  EXPECT_EQ(status["agents"][0]["capabilities"], json::array({"extra"}));
}

TEST(reload, a_removed_agent_runs_the_steps_older_tasks_need_then_retires) {
  // Old workflow: s1 on a1, then s2 on a2. The new one drops a2 and its step.
  auto before = config_of({{"p", provider("{{prompt}}")}}, {agent("a1"), agent("a2")},
                          {team("t", {"a1", "a2"}, {step_on("s1", "a1"), step_on("s2", "a2")})});
  reloadable r{before};
  r.ok("pause", {{"team", "t"}});
  std::vector<std::string> old_tasks;
  for (int i = 0; i < 5; ++i) old_tasks.push_back(r.submit({{"team", "t"}, {"input", std::to_string(i)}}));

  auto after = config_of({{"p", provider("{{prompt}}")}}, {agent("a1"), agent("a2")},
                         {team("t", {"a1"}, {step_on("s1", "a1")})});
  auto changes = r.reload(after);
  ASSERT_TRUE(changes) << changes.error().message;
  EXPECT_EQ((*changes)["teams_changed"][0]["agents_removed"], json::array({"a2"}));
  EXPECT_EQ((*changes)["teams_changed"][0]["settings"], json::array({"workflow"}));
  auto agents = r.ok("agents", json::object())["agents"];
  ASSERT_EQ(agents.size(), 2u);
  EXPECT_EQ(agents[1]["state"], "retiring");
  // New work follows the new workflow; a one-agent task for the removed agent is refused.
  auto fresh = r.submit({{"team", "t"}, {"input", "new"}});
  auto refused = call(*r.rt, "submit", {{"agent", "a2"}, {"input", "late"}});
  EXPECT_FALSE(refused);

  r.ok("resume", {{"team", "t"}});
  for (std::size_t i = 0; i < old_tasks.size(); ++i) {
    auto done = r.log->wait_terminal(old_tasks[i]);
    EXPECT_EQ(done["state"], "succeeded") << done.dump();
    EXPECT_EQ(done["result"], "s2 " + std::to_string(i));  // the retiring a2 ran the old second step
  }
  EXPECT_EQ(r.log->wait_terminal(fresh)["result"], "s1 new");
  r.log->wait_event("agent.status", [](const json& d) { return d.value("agent", "") == "a2" && d.value("state", "") == "retired"; });
  EXPECT_EQ(names_of(r.ok("agents", json::object())["agents"]), std::vector<std::string>{"a1"});
}

TEST(reload, a_config_needing_a_restart_or_with_errors_is_refused_and_nothing_changes) {
  auto before = config_of({{"p", provider("ok")}}, {agent("a1")}, {team("t", {"a1"}, {step_on("s", "a1")})});
  reloadable r{before, host::runtime_options{true, "store.db", 20}};

  auto restart = before;
  restart["store"] = "sqlite:elsewhere.db";
  restart["runtime"] = {{"threads", 3}};
  restart["teams"].push_back(team("extra", {"a1"}, {step_on("s", "a1")}));
  auto refused = r.reload(restart);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, base::errc::conflict);
  EXPECT_NE(refused.error().message.find("store, runtime.threads"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("nothing was applied"), std::string::npos);

  auto broken = before;
  broken["teams"][0]["max_queued"] = -1;
  broken["agents"][0]["model"] = "missing";
  auto rejected = r.reload(broken);
  ASSERT_FALSE(rejected);
  EXPECT_EQ(rejected.error().code, base::errc::bad_request);
  EXPECT_NE(rejected.error().message.find("teams[0].max_queued"), std::string::npos) << rejected.error().message;
  EXPECT_NE(rejected.error().message.find("agents[0].model"), std::string::npos) << rejected.error().message;

  // The running config stays: one team, still working.
  EXPECT_EQ(names_of(r.ok("teams", json::object())["teams"]), std::vector<std::string>{"t"});
  auto id = r.submit({{"team", "t"}, {"input", "z"}});
  EXPECT_EQ(r.log->wait_terminal(id)["state"], "succeeded");
  // A reload that changes nothing is applied (and says so); every attempt is audited.
  auto same = r.reload(before);
  ASSERT_TRUE(same) << same.error().message;
  EXPECT_TRUE((*same)["teams_changed"].empty());
  auto audit = r.ok("audit", {{"limit", 50}})["entries"];
  std::vector<std::string> outcomes;
  for (const auto& e : audit)
    if (e.value("action", "") == "reload") outcomes.push_back(e["detail"].value("outcome", ""));
  std::sort(outcomes.begin(), outcomes.end());
  EXPECT_EQ(outcomes, (std::vector<std::string>{"applied", "refused", "rejected"}));
}

}  // namespace
}  // namespace troupe::test
