// Hot reload with the real binary: rewrite the config file, send SIGHUP, and the
// running daemon serves the new teams and agents without a restart; a broken
// config or one that needs a restart is refused and the daemon carries on.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "daemon_process.hpp"
#include "integration_env.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using protocols::client::method;

json config_with(json teams, const std::string& reply) {
  return {{"providers", {{"p", {{"kind", "scripted"}, {"replies", json::array({{{"text", reply}}})}}}}},
          {"models", {{"m", {{"provider", "p"}}}}},
          {"agents", json::array({{{"name", "a1"}, {"model", "m"}}, {{"name", "b1"}, {"model", "m"}}})},
          {"teams", teams}};
}

json team_of(const std::string& name, const std::string& agent) {
  return {{"name", name}, {"agents", {agent}}, {"workflow", json::array({{{"id", "s"}, {"agent", agent}}})}};
}

/// Waits for a task to end (polling with a deadline) and returns its document.
json wait_done(api_client& api, const std::string& id) {
  const auto until = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    auto t = api.task(id);
    if (t) {
      auto state = t->value("state", "");
      if (state == "succeeded" || state == "failed" || state == "cancelled") return *t;
    }
    if (std::chrono::steady_clock::now() > until) return {};
    std::this_thread::sleep_for(10ms);
  }
}

}  // namespace

TEST(reload_e2e, sighup_applies_a_new_config_and_refuses_broken_or_restart_needing_ones) {
  scratch_dir dir{"troupe-reload"};
  const auto path = dir.file("troupe.json");
  ASSERT_TRUE(write_text(path, config_with(json::array({team_of("one", "a1")}), "v1 {{input}}").dump(2)));
  daemon_process d;
  std::string why;
  ASSERT_TRUE(d.start(troupe_exe(),
                      {"run", path, "--listen", "127.0.0.1:0", "--store", "sqlite:" + dir.file("troupe.db")},
                      dir.file("daemon.log"), why))
      << why;
  auto port = d.wait_until_ready(120s);
  ASSERT_TRUE(port) << d.output();
  api_client api{*port};
  auto first = api.submit("one", "x");
  ASSERT_EQ(first.outcome, submit_outcome::acknowledged);
  EXPECT_EQ(wait_done(api, first.id).value("result", ""), "v1 x");
  EXPECT_EQ(api.submit("two", "x").status, 404);

  // A new team and new replies: applied by SIGHUP (the --listen/--store overrides still hold).
  auto mark = d.output_size();
  ASSERT_TRUE(write_text(path, config_with(json::array({team_of("one", "a1"), team_of("two", "b1")}), "v2 {{input}}").dump(2)));
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for_output("reload applied", 30s, mark)) << d.output().substr(mark);
  auto second = api.submit("two", "y");
  ASSERT_EQ(second.outcome, submit_outcome::acknowledged) << second.body.dump();
  EXPECT_EQ(wait_done(api, second.id).value("result", ""), "v2 y");
  auto third = api.submit("one", "z");
  EXPECT_EQ(wait_done(api, third.id).value("result", ""), "v2 z");

  // Broken: every problem logged, the running config stays.
  mark = d.output_size();
  ASSERT_TRUE(write_text(path, R"({ "teams": [ { "name": 5 } ] })"));
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for_output("reload refused", 30s, mark)) << d.output().substr(mark);
  EXPECT_NE(d.output().find("teams[0].name", mark), std::string::npos) << d.output().substr(mark);

  // A change that needs a restart: refused by name, nothing applied (team "three" does not appear).
  mark = d.output_size();
  auto restart = config_with(json::array({team_of("one", "a1"), team_of("three", "b1")}), "v3");
  restart["runtime"] = {{"threads", 3}};
  ASSERT_TRUE(write_text(path, restart.dump(2)));
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for_output("runtime.threads", 30s, mark)) << d.output().substr(mark);
  EXPECT_NE(d.output().find("reload refused", mark), std::string::npos);
  EXPECT_EQ(api.submit("three", "w").status, 404);
  auto fourth = api.submit("two", "w");
  EXPECT_EQ(wait_done(api, fourth.id).value("result", ""), "v2 w");

  // Removing a team: it stops once its (finished) work is done; the daemon still exits cleanly.
  mark = d.output_size();
  ASSERT_TRUE(write_text(path, config_with(json::array({team_of("two", "b1")}), "v2 {{input}}").dump(2)));
  d.signal(SIGHUP);
  ASSERT_TRUE(d.wait_for_output("team stopped", 30s, mark)) << d.output().substr(mark);
  EXPECT_EQ(api.submit("one", "gone").status, 404);
  d.signal(SIGTERM);
  auto code = d.wait_exit(10s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0) << d.output();
  if (HasFailure()) dir.keep();
}

}  // namespace troupe::test
