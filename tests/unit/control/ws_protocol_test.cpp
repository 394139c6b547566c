#include "troupe/protocols/control/ws_protocol.hpp"

#include <gtest/gtest.h>

namespace troupe::protocols::control {
namespace {

using nlohmann::json;

TEST(ws_protocol, parses_request_frames) {
  auto r = parse_request_frame(R"({"id":7,"op":"task","id2":1,"x":"y"})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, 7);
  EXPECT_EQ(r->op, "task");
  EXPECT_EQ(r->args, (json{{"id2", 1}, {"x", "y"}}));
  auto s = parse_request_frame(R"({"id":"abc","op":"hello"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->id, "abc");
}

TEST(ws_protocol, malformed_frames_say_what_is_wrong) {
  struct row {
    const char* text;
    const char* needle;
    json id;
  };
  const row rows[] = {
      {"nope", "frame is not valid JSON", nullptr},
      {"[1]", "frame must be a JSON object, got array", nullptr},
      {R"({"op":"hello"})", "no 'id'", nullptr},
      {R"({"id":1.5,"op":"hello"})", "'id' must be an integer or a string", nullptr},
      {R"({"id":3})", "no 'op'", 3},
      {R"({"id":4,"op":[]})", "'op' must be a string", 4},
  };
  for (const auto& r : rows) {
    auto p = parse_request_frame(r.text);
    ASSERT_FALSE(p) << r.text;
    EXPECT_EQ(p.error().err.code, base::errc::bad_request);
    EXPECT_NE(p.error().err.message.find(r.needle), std::string::npos) << p.error().err.message;
    EXPECT_EQ(p.error().id, r.id) << r.text;
  }
}

TEST(ws_protocol, renders_responses_and_events) {
  EXPECT_EQ(json::parse(render_ok(7, json{{"a", 1}})), (json{{"id", 7}, {"ok", true}, {"result", {{"a", 1}}}}));
  auto err = json::parse(render_error(nullptr, base::make_error(base::errc::forbidden, "no")));
  EXPECT_EQ(err["error"]["code"], "forbidden");
  EXPECT_TRUE(err["id"].is_null());

  auto ev = std::make_shared<event>();
  ev->name = "task.update";
  ev->topic = "tasks";
  ev->ts_ms = 1767225600123;
  ev->data = {{"task", "t1"}, {"state", "running"}};
  auto p = prepare_event(ev);
  auto frame = json::parse(render_event(*p, 42));
  EXPECT_EQ(frame["event"], "task.update");
  EXPECT_EQ(frame["seq"], 42);
  EXPECT_EQ(frame["ts"], "2026-01-01T00:00:00.123Z");
  EXPECT_EQ(frame["data"]["state"], "running");
  auto gap = json::parse(render_gap(5, 17, 1767225600000));
  EXPECT_EQ(gap["event"], "stream.gap");
  EXPECT_EQ(gap["data"]["dropped"], 17);
}

TEST(ws_protocol, invalid_utf8_in_messages_is_replaced_not_thrown) {
  auto p = parse_request_frame("\xff\xfe");
  ASSERT_FALSE(p);
  std::string frame;
  ASSERT_NO_THROW(frame = render_error(p.error().id, p.error().err));
  EXPECT_TRUE(json::accept(frame)) << frame;
  ASSERT_NO_THROW(frame = render_ok(1, json{{"text", std::string("bad \xc3")}}));
  EXPECT_TRUE(json::accept(frame));
}

TEST(ws_protocol, subscription_filters) {
  auto bad = parse_subscription(json{{"topics", {"tasks", "weather"}}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("\"weather\""), std::string::npos);
  EXPECT_FALSE(parse_subscription(json::object()));
  EXPECT_FALSE(parse_subscription(json{{"topics", {"tasks"}}, {"filter", {{"colour", "x"}}}}));

  auto f = parse_subscription(json{{"topics", {"tasks", "system"}}, {"filter", {{"task", "t1"}}}});
  ASSERT_TRUE(f);
  event ev;
  ev.topic = "tasks";
  ev.task = "t1";
  EXPECT_TRUE(f->matches(ev));
  ev.task = "t2";
  EXPECT_FALSE(f->matches(ev));
  ev.topic = "agents";
  ev.task = "t1";
  EXPECT_FALSE(f->matches(ev));
  ev.topic = "system";
  ev.task.clear();
  EXPECT_TRUE(f->matches(ev));
}

TEST(ws_protocol, token_bucket_limits_bursts_and_refills) {
  token_bucket b(10, 10);
  auto t = std::chrono::steady_clock::now();
  int taken = 0;
  for (int i = 0; i < 20; ++i) taken += b.take(t) ? 1 : 0;
  EXPECT_EQ(taken, 10);
  EXPECT_TRUE(b.take(t + std::chrono::milliseconds(150)));
  token_bucket off(0, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(off.take(t));
}

}  // namespace
}  // namespace troupe::protocols::control
