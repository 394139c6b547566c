// WebSocket side of the control server (troupe.v1), over real loopback sockets.
#include <atomic>
#include <condition_variable>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "fake_port.hpp"
#include "troupe/protocols/client/ws_client.hpp"
#include "troupe/protocols/control/control_server.hpp"

namespace troupe::protocols::control {
namespace {

using client::ws_client;
using nlohmann::json;
using std::chrono::milliseconds;
using test::eventually;
using test::fake_port;
using test::make_event;

constexpr milliseconds read_timeout{10000};

class ws_server : public ::testing::Test {
 protected:
  void start(server_options opts = {}) {
    opts.listen = "127.0.0.1:0";
    server_ = std::make_unique<control_server>(opts, port_);
    auto ok = server_->start();
    ASSERT_TRUE(ok) << ok.error().message;
    url_ = "ws://" + server_->endpoint() + "/v1/ws";
  }
  std::unique_ptr<ws_client> open(const std::string& token = {}) {
    auto c = std::make_unique<ws_client>();
    auto ok = c->connect(url_, token);
    EXPECT_TRUE(ok) << ok.error().message;
    return c;
  }
  // Subscribes and consumes the subscribe reply and the snapshot.
  static json subscribe(ws_client& c, json args) {
    auto r = c.request("subscribe", std::move(args));
    EXPECT_TRUE(r) << r.error().message;
    auto snap = c.read(read_timeout);
    EXPECT_TRUE(snap);
    EXPECT_EQ((*snap)["event"], "snapshot");
    return *snap;
  }
  static json read_frame(ws_client& c) {
    auto f = c.read(read_timeout);
    EXPECT_TRUE(f) << f.error().message;
    return f ? *f : json();
  }

  fake_port port_;
  std::unique_ptr<control_server> server_;
  std::string url_;
};

TEST_F(ws_server, hello_names_protocol_and_principal) {
  start();
  auto c = open();
  auto r = c->request("hello");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (json{{"protocol", "troupe.v1"}, {"server", "troupe"}, {"principal", "anonymous"}, {"role", "admin"}}));
  EXPECT_EQ(server_->clients(), 1u);
}

TEST_F(ws_server, ops_go_to_the_port_without_id_and_op) {
  start();
  auto c = open();
  ASSERT_TRUE(c->send(json{{"id", 41}, {"op", "task"}, {"task", "t9"}}));
  auto frame = read_frame(*c);
  EXPECT_EQ(frame["id"], 41);
  EXPECT_EQ(frame["ok"], true);
  EXPECT_EQ(frame["result"]["id"], "t9");
  auto call = port_.wait_call("task");
  ASSERT_TRUE(call);
  // "id" is the request id on the wire; the task id travels as "task" and
  // reaches the port as "id" too, as over HTTP.
  EXPECT_EQ(call->args, (json{{"task", "t9"}, {"id", "t9"}}));
}

TEST_F(ws_server, port_errors_come_back_as_error_responses) {
  start();
  port_.set_handler([](const principal&, const std::string& op, const json&, reply_fn& reply) {
    if (op != "cancel") return false;
    reply(base::fail(base::errc::conflict, "task t1 already finished"));
    return true;
  });
  auto c = open();
  ASSERT_TRUE(c->send(json{{"id", "c1"}, {"op", "cancel"}, {"task", "t1"}}));
  auto frame = read_frame(*c);
  EXPECT_EQ(frame, (json{{"id", "c1"}, {"ok", false},
                         {"error", {{"code", "conflict"}, {"message", "task t1 already finished"}}}}));
}

TEST_F(ws_server, malformed_frames_get_bad_request_and_the_connection_lives) {
  start();
  auto c = open();
  struct row {
    std::string text;
    json id;
    std::string needle;
  };
  const std::vector<row> rows = {
      {"not json", nullptr, "not valid JSON"},
      {"[1,2]", nullptr, "must be a JSON object"},
      {R"({"op":"hello"})", nullptr, "no 'id'"},
      {R"({"id":{},"op":"hello"})", nullptr, "'id' must be an integer or a string"},
      {R"({"id":5})", 5, "no 'op'"},
      {R"({"id":6,"op":7})", 6, "'op' must be a string"},
      {R"({"id":8,"op":"fly"})", 8, "unknown op 'fly'"},
  };
  for (const auto& r : rows) {
    ASSERT_TRUE(c->send_text(r.text));
    auto frame = read_frame(*c);
    EXPECT_EQ(frame["ok"], false) << r.text;
    EXPECT_EQ(frame["id"], r.id) << r.text;
    EXPECT_EQ(frame["error"]["code"], "bad_request") << r.text;
    EXPECT_NE(frame["error"]["message"].get<std::string>().find(r.needle), std::string::npos) << frame.dump();
  }
  ASSERT_TRUE(c->send_binary("\x01\x02"));
  auto bin = read_frame(*c);
  EXPECT_EQ(bin["error"]["code"], "bad_request");
  EXPECT_NE(bin["error"]["message"].get<std::string>().find("binary"), std::string::npos);
  EXPECT_TRUE(c->request("hello"));
}

TEST_F(ws_server, upgrade_needs_a_token_and_ops_need_roles) {
  server_options o;
  o.settings.tokens.push_back({"dash", "DASH", "viewer-secret", config::role::viewer});
  o.settings.tokens.push_back({"ops", "OPS", "operator-secret", config::role::operator_});
  start(o);
  ws_client anon;
  auto refused = anon.connect(url_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, base::errc::unauthorized);

  auto viewer = open("viewer-secret");
  auto hello = viewer->request("hello");
  ASSERT_TRUE(hello);
  EXPECT_EQ((*hello)["role"], "viewer");
  auto submit = viewer->request("submit", json{{"team", "t"}, {"input", "x"}});
  ASSERT_FALSE(submit);
  EXPECT_EQ(submit.error().code, base::errc::forbidden);
  EXPECT_TRUE(viewer->request("tasks"));

  ws_client by_query;
  ASSERT_TRUE(by_query.connect(url_ + "?access_token=operator-secret"));
  auto ok = by_query.request("submit", json{{"team", "t"}, {"input", "x"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(port_.wait_call("submit")->who.name, "ops");
}

TEST_F(ws_server, request_rate_is_limited_per_connection) {
  server_options o;
  o.settings.requests_per_sec = 5;
  start(o);
  auto c = open();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c->send(json{{"id", i}, {"op", "hello"}}));
  int ok = 0, overloaded = 0;
  for (int i = 0; i < 20; ++i) {
    auto frame = read_frame(*c);
    if (frame["ok"] == true) ++ok;
    else if (frame["error"]["code"] == "overloaded") ++overloaded;
  }
  EXPECT_GE(ok, 5);
  EXPECT_GE(overloaded, 1);
  EXPECT_EQ(ok + overloaded, 20);
}

TEST_F(ws_server, oversized_frame_closes_with_1009) {
  server_options o;
  o.settings.max_frame_bytes = 1024;
  start(o);
  auto c = open();
  ASSERT_TRUE(c->send_text(std::string(8000, 'x')));
  auto r = c->read(read_timeout);
  ASSERT_FALSE(r);
  ASSERT_TRUE(c->closed());
  EXPECT_EQ(c->closed()->code, 1009);
  EXPECT_NE(c->closed()->reason.find("message too big"), std::string::npos);
  EXPECT_TRUE(eventually([&] { return server_->clients() == 0; }));
}

TEST_F(ws_server, max_clients_refuses_the_upgrade_with_503) {
  server_options o;
  o.settings.max_clients = 2;
  start(o);
  auto a = open();
  auto b = open();
  ws_client third;
  auto refused = third.connect(url_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, base::errc::overloaded);
  EXPECT_NE(refused.error().message.find("503"), std::string::npos);
  a->close();
  ASSERT_TRUE(eventually([&] { return server_->clients() == 1; }));
  EXPECT_TRUE(third.connect(url_));
}

TEST_F(ws_server, subscribe_sends_snapshot_then_live_events_in_seq_order) {
  start();
  auto c = open();
  auto sub = c->request("subscribe", json{{"topics", {"tasks", "agents"}}});
  ASSERT_TRUE(sub);
  EXPECT_EQ((*sub)["subscription"], 1);
  auto snap = read_frame(*c);
  EXPECT_EQ(snap["event"], "snapshot");
  EXPECT_EQ(snap["seq"], 1);
  EXPECT_EQ(snap["data"]["agents"][0]["agent"], "researcher");
  EXPECT_EQ(snap["data"]["tasks"][0]["id"], "task_1");
  port_.emit(make_event("llm.call", "llm", {{"model", "m"}}));  // not subscribed
  port_.emit(make_event("task.update", "tasks", {{"task", "t1"}, {"state", "running"}}, "t1"));
  port_.emit(make_event("agent.status", "agents", {{"agent", "researcher"}, {"state", "busy"}}));
  auto e1 = read_frame(*c);
  EXPECT_EQ(e1["event"], "task.update");
  EXPECT_EQ(e1["seq"], 2);
  EXPECT_EQ(e1["ts"], "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(e1["data"]["state"], "running");
  auto e2 = read_frame(*c);
  EXPECT_EQ(e2["event"], "agent.status");
  EXPECT_EQ(e2["seq"], 3);
}

TEST_F(ws_server, filters_and_unsubscribe) {
  start();
  auto c = open();
  auto snap = subscribe(*c, json{{"topics", {"tasks"}}, {"filter", {{"task", "t1"}}}});
  EXPECT_EQ(snap["data"]["tasks"][0]["id"], "t1");  // the snapshot holds just that task
  port_.emit(make_event("task.update", "tasks", {{"n", 1}}, "t2"));
  port_.emit(make_event("task.update", "tasks", {{"n", 2}}, "t1"));
  EXPECT_EQ(read_frame(*c)["data"]["n"], 2);

  auto sys = subscribe(*c, json{{"topics", {"system"}}});
  auto un = c->request("unsubscribe", json{{"subscription", 1}});
  ASSERT_TRUE(un) << un.error().message;
  auto again = c->request("unsubscribe", json{{"subscription", 1}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, base::errc::not_found);
  port_.emit(make_event("task.update", "tasks", {{"n", 3}}, "t1"));  // nobody wants it now
  port_.emit(make_event("system.metrics", "system", {{"n", 4}}));
  auto next = read_frame(*c);
  EXPECT_EQ(next["event"], "system.metrics");
  EXPECT_EQ(next["data"]["n"], 4);
}

TEST_F(ws_server, the_server_listens_to_the_runtime_only_while_someone_is_subscribed) {
  start();
  EXPECT_EQ(port_.listener_count(), 0u);  // no events built for nobody
  auto a = open();
  auto b = open();
  EXPECT_EQ(port_.listener_count(), 0u);  // connected is not subscribed
  subscribe(*a, json{{"topics", {"tasks"}}});
  EXPECT_EQ(port_.listener_count(), 1u);
  subscribe(*b, json{{"topics", {"tasks"}}});
  subscribe(*b, json{{"topics", {"system"}}});
  EXPECT_EQ(port_.listener_count(), 1u);  // one listener for every subscription
  port_.emit(make_event("task.update", "tasks", {{"n", 1}}, "t1"));
  EXPECT_EQ(read_frame(*a)["data"]["n"], 1);
  EXPECT_EQ(read_frame(*b)["data"]["n"], 1);
  a->close();
  ASSERT_TRUE(eventually([&] { return server_->clients() == 1; }));
  EXPECT_EQ(port_.listener_count(), 1u);  // b still wants events
  ASSERT_TRUE(b->request("unsubscribe", json{{"subscription", 1}}));
  EXPECT_EQ(port_.listener_count(), 1u);  // b's second subscription
  ASSERT_TRUE(b->request("unsubscribe", json{{"subscription", 2}}));
  EXPECT_EQ(port_.listener_count(), 0u);
  // Subscribing again listens again, and the new subscription misses nothing.
  subscribe(*b, json{{"topics", {"tasks"}}});
  EXPECT_EQ(port_.listener_count(), 1u);
  port_.emit(make_event("task.update", "tasks", {{"n", 2}}, "t1"));
  auto next = read_frame(*b);
  EXPECT_EQ(next["data"]["n"], 2);
}

TEST_F(ws_server, five_hundred_subscribers_receive_every_event_in_order) {
  start();
  constexpr int clients = 500;
  constexpr int events = 20;
  std::vector<std::unique_ptr<ws_client>> subs;
  for (int i = 0; i < clients; ++i) {
    subs.push_back(open());
    subscribe(*subs.back(), json{{"topics", {"tasks"}}});
  }
  ASSERT_EQ(server_->clients(), static_cast<std::size_t>(clients));
  for (int n = 0; n < events; ++n) port_.emit(make_event("task.update", "tasks", {{"n", n}}, "t1"));
  for (auto& c : subs) {
    for (int n = 0; n < events; ++n) {
      auto f = read_frame(*c);
      ASSERT_EQ(f["seq"], n + 2);
      ASSERT_EQ(f["data"]["n"], n);
    }
  }
}

TEST_F(ws_server, a_steady_stream_reaches_a_batched_subscriber_in_few_frames) {
  start();
  auto c = open();
  ASSERT_TRUE(c->request("subscribe", json{{"topics", {"tasks"}}, {"batch", true}}));
  EXPECT_EQ(read_frame(*c)["events"][0]["event"], "snapshot");  // a frame of one
  // A trickle, one event a millisecond: wake passes run at most every 5 ms
  // and a batched subscriber pauses after each frame until the next one, so
  // it gets about one frame per 5 ms (~40 here) instead of one per event (200
  // frames with neither), and nothing is lost or reordered on the way.
  constexpr int events = 200;
  std::thread emitter([this] {
    for (int n = 0; n < events; ++n) {
      port_.emit(make_event("task.update", "tasks", {{"n", n}}, "t1"));
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  int frames = 0, seen = 0;
  while (seen < events) {
    auto f = read_frame(*c);
    ASSERT_TRUE(f.contains("events")) << f.dump();
    ++frames;
    for (const auto& e : f["events"]) {
      ASSERT_EQ(e["data"]["n"], seen) << e.dump();
      ASSERT_EQ(e["seq"], seen + 2);
      ++seen;
    }
  }
  emitter.join();
  EXPECT_LE(frames, events / 2) << "frames for " << events << " events";
}

TEST_F(ws_server, slow_subscriber_gets_stream_gap_while_fast_one_loses_nothing) {
  server_options o;
  o.settings.send_queue = 64;
  // The slow client answers no pings while it does not read; keep the idle
  // timeout out of the way on slow (sanitizer) builds.
  o.settings.idle_timeout_ms = 600000;
  start(o);
  auto fast = open();
  auto slow = open();
  subscribe(*fast, json{{"topics", {"tasks"}}});
  subscribe(*slow, json{{"topics", {"tasks"}}});

  constexpr int total = 6000;
  constexpr int batch = 32;
  const std::string payload(4096, 'p');
  std::atomic<int> fast_seen{0};
  std::atomic<bool> fast_ok{true};
  std::mutex mu;
  std::condition_variable cv;
  std::thread reader([&] {
    for (int n = 0; n < total; ++n) {
      auto f = fast->read(read_timeout);
      if (!f || (*f)["seq"] != n + 2 || (*f)["data"]["n"] != n) {
        fast_ok = false;
        cv.notify_all();
        return;
      }
      fast_seen = n + 1;
      cv.notify_all();
    }
  });
  for (int n = 0; n < total; ++n) {
    port_.emit(make_event("task.update", "tasks", {{"n", n}, {"pad", payload}}, "t1"));
    if ((n + 1) % batch == 0) {  // pace on the fast reader only
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, read_timeout, [&] { return fast_seen >= n + 1 || !fast_ok; }));
      ASSERT_TRUE(fast_ok);
    }
  }
  reader.join();
  EXPECT_TRUE(fast_ok);
  EXPECT_EQ(fast_seen, total);

  // The slow one now drains: it must see a gap, consecutive seqs, and the
  // last event (drops take the oldest).
  std::uint64_t expected_seq = 2, dropped = 0, received = 0;
  int last_n = -1;
  bool gap_seen = false;
  while (last_n != total - 1) {
    auto f = slow->read(read_timeout);
    ASSERT_TRUE(f) << f.error().message;
    ASSERT_EQ((*f)["seq"], expected_seq);
    ++expected_seq;
    if ((*f)["event"] == "stream.gap") {
      gap_seen = true;
      dropped += (*f)["data"]["dropped"].get<std::uint64_t>();
    } else {
      const int n = (*f)["data"]["n"];
      ASSERT_GT(n, last_n);
      last_n = n;
      ++received;
    }
  }
  EXPECT_TRUE(gap_seen);
  EXPECT_EQ(received + dropped, static_cast<std::uint64_t>(total));
}

TEST_F(ws_server, clients_disconnecting_mid_stream_do_not_disturb_others) {
  start();
  std::vector<std::unique_ptr<ws_client>> subs;
  for (int i = 0; i < 10; ++i) {
    subs.push_back(open());
    subscribe(*subs.back(), json{{"topics", {"tasks"}}});
  }
  for (int n = 0; n < 200; ++n) {
    port_.emit(make_event("task.update", "tasks", {{"n", n}}, "t1"));
    if (n == 100)
      for (int i = 0; i < 5; ++i) subs[static_cast<std::size_t>(i)]->abort();
  }
  for (std::size_t i = 5; i < subs.size(); ++i)
    for (int n = 0; n < 200; ++n) ASSERT_EQ(read_frame(*subs[i])["data"]["n"], n);
  EXPECT_TRUE(eventually([&] { return server_->clients() == 5; }));
}

TEST_F(ws_server, stop_closes_open_sessions_with_going_away) {
  server_options o;
  o.handshake_timeout_ms = 2000;
  start(o);
  std::vector<std::unique_ptr<ws_client>> subs;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(open());
    subscribe(*subs.back(), json{{"topics", {"tasks"}}});
  }
  auto stopped = std::async(std::launch::async, [&] { server_->stop(); });
  for (auto& c : subs) {
    auto r = c->read(read_timeout);
    ASSERT_FALSE(r);
    ASSERT_TRUE(c->closed());
    EXPECT_EQ(c->closed()->code, 1001);
  }
  ASSERT_EQ(stopped.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(server_->clients(), 0u);
  EXPECT_EQ(port_.listener_count(), 0u);
  server_->stop();  // idempotent
}

TEST_F(ws_server, unanswered_requests_pause_reading_until_replies_drain) {
  server_options o;
  o.settings.requests_per_sec = 0;  // no rate limit: only the backlog bound acts
  start(o);
  std::mutex mu;
  std::vector<reply_fn> held;
  std::atomic<bool> hold{true};
  port_.set_handler([&](const principal&, const std::string& op, const json&, reply_fn& reply) {
    if (op != "tasks" || !hold) return false;
    std::lock_guard lock(mu);
    held.push_back(std::move(reply));
    return true;
  });
  auto c = open();
  constexpr int sent = 1100;
  for (int i = 0; i < sent; ++i) ASSERT_TRUE(c->send(json{{"id", i}, {"op", "tasks"}}));
  auto held_count = [&] {
    std::lock_guard lock(mu);
    return held.size();
  };
  ASSERT_TRUE(eventually([&] { return held_count() == 1024; }));
  EXPECT_FALSE(eventually([&] { return held_count() > 1024; }, milliseconds(300)));
  hold = false;
  std::vector<reply_fn> release;
  {
    std::lock_guard lock(mu);
    release.swap(held);
  }
  for (auto& r : release) r(json{{"tasks", json::array()}});
  std::set<int> ids;
  for (int i = 0; i < sent; ++i) {
    auto f = read_frame(*c);
    ASSERT_EQ(f["ok"], true);
    ids.insert(f["id"].get<int>());
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(sent));
}

TEST_F(ws_server, idle_clients_are_pinged_and_silent_ones_dropped) {
  server_options o;
  o.settings.idle_timeout_ms = 400;
  start(o);
  auto silent = open();  // never reads, so it never answers the server's pings
  auto alive = open();
  // A reading client answers pings inside read(): no frame arrives, it stays.
  const auto until = std::chrono::steady_clock::now() + milliseconds(1500);
  while (std::chrono::steady_clock::now() < until) {
    auto r = alive->read(milliseconds(100));
    ASSERT_FALSE(r);
    ASSERT_EQ(r.error().code, base::errc::timeout) << r.error().message;
  }
  EXPECT_TRUE(eventually([&] { return server_->clients() == 1; }));
  EXPECT_TRUE(alive->request("hello"));
}

TEST_F(ws_server, late_replies_for_gone_clients_are_dropped) {
  start();
  std::mutex mu;
  std::vector<reply_fn> held;
  port_.set_handler([&](const principal&, const std::string& op, const json&, reply_fn& reply) {
    if (op != "tasks") return false;
    std::lock_guard lock(mu);
    held.push_back(std::move(reply));
    return true;
  });
  for (int i = 0; i < 2; ++i) {
    auto c = open();
    ASSERT_TRUE(c->send(json{{"id", 1}, {"op", "tasks"}}));
    ASSERT_TRUE(eventually([&] { std::lock_guard lock(mu); return held.size() == static_cast<std::size_t>(i + 1); }));
    c->abort();
  }
  ASSERT_TRUE(eventually([&] { return server_->clients() == 0; }));
  held[0](json::object());
  server_.reset();
  held[1](json::object());
}

}  // namespace
}  // namespace troupe::protocols::control
