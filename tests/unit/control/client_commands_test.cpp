// The CLI client subcommands (troupe submit/decide/cancel/watch) against an
// in-process control server and a fake port.
#include "troupe/host/client_commands.hpp"

#include <future>
#include <sstream>

#include <gtest/gtest.h>

#include "fake_port.hpp"
#include "troupe/protocols/control/control_server.hpp"

namespace troupe::host {
namespace {

using nlohmann::json;
using test::eventually;
using test::fake_port;
using test::make_event;

// A stream buffer the command writes from one thread while the test reads.
class locked_buf : public std::streambuf {
 public:
  std::string text() {
    std::lock_guard lock(mu_);
    return data_;
  }

 protected:
  int_type overflow(int_type c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    std::lock_guard lock(mu_);
    data_.push_back(static_cast<char>(c));
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    data_.append(s, static_cast<std::size_t>(n));
    return n;
  }

 private:
  std::mutex mu_;
  std::string data_;
};

class client_commands : public ::testing::Test {
 protected:
  void SetUp() override {
    protocols::control::server_options o;
    o.listen = "127.0.0.1:0";
    server_ = std::make_unique<protocols::control::control_server>(o, port_);
    ASSERT_TRUE(server_->start());
    url_ = "http://" + server_->endpoint();
  }
  int run(const std::string& name, std::vector<std::string> args) {
    client_io io{out_stream_, err_stream_, [this](const std::string& k) -> std::optional<std::string> {
                   auto it = env_.find(k);
                   if (it == env_.end()) return std::nullopt;
                   return it->second;
                 }};
    io.stop = &stop_;
    return run_client_command(name, args, io);
  }
  std::string out() { return out_.text(); }
  std::string err() { return err_.text(); }

  fake_port port_;
  std::unique_ptr<protocols::control::control_server> server_;
  std::string url_;
  std::map<std::string, std::string> env_;
  locked_buf out_, err_;
  std::ostream out_stream_{&out_}, err_stream_{&err_};
  std::atomic<bool> stop_{false};
};

TEST(client_priority, names_and_digits) {
  EXPECT_EQ(parse_priority("low"), 2);
  EXPECT_EQ(parse_priority("normal"), 5);
  EXPECT_EQ(parse_priority("high"), 7);
  EXPECT_EQ(parse_priority("urgent"), 9);
  EXPECT_EQ(parse_priority("0"), 0);
  EXPECT_EQ(parse_priority("9"), 9);
  EXPECT_FALSE(parse_priority("10"));
  EXPECT_FALSE(parse_priority("soon"));
}

TEST_F(client_commands, usage_errors_exit_2_with_a_reason) {
  EXPECT_EQ(run("submit", {"hello"}), 2);
  EXPECT_NE(err().find("exactly one of --team or --agent"), std::string::npos);
  EXPECT_EQ(run("submit", {"--team", "t", "--agent", "a", "x"}), 2);
  EXPECT_EQ(run("submit", {"--team", "t"}), 2);
  EXPECT_NE(err().find("missing INPUT"), std::string::npos);
  EXPECT_EQ(run("submit", {"--team", "t", "--priority", "soon", "x"}), 2);
  EXPECT_NE(err().find("--priority must be"), std::string::npos);
  EXPECT_EQ(run("submit", {"--team"}), 2);
  EXPECT_EQ(run("submit", {"--bogus", "x"}), 2);
  EXPECT_NE(err().find("unknown option --bogus"), std::string::npos);
  EXPECT_EQ(run("decide", {"d1"}), 2);
  EXPECT_EQ(run("cancel", {}), 2);
  EXPECT_EQ(run("watch", {"extra"}), 2);
  EXPECT_EQ(run("fly", {}), 2);
  EXPECT_TRUE(port_.calls().empty());
}

TEST_F(client_commands, submit_prints_the_task_id) {
  ASSERT_EQ(run("submit", {"--url", url_, "--team", "newsroom", "--priority", "high", "--idempotency-key", "k1",
                           "--deadline-ms", "5000", "hello", "world"}),
            0)
      << err();
  EXPECT_EQ(out(), "task_1\n");
  auto call = port_.wait_call("submit");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->args, (json{{"team", "newsroom"}, {"input", "hello world"}, {"priority", 7},
                              {"idempotency_key", "k1"}, {"deadline_ms", 5000}}));
}

TEST_F(client_commands, url_and_token_come_from_the_environment) {
  env_["TROUPE_URL"] = url_;
  env_["TROUPE_TOKEN"] = "ignored-without-tokens";
  ASSERT_EQ(run("submit", {"--agent", "researcher", "--json", "x"}), 0) << err();
  EXPECT_EQ(json::parse(out())["id"], "task_1");
}

TEST_F(client_commands, submit_wait_follows_steps_to_the_result) {
  std::atomic<int> stage{0};
  port_.set_handler([&](const protocols::principal&, const std::string& op, const json&, protocols::reply_fn& reply) {
    if (op == "submit") {
      reply(json{{"id", "t42"}, {"state", "queued"}});
      return true;
    }
    if (op != "task") return false;
    json research = {{"id", "research"}, {"kind", "agent"}, {"state", stage >= 1 ? "succeeded" : "running"},
                     {"tokens_in", 100}, {"tokens_out", 53}, {"started", 1000}, {"finished", 1120}};
    reply(json{{"id", "t42"},
               {"state", stage >= 2 ? "succeeded" : "running"},
               {"steps", json::array({research})},
               {"result", "final text"}});
    return true;
  });
  auto done = std::async(std::launch::async, [&] {
    return run("submit", {"--url", url_, "--team", "newsroom", "--wait", "go"});
  });
  ASSERT_TRUE(port_.wait_call("task"));  // the subscription snapshot
  ASSERT_TRUE(eventually([&] { return out().find("research    running") != std::string::npos; }));
  port_.emit(make_event("decision.pending", "decisions",
                        {{"id", "d1"}, {"task", "t42"}, {"step", "publish"}, {"options", {"publish", "reject"}}, {"by", "human"}},
                        "t42"));
  stage = 1;
  port_.emit(make_event("task.update", "tasks",
                        {{"task", "t42"}, {"state", "running"}, {"step", "research"}, {"step_state", "succeeded"}}, "t42"));
  ASSERT_TRUE(eventually([&] { return out().find("done") != std::string::npos; }));
  port_.emit(make_event("task.update", "tasks",
                        {{"task", "t42"}, {"state", "running"}, {"step", "write"}, {"step_state", "succeeded"},
                         {"duration_ms", 2500}, {"tokens", 40}},
                        "t42"));
  ASSERT_TRUE(eventually([&] { return out().find("  write") != std::string::npos; }));
  stage = 2;
  port_.emit(make_event("task.update", "tasks", {{"task", "t42"}, {"state", "succeeded"}}, "t42"));
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(done.get(), 0) << err();
  const auto text = out();
  EXPECT_EQ(text.rfind("t42\n", 0), 0u) << text;
  EXPECT_NE(text.find("  research    running"), std::string::npos) << text;
  EXPECT_NE(text.find("  research    done    (0.12 s, 153 tokens)"), std::string::npos) << text;
  EXPECT_NE(text.find("  write       done    (2.50 s, 40 tokens)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("decision d1 (publish|reject) by human"), std::string::npos) << text;
  EXPECT_NE(text.find("final text\n"), std::string::npos) << text;
}

TEST_F(client_commands, submit_wait_reports_a_failed_task_with_exit_1) {
  port_.set_handler([&](const protocols::principal&, const std::string& op, const json&, protocols::reply_fn& reply) {
    if (op == "submit") {
      reply(json{{"id", "t7"}});
      return true;
    }
    if (op != "task") return false;
    reply(json{{"id", "t7"}, {"state", "failed"}, {"error", {{"code", "budget_exceeded"}, {"message", "team spent"}}}});
    return true;
  });
  EXPECT_EQ(run("submit", {"--url", url_, "--team", "t", "--wait", "x"}), 1);
  EXPECT_NE(err().find("task t7 failed: budget_exceeded: team spent"), std::string::npos) << err();
}

TEST_F(client_commands, decide_and_cancel) {
  ASSERT_EQ(run("decide", {"--url", url_, "d1", "publish", "--comment", "looks good"}), 0) << err();
  EXPECT_EQ(out(), "decision d1: publish\n");
  auto call = port_.wait_call("decide");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->args, (json{{"decision_id", "d1"}, {"option", "publish"}, {"comment", "looks good"}}));

  ASSERT_EQ(run("cancel", {"--url", url_, "t9"}), 0) << err();
  EXPECT_EQ(port_.wait_call("cancel")->args, (json{{"id", "t9"}}));

  port_.set_handler([](const protocols::principal&, const std::string& op, const json&, protocols::reply_fn& reply) {
    if (op != "decide") return false;
    reply(base::fail(base::errc::not_found, "no pending decision 'd2'"));
    return true;
  });
  EXPECT_EQ(run("decide", {"--url", url_, "d2", "publish"}), 1);
  EXPECT_NE(err().find("not_found: no pending decision 'd2'"), std::string::npos) << err();
}

TEST_F(client_commands, unreachable_daemon_fails_with_exit_1) {
  const auto endpoint = server_->endpoint();
  server_->stop();
  EXPECT_EQ(run("cancel", {"--url", "http://" + endpoint, "t1"}), 1);
  EXPECT_NE(err().find("unavailable"), std::string::npos) << err();
}

TEST_F(client_commands, watch_json_prints_the_raw_stream_until_stopped) {
  auto done = std::async(std::launch::async, [&] { return run("watch", {"--url", url_, "--json"}); });
  ASSERT_TRUE(eventually([&] { return out().find("\"snapshot\"") != std::string::npos; }));
  port_.emit(make_event("agent.status", "agents", {{"agent", "researcher"}, {"state", "busy"}}));
  ASSERT_TRUE(eventually([&] { return out().find("agent.status") != std::string::npos; }));
  stop_ = true;
  ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(done.get(), 0);
  std::istringstream lines(out());
  std::string line;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(json::accept(line)) << line;
    EXPECT_TRUE(json::parse(line).contains("event")) << "one event per line, batches flattened: " << line;
  }
}

TEST(watch_model, builds_the_view_from_snapshot_and_events) {
  watch_model m;
  m.apply(json{{"event", "snapshot"},
               {"seq", 1},
               {"data",
                {{"agents", {{{"agent", "researcher"}, {"team", "newsroom"}, {"state", "idle"}}}},
                 {"tasks", {{{"id", "t1"}, {"team", "newsroom"}, {"state", "queued"}, {"priority", 7}},
                            {{"id", "t4"}, {"team", "newsroom"}, {"state", "queued"}, {"priority", 2}},
                            {{"id", "t2"}, {"team", "newsroom"}, {"state", "running"},
                             {"steps", {{{"id", "research"}, {"state", "running"}}}}}}},
                 {"decisions", {{{"id", "d1"}, {"task", "t2"}, {"step", "publish"}, {"options", {"publish", "reject"}}, {"by", "human"}, {"state", "pending"}}}}}}});
  // A batched frame (troupe.v1 "batch") is applied event by event.
  m.apply(json{{"events",
                {{{"event", "agent.status"}, {"seq", 2}, {"data", {{"agent", "researcher"}, {"state", "busy"}, {"task", "t2"}, {"restarts", 1}}}},
                 {{"event", "llm.call"}, {"seq", 3}, {"data", {{"provider", "offline"}, {"model", "m"}, {"cost_usd", 0.25}, {"tokens_in", 10}, {"tokens_out", 5}, {"outcome", "timeout"}}}}}}});
  m.apply(json{{"event", "task.update"}, {"data", {{"task", "t3"}, {"state", "failed"}, {"error", {{"code", "loop_limit"}, {"message", "too many loops"}}}}}});
  m.apply(json{{"event", "decision.resolved"}, {"data", {{"id", "d1"}, {"chosen", "publish"}}}});
  m.apply(json{{"event", "stream.gap"}, {"data", {{"dropped", 3}}}});
  m.apply(json{{"event", "mystery"}});  // ignored
  EXPECT_EQ(m.agents().at("researcher")["state"], "busy");
  EXPECT_EQ(m.tasks().size(), 3u);
  EXPECT_EQ(m.tasks().at("t2")["step"], "research");
  EXPECT_TRUE(m.decisions().empty());
  EXPECT_DOUBLE_EQ(m.cost_usd(), 0.25);
  EXPECT_EQ(m.gaps(), 3u);
  std::string screen;
  for (const auto& l : m.render(120, 0, false)) screen += l + "\n";
  EXPECT_NE(screen.find("researcher"), std::string::npos) << screen;
  EXPECT_NE(screen.find("busy"), std::string::npos);
  EXPECT_NE(screen.find("queue newsroom (2):  p7=1  p2=1"), std::string::npos) << screen;
  EXPECT_NE(screen.find("cost $0.2500"), std::string::npos);
  EXPECT_NE(screen.find("task t3 failed: loop_limit too many loops"), std::string::npos);
  EXPECT_NE(screen.find("missed 3 events"), std::string::npos);
  EXPECT_EQ(screen.find("\x1b["), std::string::npos);  // no colour when asked for none
  EXPECT_LE(m.render(120, 5, true).size(), 5u);
}

}  // namespace
}  // namespace troupe::host
