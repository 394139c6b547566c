// End to end with the real binary: the shipped newsroom example over HTTP,
// graceful SIGTERM, and `troupe check`.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon_process.hpp"
#include "integration_env.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int e2e_tasks = 500;  // the newsroom is light enough for 500 even under ASan
#else
constexpr int e2e_tasks = 500;
#endif

std::string example(const std::string& name) {
  return std::string(TROUPE_SOURCE_DIR) + "/examples/" + name;
}

}  // namespace

TEST(e2e, newsroom_runs_500_tasks_over_http_and_drains_on_sigterm) {
  scratch_dir dir{"troupe-e2e"};
  daemon_process d;
  std::string why;
  ASSERT_TRUE(d.start(troupe_exe(),
                      {"run", example("newsroom.json"), "--listen", "127.0.0.1:0", "--store",
                       "sqlite:" + dir.file("troupe.db")},
                      dir.file("daemon.log"), why))
      << why;
  auto port = d.wait_until_ready(120s);
  ASSERT_TRUE(port) << d.output();

  // Submit over a few keep-alive connections.
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> ids;  // id, input
  std::vector<std::string> errors;
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&] {
      api_client api{*port};
      for (int i = next++; i < e2e_tasks; i = next++) {
        const std::string input = "topic " + std::to_string(i);
        auto r = api.submit("newsroom", input);
        std::lock_guard lock{mu};
        if (r.outcome == submit_outcome::acknowledged)
          ids.emplace_back(r.id, input);
        else
          errors.push_back(std::to_string(r.status) + " " + r.body.dump());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(errors.empty()) << errors.size() << " submits failed, first: " << errors.front();
  ASSERT_EQ(ids.size(), static_cast<std::size_t>(e2e_tasks));

  api_client api{*port};
  const auto deadline = std::chrono::steady_clock::now() + 150s;
  for (const auto& [id, input] : ids) {
    json doc;
    for (;;) {
      auto t = api.task(id);
      ASSERT_TRUE(t) << "GET /v1/tasks/" << id << " failed";
      doc = std::move(*t);
      const auto state = doc.value("state", "");
      if (state == "succeeded" || state == "failed" || state == "cancelled") break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << id << " still " << state;
      std::this_thread::sleep_for(10ms);  // polling interval of a condition with a deadline
    }
    ASSERT_EQ(doc.value("state", ""), "succeeded") << doc.dump();
    EXPECT_EQ(doc.value("result", ""),
              "Published: Revised article on " + input + ", now citing its sources.");
    std::map<std::string, std::string> out;
    for (const auto& s : doc.at("steps")) out[s.value("id", "")] = s.value("output", "");
    EXPECT_EQ(out["research"],
              "Notes on " + input + ": three facts, two sources, one open question.");
    EXPECT_EQ(out["write"], "Revised article on " + input + ", now citing its sources.");
    EXPECT_EQ(out["review"].rfind("approve", 0), 0u) << out["review"];
    EXPECT_EQ(out["publish"], doc.value("result", ""));
  }

  auto health = api.call(protocols::client::method::get, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto stop_at = std::chrono::steady_clock::now();
  d.signal(SIGTERM);
  auto code = d.wait_exit(5s);
  ASSERT_TRUE(code) << "no exit within 5 s of SIGTERM";
  EXPECT_EQ(*code, 0) << d.output();
  std::printf("[e2e] %d tasks; SIGTERM to exit %.3f s\n", e2e_tasks,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_at).count());
  if (HasFailure()) dir.keep();
}

TEST(e2e, check_accepts_the_shipped_examples) {
  for (const char* name : {"newsroom.json", "launch.json"}) {
    auto r = run_command(troupe_exe(), {"check", example(name)});
    EXPECT_EQ(r.exit_code, 0) << name << ":\n" << r.output;
  }
}

TEST(e2e, check_rejects_a_broken_config_naming_the_path) {
  scratch_dir dir{"troupe-check"};
  const auto path = dir.file("broken.json");
  ASSERT_TRUE(
      write_text(path, R"({ "providers": { "p": { "kind": "scripted", "latency_ms": "slow" } },
    "teams": [ { "name": 5 } ] })"));
  auto r = run_command(troupe_exe(), {"check", path});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("teams[0].name"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("providers.p.latency_ms"), std::string::npos) << r.output;
}

TEST(e2e, run_refuses_a_broken_config_with_exit_1) {
  scratch_dir dir{"troupe-check"};
  const auto path = dir.file("broken.json");
  ASSERT_TRUE(write_text(path, R"({ "teams": [ { "name": 5 } ] })"));
  auto r = run_command(troupe_exe(), {"run", path, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("teams[0].name"), std::string::npos) << r.output;
}

}  // namespace troupe::test
