// The runtime with network providers: agents call a fake OpenAI/Anthropic server
// over real HTTP on loopback.
#include <chrono>
#include <cstdlib>
#include <thread>

#include "runtime_fixture.hpp"
#include "troupe/fake_llm/fake_llm.hpp"

namespace troupe::test {
namespace {

using nlohmann::json;

constexpr const char* secret = "sk-test-SECRET-0123456789";

struct llm_runtime {
  fake_llm::fake_llm_server fake;
  std::unique_ptr<host::runtime> rt;
  std::unique_ptr<event_log> log;

  explicit llm_runtime(const std::string& kind, bool stream = false, int max_attempts = 3) {
    auto port = fake.start();
    EXPECT_TRUE(port);
    fake.set_expected_key(secret);
    ::setenv("TROUPE_TEST_LLM_KEY", secret, 1);
    json cfg;
    auto base = "http://127.0.0.1:" + std::to_string(*port) + (kind == "openai" ? "/v1" : "");
    cfg["providers"]["net"] = {{"kind", kind}, {"base_url", base}, {"api_key_env", "TROUPE_TEST_LLM_KEY"},
                               {"timeout_ms", 500}, {"max_concurrency", 32},
                               {"retry", {{"max_attempts", 8}, {"base_ms", 1}, {"max_ms", 20}}},
                               {"breaker", {{"failures", 1000}, {"open_ms", 100}}}};
    cfg["models"]["m"] = {{"provider", "net"}, {"name", "fake-model"}, {"usd_per_mtok_in", 1.0},
                          {"usd_per_mtok_out", 2.0}, {"stream", stream}};
    cfg["agents"] = json::array({{{"name", "a1"}, {"model", "m"}, {"max_concurrent", 16}, {"system", "be brief"}}});
    cfg["teams"] = json::array({{{"name", "t"}, {"agents", {"a1"}}, {"max_attempts", max_attempts},
                                 {"backoff_ms", 1}, {"backoff_max_ms", 5},
                                 {"workflow", json::array({{{"id", "ask"}, {"agent", "a1"}, {"prompt", "Q: {{input}}"}}})}}});
    rt = std::make_unique<host::runtime>(load(cfg.dump()), host::runtime_options{false, {}, 20});
    log = std::make_unique<event_log>(*rt);
    auto started = rt->start();
    EXPECT_TRUE(started) << (started ? "" : started.error().message);
  }
  ~llm_runtime() {
    rt->stop(0);
    fake.stop();
  }
  /// Waits (10 s at most) until a request has reached the fake provider.
  bool wait_for_request() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (fake.counters().total < 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling a condition, with a deadline
    return fake.counters().total >= 1;
  }
  std::string submit(const std::string& input) {
    auto r = call(*rt, "submit", {{"team", "t"}, {"input", input}});
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? (*r)["id"].get<std::string>() : std::string();
  }
};

class runtime_llm : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(runtime_llm, tasks_run_over_the_network_and_survive_500s_and_429s) {
  auto [kind, stream] = GetParam();
  llm_runtime r{kind, stream};
  r.fake.set_error_rate_500(0.2);
  r.fake.set_error_rate_429(0.1, 5);
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.push_back(r.submit("question " + std::to_string(i)));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto done = r.log->wait_terminal(ids[i]);
    ASSERT_EQ(done["state"], "succeeded") << done.dump();
    EXPECT_NE(done["result"].get<std::string>().find("question " + std::to_string(i)), std::string::npos) << done.dump();
    EXPECT_GT(done["cost"]["tokens_out"].get<int>(), 0);
  }
  // The key never reaches an event.
  EXPECT_EQ(r.log->count("task.update", [](const json& d) { return d.dump().find(secret) != std::string::npos; }), 0u);
  EXPECT_EQ(r.log->count("llm.call", [](const json& d) { return d.dump().find(secret) != std::string::npos; }), 0u);
  EXPECT_GE(r.log->count("llm.call", [](const json&) { return true; }), 100u);
}

INSTANTIATE_TEST_SUITE_P(kinds, runtime_llm,
                         ::testing::Combine(::testing::Values("openai", "anthropic"), ::testing::Bool()));

TEST(runtime_llm_errors, unauthorized_fails_at_once_with_the_providers_message) {
  llm_runtime r{"anthropic"};
  r.fake.set_expected_key("another-key");
  auto id = r.submit("x");
  auto done = r.log->wait_terminal(id);
  EXPECT_EQ(done["state"], "failed");
  auto msg = done["error"]["message"].get<std::string>();
  EXPECT_NE(msg.find("401"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(secret), std::string::npos);
  EXPECT_EQ(r.fake.counters().total, 1);
}

TEST(runtime_llm_errors, a_hanging_provider_times_out_and_the_step_is_retried) {
  llm_runtime r{"openai"};
  r.fake.set_hang(true);
  auto id = r.submit("slow");
  auto timed_out = r.log->wait_event("llm.call", [&](const json& d) { return d["task"] == id && d["outcome"] == "timeout"; });
  EXPECT_FALSE(timed_out.is_null());
  r.fake.set_hang(false);
  auto done = r.log->wait_terminal(id);
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  auto t = call(*r.rt, "task", {{"id", id}});
  ASSERT_TRUE(t);
  EXPECT_GE((*t)["steps"][0]["attempts"].get<int>(), 2);
}

TEST(runtime_llm_errors, cancel_aborts_the_in_flight_http_call) {
  llm_runtime r{"openai"};
  r.fake.set_hang(true);
  auto id = r.submit("x");
  // The request is at the provider (it hangs there): only a cancel can end it.
  ASSERT_TRUE(r.wait_for_request());
  auto cancelled = call(*r.rt, "cancel", {{"id", id}});
  ASSERT_TRUE(cancelled) << cancelled.error().message;
  EXPECT_EQ(r.log->wait_terminal(id)["state"], "cancelled");
  // The abandoned call still costs its prompt (estimated: the provider may have billed it),
  // and the task's cost says so.
  auto ev = r.log->wait_event("llm.call", [&](const json& d) { return d["task"] == id; });
  EXPECT_EQ(ev["outcome"], "cancelled") << ev.dump();
  EXPECT_GT(ev["tokens_in"].get<std::int64_t>(), 0) << ev.dump();
  EXPECT_EQ(ev["tokens_out"], 0) << ev.dump();
  EXPECT_GT(ev["cost_usd"].get<double>(), 0.0) << ev.dump();
  auto t = call(*r.rt, "task", {{"id", id}});
  ASSERT_TRUE(t);
  EXPECT_GT((*t)["cost"]["usd"].get<double>(), 0.0) << t->dump();
}

TEST(runtime_llm_errors, an_llm_call_actor_that_throws_fails_its_call_and_the_step_is_retried) {
  llm_runtime r{"openai"};
  r.fake.set_hang(true);
  auto id = r.submit("x");
  // The request is at the provider: the call actor exists.
  ASSERT_TRUE(r.wait_for_request());
  ASSERT_TRUE(r.rt->inject_fault_for_tests("t", "call:a1"));
  auto retry = r.log->wait_event("task.update", [&](const json& d) {
    return d["task"] == id && d["what"] == "step_retry" &&
           d.value("error", json::object()).value("message", "").find("LLM call actor failed") != std::string::npos;
  });
  ASSERT_FALSE(retry.is_null());
  EXPECT_NE(retry["error"]["message"].get<std::string>().find("injected fault"), std::string::npos) << retry.dump();
  r.fake.set_hang(false);
  auto done = r.log->wait_terminal(id);
  ASSERT_EQ(done["state"], "succeeded") << done.dump();
  // Only the call actor ended: its agent was not restarted.
  EXPECT_EQ(r.log->count("agent.status", [](const json& d) { return d["state"] == "restarting"; }), 0u);
  auto t = call(*r.rt, "task", {{"id", id}});
  ASSERT_TRUE(t);
  EXPECT_EQ((*t)["steps"][0]["attempts"].get<int>(), 2);
}

}  // namespace
}  // namespace troupe::test
