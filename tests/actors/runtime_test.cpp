// The runtime end to end in-process: real actors on real threads, driven through
// the control port, synchronised on events.
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "runtime_fixture.hpp"
#include "troupe/persistence/open_store.hpp"

namespace troupe::test {
namespace {

using nlohmann::json;

/// A one-team config with agents "a1".."aN" on a scripted provider.
json base_config(json replies, json workflow, int agents = 1, int max_concurrent = 1, json latency = 0) {
  json cfg;
  cfg["store"] = "sqlite:unused.db";
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", latency}, {"replies", replies}};
  cfg["models"]["m"] = {{"provider", "p"}, {"usd_per_mtok_in", 1.0}, {"usd_per_mtok_out", 2.0}};
  json names = json::array();
  for (int i = 1; i <= agents; ++i) {
    auto name = "a" + std::to_string(i);
    cfg["agents"].push_back({{"name", name}, {"model", "m"}, {"max_concurrent", max_concurrent}, {"capabilities", {"work"}}});
    names.push_back(name);
  }
  cfg["teams"].push_back({{"name", "t"}, {"agents", names}, {"workflow", workflow}, {"backoff_ms", 1}, {"backoff_max_ms", 5}});
  return cfg;
}

json one_step() { return json::array({{{"id", "only"}, {"agent", "a1"}, {"prompt", "Do: {{input}}"}}}); }

struct running {
  host::runtime rt;
  event_log log;
  explicit running(const json& cfg, host::runtime_options opts = {false, {}, 20})
      : rt(load(cfg.dump()), opts), log(rt) {
    auto r = rt.start();
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  }
  std::string submit(json args) {
    auto r = call(rt, "submit", std::move(args));
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? (*r)["id"].get<std::string>() : std::string();
  }
  json task(const std::string& id) {
    auto r = call(rt, "task", {{"id", id}});
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : json{};
  }
};

TEST(runtime, newsroom_workflow_with_agent_review_loop) {
  json replies = json::array({
      {{"match", "approve or revise[\\s\\S]*Revised"}, {"regex", true}, {"text", "approve: good"}},
      {{"match", "approve or revise"}, {"text", "revise: needs sources"}},
      {{"match", "Feedback: revise"}, {"text", "Revised article on {{input}}"}},
      {{"match", "Write"}, {"text", "Draft on {{input}}"}},
      {{"text", "R({{prompt}})"}},
  });
  json wf = json::array({
      {{"id", "research"}, {"agent", "a1"}, {"prompt", "Research {{input}}"}},
      {{"id", "write"}, {"agent", "a2"}, {"prompt", "Write from {{step.research}}. Feedback: {{step.review}}"}},
      {{"id", "review"}, {"decision", {{"by", "agent:a3"}, {"options", {"approve", "revise"}}, {"on", {{"revise", "write"}}},
                                       {"max_loops", 2}, {"prompt", "approve or revise: {{step.write}}"}}}},
      {{"id", "publish"}, {"agent", "a1"}, {"prompt", "Publish {{step.write}}"}},
  });
  running r{base_config(replies, wf, 3, 4)};
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(r.submit({{"team", "t"}, {"input", "topic" + std::to_string(i)}}));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto done = r.log.wait_terminal(ids[i]);
    ASSERT_EQ(done["state"], "succeeded") << done.dump();
    auto t = r.task(ids[i]);
    EXPECT_EQ(t["result"], "R(Publish Revised article on topic" + std::to_string(i) + ")");
    ASSERT_EQ(t["decisions"].size(), 2u);
    EXPECT_EQ(t["decisions"][0]["chosen"], "revise");
    EXPECT_EQ(t["decisions"][0]["decided_by"], "a3");
    EXPECT_EQ(t["decisions"][1]["chosen"], "approve");
    EXPECT_EQ(t["cost"]["calls"], 6);  // research, write, review, write, review, publish
    EXPECT_GT(t["cost"]["usd"].get<double>(), 0.0);
  }
}

TEST(runtime, dag_branches_run_in_parallel_and_join) {
  json replies = json::array({{{"text", "[{{prompt}}]"}}});
  json wf = json::array({
      {{"id", "brief"}, {"agent", "a1"}, {"prompt", "b"}},
      {{"id", "left"}, {"agent", "a2"}, {"after", {"brief"}}, {"prompt", "l:{{step.brief}}"}},
      {{"id", "right"}, {"agent", "a3"}, {"after", {"brief"}}, {"prompt", "r:{{step.brief}}"}},
      {{"id", "join"}, {"agent", "a1"}, {"after", {"left", "right"}}, {"prompt", "{{step.left}}+{{step.right}}"}},
  });
  // Latency lets both branches be in flight at once.
  running r{base_config(replies, wf, 3, 1, 30)};
  auto id = r.submit({{"team", "t"}, {"input", "x"}});
  ASSERT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
  auto t = r.task(id);
  EXPECT_EQ(t["result"], "[[l:[b]]+[r:[b]]]");
  auto left = t["steps"][1], right = t["steps"][2];
  // Parallel: each branch started before the other finished.
  EXPECT_LT(left["started_ms"].get<std::int64_t>(), right["finished_ms"].get<std::int64_t>());
  EXPECT_LT(right["started_ms"].get<std::int64_t>(), left["finished_ms"].get<std::int64_t>());
}

TEST(runtime, human_decision_waits_for_an_operator) {
  json wf = json::array({
      {{"id", "draft"}, {"agent", "a1"}, {"prompt", "{{input}}"}},
      {{"id", "signoff"}, {"decision", {{"by", "human"}, {"options", {"ship", "hold"}}, {"default", "hold"}}}},
  });
  running r{base_config(json::array(), wf)};
  auto id = r.submit({{"team", "t"}, {"input", "x"}});
  auto pending = r.log.wait_event("decision.pending", [&](const json& d) { return d["task"] == id; });
  EXPECT_EQ(r.task(id)["state"], "waiting_decision");
  auto listed = call(r.rt, "decisions", json::object());
  ASSERT_TRUE(listed);
  ASSERT_EQ((*listed)["decisions"].size(), 1u);
  auto bad = call(r.rt, "decide", {{"decision_id", pending["id"]}, {"option", "maybe"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, base::errc::bad_request);
  auto ok = call(r.rt, "decide", {{"decision_id", pending["id"]}, {"option", "ship"}, {"comment", "lgtm"}});
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
  auto t = r.task(id);
  EXPECT_EQ(t["decisions"][0]["chosen"], "ship");
  EXPECT_EQ(t["decisions"][0]["comment"], "lgtm");
  EXPECT_EQ(t["decisions"][0]["decided_by"], "anonymous");
  auto again = call(r.rt, "decide", {{"decision_id", pending["id"]}, {"option", "ship"}});
  EXPECT_FALSE(again);
}

TEST(runtime, a_decide_sent_the_moment_decision_pending_is_published_finds_the_decision) {
  // The tightest race a client can run: decide from inside the event listener, on the
  // thread that published the event. The decision must already be there.
  json wf = json::array({
      {{"id", "signoff"}, {"decision", {{"by", "human"}, {"options", {"ship", "hold"}}, {"default", "hold"}}}},
  });
  running r{base_config(json::array(), wf)};
  constexpr int n = 30;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<base::result<json>> replies;
  auto token = r.rt.listen([&](const std::shared_ptr<const protocols::event>& ev) {
    if (ev->name != "decision.pending") return;
    r.rt.call(protocols::principal{}, "decide", {{"decision_id", ev->data["id"]}, {"option", "ship"}},
              [&](base::result<json> res) {
                std::lock_guard lock(mu);
                replies.push_back(std::move(res));
                cv.notify_all();
              });
  });
  for (int i = 0; i < n; ++i) r.submit({{"team", "t"}, {"input", std::to_string(i)}});
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return replies.size() == n; }))
      << replies.size() << " of " << n << " decides answered";
  for (const auto& res : replies) EXPECT_TRUE(res) << res.error().message;
  lock.unlock();
  EXPECT_TRUE(r.log.wait_terminal_count(n));
}

TEST(runtime, human_decision_timeout_applies_default) {
  json wf = json::array({
      {{"id", "signoff"}, {"decision", {{"by", "human"}, {"options", {"ship", "hold"}}, {"default", "hold"}, {"timeout_ms", 50}}}},
  });
  running r{base_config(json::array(), wf)};
  auto id = r.submit({{"team", "t"}, {"input", "x"}});
  ASSERT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
  auto t = r.task(id);
  EXPECT_EQ(t["decisions"][0]["chosen"], "hold");
  EXPECT_EQ(t["decisions"][0]["decided_by"], "timeout");
}

TEST(runtime, retryable_errors_are_retried_fatal_ones_fail_with_the_message) {
  json replies = json::array({
      {{"match", "flaky"}, {"fault", "error"}, {"error", "HTTP 503"}, {"every", 2}, {"text", "ok"}},
      {{"match", "broken"}, {"fault", "fatal"}, {"error", "401 invalid x-api-key"}},
      {{"text", "fine"}},
  });
  running r{base_config(replies, one_step())};
  auto flaky1 = r.submit({{"team", "t"}, {"input", "flaky"}});
  auto flaky2 = r.submit({{"team", "t"}, {"input", "flaky"}});
  auto broken = r.submit({{"team", "t"}, {"input", "broken"}});
  EXPECT_EQ(r.log.wait_terminal(flaky1)["state"], "succeeded");
  EXPECT_EQ(r.log.wait_terminal(flaky2)["state"], "succeeded");
  auto f = r.log.wait_terminal(broken);
  EXPECT_EQ(f["state"], "failed");
  EXPECT_EQ(f["error"]["code"], "provider_error");
  EXPECT_NE(f["error"]["message"].get<std::string>().find("401 invalid x-api-key"), std::string::npos);
  EXPECT_EQ(r.task(broken)["steps"][0]["attempts"], 1);  // not retried
  EXPECT_EQ(r.task(flaky2)["steps"][0]["attempts"], 2);  // the second call failed once
}

TEST(runtime, an_agent_that_throws_is_restarted_and_work_retried) {
  json replies = json::array({{{"fault", "throw"}, {"every", 10}, {"error", "kaboom"}, {"text", "ok {{input}}"}}});
  auto cfg = base_config(replies, one_step(), 1, 4);
  cfg["teams"][0]["supervision"] = {{"max_restarts", 1000}, {"within_ms", 60000}};
  // Every call in flight on a crashing agent fails with it (4 at a time here), so a task
  // can be caught by several crashes in a row: enough attempts that none runs out.
  cfg["teams"][0]["max_attempts"] = 10;
  running r{cfg};
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(r.submit({{"team", "t"}, {"input", std::to_string(i)}}));
  ASSERT_TRUE(r.log.wait_terminal_count(200));
  for (auto& id : ids) EXPECT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
  auto teams = call(r.rt, "teams", json::object());
  ASSERT_TRUE(teams);
  EXPECT_GE((*teams)["teams"][0]["agents"][0]["restarts"].get<int>(), 15);
  EXPECT_GE(r.log.count("agent.status", [](const json& d) { return d["state"] == "restarting"; }), 15u);
}

TEST(runtime, restart_intensity_exceeded_fails_the_team_but_keeps_its_queue) {
  json replies = json::array({{{"fault", "throw"}, {"error", "always"}}});
  auto cfg = base_config(replies, one_step());
  cfg["teams"][0]["supervision"] = {{"max_restarts", 2}, {"within_ms", 60000}};
  cfg["teams"][0]["max_attempts"] = 100;
  running r{cfg};
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(r.submit({{"team", "t"}, {"input", "x"}}));
  r.log.wait_event("agent.status", [](const json& d) { return d["state"] == "failed"; });
  auto teams = call(r.rt, "teams", json::object());
  ASSERT_TRUE(teams);
  EXPECT_EQ((*teams)["teams"][0]["state"], "failed");
  for (auto& id : ids) {
    auto state = r.task(id)["state"].get<std::string>();
    EXPECT_TRUE(state == "queued" || state == "running") << state;
  }
}

TEST(runtime, urgent_overtakes_queued_low_priority_work) {
  running r{base_config(json::array({{{"text", "ok"}}}), one_step(), 1, 1, 2)};
  std::vector<std::string> lows;
  for (int i = 0; i < 60; ++i) lows.push_back(r.submit({{"team", "t"}, {"input", "low"}, {"priority", "low"}}));
  // Lows already handed to the agent finish first; every low still queued must wait.
  auto started = r.log.count("task.update", [](const json& d) { return d["what"] == "step_started"; });
  auto urgent = r.submit({{"team", "t"}, {"input", "now"}, {"priority", "urgent"}});
  ASSERT_TRUE(r.log.wait_terminal_count(61));
  auto order = r.log.finish_order();
  auto pos = static_cast<std::size_t>(std::find(order.begin(), order.end(), urgent) - order.begin());
  ASSERT_LT(started, 50u) << "the agent ran through the lows before the urgent task arrived";
  EXPECT_LE(pos, started + 1) << "urgent finished at position " << pos << " with " << started << " lows started";
}

TEST(runtime, max_queued_rejects_with_overloaded) {
  auto cfg = base_config(json::array({{{"text", "ok"}}}), one_step(), 1, 1, 200);
  cfg["teams"][0]["max_queued"] = 3;
  running r{cfg};
  int accepted = 0, overloaded = 0;
  for (int i = 0; i < 10; ++i) {
    auto res = call(r.rt, "submit", {{"team", "t"}, {"input", "x"}});
    if (res) ++accepted;
    else if (res.error().code == base::errc::overloaded) ++overloaded;
  }
  EXPECT_LE(accepted, 4);  // 3 queued + at most 1 already running
  EXPECT_GE(overloaded, 6);
}

TEST(runtime, cancel_queued_and_running_tasks) {
  running r{base_config(json::array({{{"text", "ok"}}}), one_step(), 1, 1, 300)};
  auto first = r.submit({{"team", "t"}, {"input", "a"}});
  auto second = r.submit({{"team", "t"}, {"input", "b"}});
  r.log.wait_event("task.update", [&](const json& d) { return d["task"] == first && d["what"] == "step_started"; });
  ASSERT_TRUE(call(r.rt, "cancel", {{"id", first}}));
  ASSERT_TRUE(call(r.rt, "cancel", {{"id", second}}));
  EXPECT_EQ(r.log.wait_terminal(first)["state"], "cancelled");
  EXPECT_EQ(r.log.wait_terminal(second)["state"], "cancelled");
  auto again = call(r.rt, "cancel", {{"id", first}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, base::errc::conflict);
  auto missing = call(r.rt, "cancel", {{"id", "t_nope"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, base::errc::not_found);
}

TEST(runtime, pause_with_abort_requeues_running_work_and_resume_finishes_it) {
  // The first call hangs for a minute; every later call answers at once.
  json replies = json::array({{{"times", 1}, {"latency_ms", 60000}, {"text", "slow"}}, {{"text", "fast"}}});
  running r{base_config(replies, one_step())};
  auto id = r.submit({{"team", "t"}, {"input", "x"}});
  r.log.wait_event("task.update", [&](const json& d) { return d["task"] == id && d["what"] == "step_started"; });
  ASSERT_TRUE(call(r.rt, "pause", {{"agent", "a1"}, {"abort", true}}));
  r.log.wait_event("task.update", [&](const json& d) { return d["task"] == id && d["what"] == "step_requeued"; });
  // The aborted call still cost its prompt: booked once the agent has cancelled it.
  auto aborted = r.log.wait_event("llm.call", [&](const json& d) { return d["task"] == id; });
  EXPECT_EQ(aborted["outcome"], "cancelled");
  EXPECT_GT(aborted.value("cost_usd", 0.0), 0.0);
  auto teams = call(r.rt, "teams", json::object());
  ASSERT_TRUE(teams);
  EXPECT_TRUE((*teams)["teams"][0]["agents"][0]["in_flight"].empty());
  EXPECT_EQ(r.task(id)["state"], "running");
  ASSERT_TRUE(call(r.rt, "resume", {{"agent", "a1"}}));
  auto done = r.log.wait_terminal(id);
  EXPECT_EQ(done["state"], "succeeded");
  EXPECT_EQ(done["result"], "fast");
  EXPECT_EQ(r.task(id)["steps"][0]["attempts"], 1);  // an operator abort is not a failed attempt
  EXPECT_EQ(r.task(id)["cost"]["calls"], 2);  // the aborted call and the one that answered
  EXPECT_EQ(r.log.count("llm.call", [&](const json& d) { return d["task"] == id; }), 2u);
  auto bad = call(r.rt, "pause", {{"agent", "a1"}, {"abort", "yes"}});
  ASSERT_TRUE(bad);  // a non-boolean abort is simply not an abort
}

TEST(runtime, deadline_exceeded) {
  running r{base_config(json::array({{{"text", "ok"}}}), one_step(), 1, 1, 1000)};
  auto id = r.submit({{"team", "t"}, {"input", "a"}, {"deadline_ms", 50}});
  auto f = r.log.wait_terminal(id);
  EXPECT_EQ(f["state"], "failed");
  EXPECT_EQ(f["error"]["code"], "deadline_exceeded");
}

TEST(runtime, depends_on_waits_and_propagates_failure) {
  json replies = json::array({{{"match", "bad"}, {"fault", "fatal"}, {"error", "no"}}, {{"text", "ok {{input}}"}}});
  running r{base_config(replies, one_step(), 1, 1, 20)};
  auto a = r.submit({{"team", "t"}, {"input", "good"}});
  auto b = r.submit({{"team", "t"}, {"input", "after"}, {"depends_on", {a}}, {"priority", "urgent"}});
  auto c = r.submit({{"team", "t"}, {"input", "bad"}});
  auto d = r.submit({{"team", "t"}, {"input", "never"}, {"depends_on", {c}}});
  EXPECT_EQ(r.log.wait_terminal(b)["state"], "succeeded");
  auto order = r.log.finish_order();
  EXPECT_LT(std::find(order.begin(), order.end(), a), std::find(order.begin(), order.end(), b));
  auto fd = r.log.wait_terminal(d);
  EXPECT_EQ(fd["state"], "failed");
  EXPECT_EQ(fd["error"]["code"], "dependency_failed");
  auto unknown = call(r.rt, "submit", {{"team", "t"}, {"input", "x"}, {"depends_on", {"t_missing"}}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, base::errc::bad_request);
}

TEST(runtime, team_budget_stops_calls_before_overspending) {
  auto cfg = base_config(json::array({{{"text", std::string(400, 'x')}}}), one_step());
  cfg["teams"][0]["budget_usd"] = 0.0001;  // ~100 tokens out at $2/Mtok = $0.0002 per call
  running r{cfg};
  auto first = r.submit({{"team", "t"}, {"input", "a"}});
  EXPECT_EQ(r.log.wait_terminal(first)["state"], "succeeded");
  auto second = r.submit({{"team", "t"}, {"input", "b"}});
  auto f = r.log.wait_terminal(second);
  EXPECT_EQ(f["state"], "failed");
  EXPECT_EQ(f["error"]["code"], "budget_exceeded");
  EXPECT_EQ(r.task(second)["cost"]["calls"], 0);
}

TEST(runtime, idempotency_key_returns_the_existing_task) {
  running r{base_config(json::array({{{"text", "ok"}}}), one_step())};
  auto a = call(r.rt, "submit", {{"team", "t"}, {"input", "a"}, {"idempotency_key", "k"}});
  auto b = call(r.rt, "submit", {{"team", "t"}, {"input", "a"}, {"idempotency_key", "k"}});
  ASSERT_TRUE(a && b);
  EXPECT_EQ((*a)["id"], (*b)["id"]);
  EXPECT_EQ((*b)["existing"], true);
}

TEST(runtime, bad_submissions_are_rejected_with_clear_errors) {
  running r{base_config(json::array(), one_step())};
  auto expect_bad = [&](json args, const std::string& needle) {
    auto res = call(r.rt, "submit", args);
    ASSERT_FALSE(res) << args.dump();
    EXPECT_NE(res.error().message.find(needle), std::string::npos) << res.error().message;
  };
  expect_bad({{"input", "x"}}, "exactly one of 'team' or 'agent'");
  expect_bad({{"team", "t"}}, "'input' is required");
  expect_bad({{"team", "t"}, {"input", 5}}, "field 'input': expected a string, got integer");
  expect_bad({{"team", "t"}, {"input", "x"}, {"priority", "asap"}}, "field 'priority'");
  expect_bad({{"team", "t"}, {"input", "x"}, {"colour", "red"}}, "unknown field 'colour'");
  expect_bad({{"team", "nope"}, {"input", "x"}}, "no team 'nope'");
  auto unknown_op = call(r.rt, "fly", json::object());
  ASSERT_FALSE(unknown_op);
  EXPECT_EQ(unknown_op.error().message, "unknown op 'fly'");
}

TEST(runtime, tasks_survive_a_restart_with_sqlite) {
  auto dir = std::filesystem::temp_directory_path() / ("troupe-rt-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto url = "sqlite:" + (dir / "t.db").string();
  auto cfg = base_config(json::array({{{"text", "ok {{input}}"}}}), json::array({
      {{"id", "one"}, {"agent", "a1"}, {"prompt", "1 {{input}}"}},
      {{"id", "two"}, {"agent", "a1"}, {"prompt", "2 {{step.one}}"}},
  }), 1, 1, 5);
  cfg["store"] = url;
  std::vector<std::string> ids;
  std::string done_before;
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    done_before = r.submit({{"team", "t"}, {"input", "first"}});
    ASSERT_EQ(r.log.wait_terminal(done_before)["state"], "succeeded");
    ASSERT_TRUE(call(r.rt, "pause", {{"team", "t"}}));
    for (int i = 0; i < 5; ++i) ids.push_back(r.submit({{"team", "t"}, {"input", std::to_string(i)}}));
    r.rt.stop(1000);
  }
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    ASSERT_TRUE(call(r.rt, "resume", {{"team", "t"}}));  // the pause outlived the restart
    for (auto& id : ids) EXPECT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
    auto old = r.task(done_before);  // evicted from no team yet, or loaded from the store
    EXPECT_EQ(old["state"], "succeeded");
    EXPECT_EQ(old["result"], "ok first");  // the reply template renders the task input
  }
  std::filesystem::remove_all(dir);
}

/// A temporary directory with a SQLite store, removed at the end of the test.
struct sqlite_dir {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("troupe-ent-" + std::to_string(::getpid()) + "-" +
                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  sqlite_dir() { std::filesystem::create_directories(dir); }
  ~sqlite_dir() { std::filesystem::remove_all(dir); }
  std::string url() const { return "sqlite:" + (dir / "t.db").string(); }
};

/// The value of a sample without labels in the runtime's /metrics text (-1 when absent).
double metric(host::runtime& rt, const std::string& name) {
  std::istringstream in(rt.metrics_text());
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

TEST(runtime, commit_interval_ms_holds_the_writes_that_follow_a_commit_for_one_group_commit) {
  sqlite_dir tmp;
  auto cfg = base_config(json::array({{{"text", "ok {{input}}"}}}), one_step());
  cfg["store"] = tmp.url();
  cfg["runtime"]["commit_interval_ms"] = 400;
  running r{cfg, host::runtime_options{true, {}, 20}};
  ASSERT_TRUE(call(r.rt, "pause", {{"team", "t"}}));  // the tasks stay queued: only submits write
  r.submit({{"team", "t"}, {"input", "first"}});     // answered once its commit ended
  const double before = metric(r.rt, "troupe_store_commits_total");
  ASSERT_GE(before, 1);
  // Five submits at once, right after that commit: they wait out its window together.
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::future<base::result<nlohmann::json>>> replies;
  for (int i = 0; i < 5; ++i) {
    auto p = std::make_shared<std::promise<base::result<nlohmann::json>>>();
    replies.push_back(p->get_future());
    r.rt.call(protocols::principal{}, "submit", {{"team", "t"}, {"input", std::to_string(i)}},
              [p](base::result<nlohmann::json> res) { p->set_value(std::move(res)); });
  }
  for (auto& f : replies) {
    ASSERT_EQ(f.wait_for(std::chrono::seconds(20)), std::future_status::ready);
    auto res = f.get();
    EXPECT_TRUE(res) << res.error().message;
  }
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(metric(r.rt, "troupe_store_commits_total") - before, 1) << "the five submits joined one commit";
  EXPECT_GE(waited, std::chrono::milliseconds(300)) << "they waited for the 400 ms window";
}

json team_status(running& r) {
  auto teams = call(r.rt, "teams", json::object());
  EXPECT_TRUE(teams);
  if (teams)
    for (const auto& t : (*teams)["teams"])
      if (t["name"] == "t") return t;
  return json{};
}

/// running / waiting_decision / queued as the team reports them.
std::string counts(const json& st) {
  return std::to_string(st.value("running", -1)) + "/" + std::to_string(st.value("waiting_decision", -1)) + "/" +
         std::to_string(st.value("queued", -1));
}

/// Polls the team's status until its counts are `want` (20 s at most): a task's end
/// reaches clients before its team. Returns the counts last seen.
std::string wait_counts(running& r, const std::string& want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto got = counts(team_status(r));
  while (got != want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    got = counts(team_status(r));
  }
  return got;
}

// The team keeps these counts as states change instead of scanning every task it
// holds per status (debug builds also check them against a scan).
TEST(runtime, team_status_counts_running_and_waiting_tasks_through_each_change) {
  json wf = json::array({
      {{"id", "draft"}, {"agent", "a1"}, {"prompt", "{{input}}"}},
      {{"id", "signoff"}, {"decision", {{"by", "human"}, {"options", {"ship", "hold"}}, {"default", "hold"}}}},
  });
  // The first call hangs for a minute; every later call answers at once. The agent
  // runs two calls at a time, so the others go past the hanging one.
  json replies = json::array({{{"times", 1}, {"latency_ms", 60000}, {"text", "slow"}}, {{"text", "fast"}}});
  running r{base_config(replies, wf, 1, 2)};
  EXPECT_EQ(counts(team_status(r)), "0/0/0");
  auto a = r.submit({{"team", "t"}, {"input", "a"}});
  r.log.wait_event("task.update", [&](const json& d) { return d["task"] == a && d["what"] == "step_started"; });
  EXPECT_EQ(wait_counts(r, "1/0/0"), "1/0/0");
  auto b = r.submit({{"team", "t"}, {"input", "b"}});
  auto c = r.submit({{"team", "t"}, {"input", "c"}});
  auto pb = r.log.wait_event("decision.pending", [&](const json& d) { return d["task"] == b; });
  r.log.wait_event("decision.pending", [&](const json& d) { return d["task"] == c; });
  EXPECT_EQ(wait_counts(r, "1/2/0"), "1/2/0");
  ASSERT_TRUE(call(r.rt, "decide", {{"decision_id", pb["id"]}, {"option", "ship"}}));
  EXPECT_EQ(r.log.wait_terminal(b)["state"], "succeeded");
  EXPECT_EQ(wait_counts(r, "1/1/0"), "1/1/0");
  ASSERT_TRUE(call(r.rt, "cancel", {{"id", c}}));
  EXPECT_EQ(r.log.wait_terminal(c)["state"], "cancelled");
  EXPECT_EQ(wait_counts(r, "1/0/0"), "1/0/0");
  ASSERT_TRUE(call(r.rt, "cancel", {{"id", a}}));
  EXPECT_EQ(r.log.wait_terminal(a)["state"], "cancelled");
  EXPECT_EQ(wait_counts(r, "0/0/0"), "0/0/0");
}

json agent_status(const json& team, const std::string& agent) {
  for (const auto& a : team["agents"])
    if (a["name"] == agent) return a;
  return json{};
}

TEST(runtime, paused_team_and_agent_stay_paused_across_a_restart) {
  sqlite_dir tmp;
  auto cfg = base_config(json::array({{{"text", "ok {{input}}"}}}),
                         json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}}"}}}), 2);
  cfg["store"] = tmp.url();
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    ASSERT_TRUE(call(r.rt, "pause", {{"team", "t"}, {"agent", "a1"}}));
    ASSERT_TRUE(call(r.rt, "pause", {{"team", "t"}}));
    r.rt.stop(1000);
  }
  running r{cfg, host::runtime_options{true, {}, 20}};
  r.log.wait_event("agent.status", [](const json& d) { return d["agent"] == "a1" && d["state"] == "paused"; });
  auto t = team_status(r);
  EXPECT_EQ(t["state"], "paused");
  EXPECT_EQ(agent_status(t, "a1")["state"], "paused");
  // Accepted, but nothing runs it: dispatch happens while the submit is handled.
  auto any = r.submit({{"team", "t"}, {"input", "x"}});
  auto only_a1 = r.submit({{"agent", "a1"}, {"input", "y"}});
  EXPECT_EQ(r.task(any)["state"], "queued");
  EXPECT_EQ(r.task(only_a1)["state"], "queued");
  ASSERT_TRUE(call(r.rt, "resume", {{"team", "t"}}));
  ASSERT_EQ(r.log.wait_terminal(any)["state"], "succeeded");
  EXPECT_EQ(r.task(any)["steps"][0]["agent"], "a2");  // a1 is still paused on its own
  EXPECT_EQ(r.task(only_a1)["state"], "queued");
  ASSERT_TRUE(call(r.rt, "resume", {{"team", "t"}, {"agent", "a1"}}));
  EXPECT_EQ(r.log.wait_terminal(only_a1)["state"], "succeeded");
}

TEST(runtime, budget_spent_survives_a_restart) {
  sqlite_dir tmp;
  auto cfg = base_config(json::array({{{"text", "same answer every time"}}}), one_step());
  cfg["store"] = tmp.url();
  cfg["teams"][0]["budget_usd"] = 1000.0;
  double spent = 0;
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    for (int i = 0; i < 2; ++i) {
      auto id = r.submit({{"team", "t"}, {"input", "same"}});
      ASSERT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
    }
    spent = team_status(r)["spent_usd"].get<double>();
    ASSERT_GT(spent, 0.0);
    r.rt.stop(1000);
  }
  // Two equal calls spent `spent`; the new budget leaves room for one more call, not two.
  cfg["teams"][0]["budget_usd"] = spent * 1.25;
  running r{cfg, host::runtime_options{true, {}, 20}};
  auto t = team_status(r);
  EXPECT_DOUBLE_EQ(t["spent_usd"].get<double>(), spent);
  EXPECT_DOUBLE_EQ(agent_status(t, "a1")["spent_usd"].get<double>(), spent);
  auto third = r.submit({{"team", "t"}, {"input", "same"}});
  EXPECT_EQ(r.log.wait_terminal(third)["state"], "succeeded");
  auto fourth = r.submit({{"team", "t"}, {"input", "same"}});
  auto done = r.log.wait_terminal(fourth);
  EXPECT_EQ(done["state"], "failed");
  EXPECT_EQ(done["error"]["code"], "budget_exceeded") << done.dump();
}

TEST(runtime, the_last_steps_output_commits_with_the_terminal_snapshot) {
  sqlite_dir tmp;
  auto cfg = base_config(json::array({{{"text", "ok {{input}}"}}}), json::array({
      {{"id", "one"}, {"agent", "a1"}, {"prompt", "1 {{input}}"}},
      {{"id", "two"}, {"agent", "a1"}, {"prompt", "2 {{step.one}}"}},
  }));
  cfg["store"] = tmp.url();
  std::string id;
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    id = r.submit({{"team", "t"}, {"input", "x"}});
    ASSERT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
    r.rt.stop(1000);
  }
  auto store = persistence::open_store(tmp.url());
  ASSERT_TRUE(store) << store.error().message;
  auto row = (*store)->load_task(id);
  ASSERT_TRUE(row && *row);
  // After the submit's insert (seq 0), two writes: step one's output (before step two
  // may start), and step two's output with its call's cost in the terminal snapshot,
  // rather than a journal patch for it followed by the snapshot (seq 3).
  EXPECT_EQ((*row)->seq, 2);
  EXPECT_EQ((*row)->state, "succeeded");
  auto doc = json::parse((*row)->snapshot);
  EXPECT_EQ(doc["steps"][1]["output"], "ok x");
  EXPECT_EQ(doc["steps"][1]["state"], "succeeded");
  EXPECT_EQ(doc["cost"]["calls"], 2);
}

TEST(runtime, failed_team_stays_failed_across_a_restart_until_an_operator_restart) {
  sqlite_dir tmp;
  auto cfg = base_config(json::array({{{"text", "ok {{input}}"}}}), one_step());
  cfg["store"] = tmp.url();
  cfg["runtime"]["supervision"] = {{"max_restarts", 0}, {"within_ms", 60000}};
  {
    running r{cfg, host::runtime_options{true, {}, 20}};
    ASSERT_TRUE(r.rt.inject_fault_for_tests("t"));
    // Past the root's intensity the team comes back failed (and writes so before it says so).
    r.log.wait_event("agent.status", [](const json& d) { return d["agent"] == "a1" && d["state"] == "failed"; });
    r.rt.stop(1000);
  }
  running r{cfg, host::runtime_options{true, {}, 20}};
  r.log.wait_event("agent.status", [](const json& d) { return d["agent"] == "a1" && d["state"] == "failed"; });
  auto t = team_status(r);
  EXPECT_EQ(t["state"], "failed");
  EXPECT_EQ(agent_status(t, "a1")["state"], "failed");
  auto id = r.submit({{"team", "t"}, {"input", "x"}});
  EXPECT_EQ(r.task(id)["state"], "queued");
  ASSERT_TRUE(call(r.rt, "restart", {{"team", "t"}}));
  EXPECT_EQ(r.log.wait_terminal(id)["state"], "succeeded");
  r.rt.stop(1000);
  // The operator's restart was committed too: the next start runs normally.
  running again{cfg, host::runtime_options{true, {}, 20}};
  EXPECT_EQ(team_status(again)["state"], "running");
  auto next = again.submit({{"team", "t"}, {"input", "y"}});
  EXPECT_EQ(again.log.wait_terminal(next)["state"], "succeeded");
}

}  // namespace
}  // namespace troupe::test
