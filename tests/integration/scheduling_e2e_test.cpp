// Scheduling and supervision with the real binary over HTTP (issue 3, "How it is
// checked"): an urgent task overtakes 200 queued low ones on a single agent, and
// an agent that throws on every 10th call still completes 1,000 tasks while the
// daemon reports its restarts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "daemon_process.hpp"
#include "integration_env.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using protocols::client::method;

/// A daemon on a config written to a scratch directory, with its own SQLite store.
struct daemon_on {
  scratch_dir dir{"troupe-sched"};
  daemon_process d;
  std::uint16_t port = 0;

  explicit daemon_on(const json& cfg) {
    EXPECT_TRUE(write_text(dir.file("troupe.json"), cfg.dump(2)));
    std::string why;
    EXPECT_TRUE(d.start(troupe_exe(),
                        {"run", dir.file("troupe.json"), "--listen", "127.0.0.1:0", "--store",
                         "sqlite:" + dir.file("troupe.db")},
                        dir.file("daemon.log"), why))
        << why;
    auto p = d.wait_until_ready(120s);
    EXPECT_TRUE(p) << d.output();
    if (p) port = *p;
  }
  ~daemon_on() {
    if (::testing::Test::HasFailure()) dir.keep();
  }
};

json one_agent_config(json replies, int max_concurrent, json team_extra = json::object()) {
  json team{{"name", "t"}, {"agents", {"a1"}}, {"max_queued", 100000}, {"backoff_ms", 1}, {"backoff_max_ms", 5},
            {"workflow", json::array({{{"id", "only"}, {"agent", "a1"}, {"prompt", "{{input}}"}}})}};
  team.update(team_extra);
  return {{"providers", {{"p", {{"kind", "scripted"}, {"replies", replies}}}}},
          {"models", {{"m", {{"provider", "p"}}}}},
          {"agents", json::array({{{"name", "a1"}, {"model", "m"}, {"max_concurrent", max_concurrent}}})},
          {"teams", json::array({team})}};
}

/// One sample of a Prometheus line such as troupe_tasks_total{team="t",outcome="succeeded"}.
std::optional<double> metric(api_client& api, const std::string& series) {
  auto r = api.call(method::get, "/metrics");
  if (!r || r->status != 200) return std::nullopt;
  auto at = r->body.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(r->body.substr(at + series.size() + 2));
}

/// Polls `cond` until it holds or the deadline passes (a condition with a deadline, not a sleep).
template <class F>
bool eventually(F cond, std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::string submit(api_client& api, const std::string& input, const std::string& priority) {
  json body{{"team", "t"}, {"input", input}, {"priority", priority}};
  auto r = api.call(method::post, "/v1/tasks", body.dump());
  EXPECT_TRUE(r && r->status == 202) << (r ? r->body : r.error().message);
  if (!r || r->status != 202) return {};
  return json::parse(r->body).value("id", "");
}

}  // namespace

TEST(scheduling_e2e, an_urgent_task_finishes_before_at_least_190_of_200_queued_low_tasks) {
  // The first low task holds the only slot for 4 s, so the other 199 queue up
  // behind it; after that every call takes 5 ms.
  json replies = json::array({{{"match", "hold"}, {"latency_ms", 4000}, {"text", "held"}},
                              {{"latency_ms", 5}, {"text", "done {{input}}"}}});
  daemon_on daemon{one_agent_config(replies, 1)};
  ASSERT_NE(daemon.port, 0);
  api_client api{daemon.port};
  std::vector<std::string> lows{submit(api, "hold", "low")};
  for (int i = 1; i < 200; ++i) lows.push_back(submit(api, "low-" + std::to_string(i), "low"));
  // The premise of the test: the queue really built up.
  auto queued = metric(api, "troupe_queue_depth{team=\"t\"}");
  ASSERT_TRUE(queued);
  ASSERT_GE(*queued, 190) << "the low tasks did not queue up behind the held one";
  auto urgent = submit(api, "urgent", "urgent");
  ASSERT_FALSE(urgent.empty());

  ASSERT_TRUE(eventually([&] { return metric(api, "troupe_tasks_total{team=\"t\",outcome=\"succeeded\"}") == 201.0; }, 120s))
      << "not all 201 tasks succeeded";
  auto finished_at = [&](const std::string& id) {
    auto t = api.task(id);
    EXPECT_TRUE(t) << id;
    return t ? t->at("steps").at(0).value("finished_ms", std::int64_t{0}) : 0;
  };
  const auto urgent_done = finished_at(urgent);
  int lows_after = 0;
  for (const auto& id : lows) lows_after += finished_at(id) > urgent_done ? 1 : 0;
  EXPECT_GE(lows_after, 190) << "the urgent task finished after " << 200 - lows_after << " of the 200 low tasks";
  std::printf("[scheduling_e2e] urgent finished before %d of 200 queued low tasks\n", lows_after);
}

TEST(scheduling_e2e, an_agent_throwing_on_every_10th_call_still_completes_1000_tasks_and_restarts_are_reported) {
  // Every 10th call of an agent incarnation throws; the restarted incarnation counts
  // from zero, so each one answers 9 calls and crashes on the 10th: 1,000 tasks take
  // about 1000/9 = 111 crashes. The crashed call's task retries (max_attempts 5).
  json replies = json::array({{{"text", "ok {{input}}"}, {"fault", "throw"}, {"every", 10}, {"error", "scripted crash"}}});
  json extra{{"max_attempts", 5}, {"supervision", {{"strategy", "one_for_one"}, {"max_restarts", 1000}, {"within_ms", 60000}}}};
  daemon_on daemon{one_agent_config(replies, 1, extra)};
  ASSERT_NE(daemon.port, 0);
  constexpr int tasks = 1000;
  std::atomic<int> next{0}, refused{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c)
    threads.emplace_back([&] {
      api_client api{daemon.port};
      for (int i = next++; i < tasks; i = next++)
        if (api.submit("t", "task-" + std::to_string(i)).outcome != submit_outcome::acknowledged) ++refused;
    });
  for (auto& t : threads) t.join();
  ASSERT_EQ(refused.load(), 0);

  api_client api{daemon.port};
  ASSERT_TRUE(eventually([&] {
    auto ended = metric(api, "troupe_tasks_total{team=\"t\",outcome=\"succeeded\"}").value_or(0) +
                 metric(api, "troupe_tasks_total{team=\"t\",outcome=\"failed\"}").value_or(0);
    return ended >= tasks;
  }, 180s)) << "tasks did not finish";
  EXPECT_EQ(metric(api, "troupe_tasks_total{team=\"t\",outcome=\"succeeded\"}"), double(tasks));
  EXPECT_EQ(metric(api, "troupe_tasks_total{team=\"t\",outcome=\"failed\"}"), 0.0);
  auto restarts = metric(api, "troupe_agent_restarts_total{team=\"t\"}");
  ASSERT_TRUE(restarts);
  EXPECT_GE(*restarts, 100);
  EXPECT_LE(*restarts, 125);
  // The team status reports the same count per agent, and the team is still running.
  auto teams = api.call(method::get, "/v1/teams");
  ASSERT_TRUE(teams && teams->status == 200);
  auto team = json::parse(teams->body)["teams"][0];
  EXPECT_EQ(team["state"], "running");
  EXPECT_EQ(team["agents"][0]["restarts"].get<double>(), *restarts);
  EXPECT_EQ(team["agents"][0]["state"], "idle");
  std::printf("[scheduling_e2e] 1000 tasks succeeded with %.0f agent restarts\n", *restarts);
}

}  // namespace troupe::test
