// The real `troupe` daemon calling a network provider (the fake, in this test
// process, over loopback), for both API kinds with streaming on:
// - the model's settings (system prompt, max_tokens, temperature, stop) reach
//   the wire in each API's shape;
// - streamed tokens reach a WebSocket subscriber as `task.update` events, in
//   order, and add up to the step's output;
// - usage comes from the stream's final chunk into the task's cost;
// - an API key set in the environment reaches the provider but never the
//   daemon's log (at debug level), any event, a task, or any control-plane reply,
//   even when the provider quotes it back in a 401.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <set>
#include <string>

#include "daemon_process.hpp"
#include "integration_env.hpp"
#include "troupe/fake_llm/fake_llm.hpp"
#include "troupe/protocols/client/http_client.hpp"
#include "troupe/protocols/client/ws_client.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace client = protocols::client;

constexpr const char* secret = "sk-daemon-SECRET-9f8e7d6c5b4a";
constexpr const char* key_env = "TROUPE_LLM_DAEMON_TEST_KEY";

class llm_daemon : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto port = fake_.start();
    ASSERT_TRUE(port) << port.error().message;
    fake_.set_expected_key(secret);
    ::setenv(key_env, secret, 1);  // inherited by the daemon
    const std::string kind = GetParam();
    json cfg;
    cfg["store"] = "sqlite:" + dir_.file("troupe.db");
    cfg["control"] = {{"listen", "127.0.0.1:0"}};
    cfg["providers"]["net"] = {{"kind", kind},
                               {"base_url", fake_.endpoint() + (kind == "openai" ? "/v1" : "")},
                               {"api_key_env", key_env},
                               {"timeout_ms", 5000},
                               {"retry", {{"max_attempts", 6}, {"base_ms", 1}, {"max_ms", 10}}},
                               {"breaker", {{"failures", 1000}, {"open_ms", 100}}}};
    cfg["models"]["m"] = {{"provider", "net"}, {"name", "fake-model"}, {"max_tokens", 77}, {"temperature", 0.25},
                          {"stop", {"END!"}}, {"stream", true}, {"usd_per_mtok_in", 1.0}, {"usd_per_mtok_out", 2.0}};
    cfg["agents"] = json::array({{{"name", "a1"}, {"model", "m"}, {"system", "You are terse."}, {"max_concurrent", 4}}});
    cfg["teams"] = json::array({{{"name", "t"}, {"agents", {"a1"}}, {"max_attempts", 1},
                                 {"workflow", json::array({{{"id", "ask"}, {"agent", "a1"}, {"prompt", "Q: {{input}}"}}})}}});
    ASSERT_TRUE(write_text(dir_.file("troupe.json"), cfg.dump(1)));
    std::string why;
    ASSERT_TRUE(d_.start(troupe_exe(), {"run", dir_.file("troupe.json"), "--log-level", "debug"}, "", why)) << why;
    auto p = d_.wait_until_ready(60s);
    ASSERT_TRUE(p) << d_.output();
    port_ = *p;
    ASSERT_TRUE(ws_.connect("ws://127.0.0.1:" + std::to_string(port_)));
    auto sub = ws_.request("subscribe", {{"topics", {"agents", "tasks", "decisions", "llm", "system"}}});
    ASSERT_TRUE(sub) << sub.error().message;
  }
  void TearDown() override {
    if (HasFailure()) dir_.keep();
    ws_.close();
    d_.signal(SIGTERM);
    if (!d_.wait_exit(30s)) d_.kill_hard();
    fake_.stop();
  }

  client::http_reply http(client::method m, const std::string& target, const std::string& body = {}) {
    client::http_connection c(20s);
    auto ok = c.connect("127.0.0.1", port_);
    EXPECT_TRUE(ok);
    auto r = c.request(m, target, body);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return r ? *r : client::http_reply{};
  }

  std::string submit(const std::string& input) {
    auto r = http(client::method::post, "/v1/tasks", json{{"team", "t"}, {"input", input}}.dump());
    EXPECT_EQ(r.status, 202) << r.body;
    auto j = json::parse(r.body, nullptr, false);
    return j.is_object() ? j.value("id", "") : "";
  }

  /// Reads events until task `id` ends; returns its final state and collects its
  /// streamed tokens. Every frame's text is kept for the secret check.
  std::string follow(const std::string& id, std::string* tokens = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    static const std::set<std::string> terminal{"succeeded", "failed", "cancelled"};
    while (std::chrono::steady_clock::now() < deadline) {
      auto text = ws_.read_text(5s);
      if (!text) continue;
      frames_ += *text;
      frames_ += '\n';
      auto f = json::parse(*text, nullptr, false);
      if (!f.is_object() || f.value("event", "") != "task.update") continue;
      const auto& d = f["data"];
      if (d.value("task", "") != id) continue;
      if (tokens && d.contains("token")) *tokens += d["token"].get<std::string>();
      if (terminal.count(d.value("state", ""))) return d.value("state", "");
    }
    ADD_FAILURE() << "task " << id << " did not end within 60 s";
    return "";
  }

  fake_llm::fake_llm_server fake_;
  scratch_dir dir_{"troupe-llm-daemon"};
  daemon_process d_;
  std::uint16_t port_ = 0;
  client::ws_client ws_;
  std::string frames_;  ///< every WebSocket frame received
};

TEST_P(llm_daemon, streams_tokens_as_events_and_never_reveals_the_key) {
  const bool openai = GetParam() == "openai";
  // 1. A streamed call: settings on the wire, tokens as events, usage from the final chunk.
  auto id = submit("hello world");
  std::string tokens;
  ASSERT_EQ(follow(id, &tokens), "succeeded") << d_.output();
  auto sent = json::parse(fake_.counters().last_body, nullptr, false);
  ASSERT_TRUE(sent.is_object()) << fake_.counters().last_body;
  EXPECT_EQ(sent["model"], "fake-model");
  EXPECT_EQ(sent["max_tokens"], 77);
  EXPECT_DOUBLE_EQ(sent["temperature"].get<double>(), 0.25);
  EXPECT_EQ(sent["stream"], true);
  if (openai) {
    EXPECT_EQ(sent["stop"], json::array({"END!"}));
    EXPECT_EQ(sent["stream_options"]["include_usage"], true);
    EXPECT_EQ(sent["messages"][0], (json{{"role", "system"}, {"content", "You are terse."}}));
    EXPECT_EQ(sent["messages"][1], (json{{"role", "user"}, {"content", "Q: hello world"}}));
  } else {
    EXPECT_EQ(sent["stop_sequences"], json::array({"END!"}));
    EXPECT_EQ(sent["system"], "You are terse.");
    EXPECT_EQ(sent["messages"][0], (json{{"role", "user"}, {"content", "Q: hello world"}}));
  }
  auto task = json::parse(http(client::method::get, "/v1/tasks/" + id).body, nullptr, false);
  ASSERT_TRUE(task.is_object());
  EXPECT_EQ(tokens, "echo: Q: hello world") << "tokens forwarded as task.update events";
  EXPECT_NE(task.dump().find("echo: Q: hello world"), std::string::npos) << task.dump();
  // The fake counts words: 3 of system + 3 of prompt in, 4 out. Anthropic's
  // message_start says 1 output token; only the final message_delta says 4.
  EXPECT_EQ(task["cost"]["tokens_in"], 6) << task.dump();
  EXPECT_EQ(task["cost"]["tokens_out"], 4) << task.dump();

  // 2. Transient 500s (retries are logged at debug level with their errors).
  fake_.set_error_rate_500(0.5);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(follow(submit("again " + std::to_string(i))), "succeeded");
  fake_.set_error_rate_500(0);

  // 3. The provider rejects the key and quotes it back: the task fails at once
  //    with the provider's message, redacted.
  fake_.set_expected_key("another-key");
  auto bad = submit("rejected");
  EXPECT_EQ(follow(bad), "failed");
  auto failed = http(client::method::get, "/v1/tasks/" + bad).body;
  EXPECT_NE(failed.find("401"), std::string::npos) << failed;
  EXPECT_NE(failed.find("[redacted]"), std::string::npos) << "the provider quoted the key back: " << failed;

  // The key reached the provider (phase 1 passed its check) and nothing else.
  std::string everything = frames_ + d_.output();
  for (const char* target : {"/v1/tasks", "/v1/agents", "/v1/teams", "/v1/audit", "/metrics", "/readyz"})
    everything += http(client::method::get, target).body;
  everything += http(client::method::get, "/v1/tasks/" + id).body + failed;
  EXPECT_NE(d_.output().find("llm"), std::string::npos) << "debug log of the llm client expected";
  EXPECT_EQ(everything.find(secret), std::string::npos) << "the API key leaked";
  // Not even a recognisable part of it.
  EXPECT_EQ(everything.find("SECRET-9f8e"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(kinds, llm_daemon, ::testing::Values("openai", "anthropic"));

}  // namespace
}  // namespace troupe::test
