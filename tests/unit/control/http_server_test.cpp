// HTTP side of the control server, over real loopback sockets against a fake port.
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "fake_port.hpp"
#include "troupe/protocols/client/http_client.hpp"
#include "troupe/protocols/control/control_server.hpp"

namespace troupe::protocols::control {
namespace {

using client::http_call;
using client::http_connection;
using client::method;
using nlohmann::json;
using test::fake_port;

class http_server : public ::testing::Test {
 protected:
  void start(server_options opts = {}) {
    opts.listen = "127.0.0.1:0";
    server_ = std::make_unique<control_server>(opts, port_);
    auto ok = server_->start();
    ASSERT_TRUE(ok) << ok.error().message;
    url_ = "http://" + server_->endpoint();
    const auto colon = server_->endpoint().rfind(':');
    port_number_ = static_cast<std::uint16_t>(std::stoi(server_->endpoint().substr(colon + 1)));
  }
  client::http_reply get(const std::string& target, const std::string& token = {}) {
    auto r = http_call(url_, method::get, target, {}, token);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : client::http_reply{};
  }
  client::http_reply post(const std::string& target, const std::string& body, const std::string& token = {}) {
    auto r = http_call(url_, method::post, target, body, token);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : client::http_reply{};
  }
  static json error_of(const client::http_reply& r) { return json::parse(r.body)["error"]; }
  http_connection connect() {
    http_connection c(std::chrono::seconds(5));
    auto ok = c.connect("127.0.0.1", port_number_);
    EXPECT_TRUE(ok);
    return c;
  }

  fake_port port_;
  std::unique_ptr<control_server> server_;
  std::string url_;
  std::uint16_t port_number_ = 0;
};

server_options with_tokens() {
  server_options o;
  o.settings.tokens.push_back({"dash", "DASH", "viewer-secret", config::role::viewer});
  o.settings.tokens.push_back({"ops", "OPS", "operator-secret", config::role::operator_});
  o.settings.tokens.push_back({"root", "ROOT", "admin-secret", config::role::admin});
  return o;
}

TEST_F(http_server, healthz_answers_ok) {
  start();
  auto r = get("/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), (json{{"status", "ok"}}));
  EXPECT_EQ(r.headers["content-type"], "application/json");
}

TEST_F(http_server, readyz_reports_port_readiness) {
  start();
  auto ok = get("/readyz");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(json::parse(ok.body)["ready"], true);
  port_.set_handler([](const principal&, const std::string& op, const json&, reply_fn& reply) {
    if (op != "ready") return false;
    reply(base::fail(base::errc::internal, "store unreachable"));
    return true;
  });
  auto down = get("/readyz");
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(error_of(down)["message"], "store unreachable");
}

TEST_F(http_server, metrics_expose_port_and_server_counters) {
  start();
  get("/healthz");
  auto r = get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"].rfind("text/plain; version=0.0.4", 0), 0u);
  EXPECT_NE(r.body.find("troupe_fake_up 1\n"), std::string::npos);
  EXPECT_NE(r.body.find(R"(troupe_http_requests_total{route="/healthz",code="200"} 1)"), std::string::npos);
  EXPECT_NE(r.body.find("troupe_ws_clients 0"), std::string::npos);
  EXPECT_NE(r.body.find("troupe_ws_dropped_events_total 0"), std::string::npos);
}

TEST_F(http_server, submit_is_accepted_with_202) {
  start();
  auto r = post("/v1/tasks", R"({"team":"newsroom","input":"hello"})");
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(json::parse(r.body)["id"], "task_1");
  auto call = port_.wait_call("submit");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->args, (json{{"team", "newsroom"}, {"input", "hello"}}));
  EXPECT_EQ(call->who.name, "anonymous");
  EXPECT_EQ(call->who.granted, config::role::admin);
}

TEST_F(http_server, every_route_reaches_its_op) {
  start();
  struct row {
    method m;
    std::string target, body, op;
    json args;
  };
  const std::vector<row> rows = {
      {method::get, "/v1/tasks/abc", "", "task", {{"id", "abc"}}},
      {method::get, "/v1/tasks?state=running&team=t&limit=5", "", "tasks",
       {{"state", "running"}, {"team", "t"}, {"limit", 5}}},
      {method::post, "/v1/tasks/abc/cancel", "", "cancel", {{"id", "abc"}}},
      {method::get, "/v1/decisions", "", "decisions", json::object()},
      {method::post, "/v1/decisions/d1", R"({"option":"publish","comment":"fine"})", "decide",
       {{"decision_id", "d1"}, {"option", "publish"}, {"comment", "fine"}}},
      {method::get, "/v1/agents", "", "agents", json::object()},
      {method::get, "/v1/teams", "", "teams", json::object()},
  };
  for (const auto& r : rows) {
    auto reply = http_call(url_, r.m, r.target, r.body);
    ASSERT_TRUE(reply) << r.target;
    EXPECT_EQ(reply->status, 200) << r.target << " " << reply->body;
    auto call = port_.wait_call(r.op);
    ASSERT_TRUE(call) << r.op;
    EXPECT_EQ(call->args, r.args) << r.target;
  }
}

TEST_F(http_server, port_errors_map_to_statuses) {
  start();
  const std::vector<std::pair<base::errc, int>> rows = {
      {base::errc::bad_request, 400}, {base::errc::unauthorized, 401}, {base::errc::budget_exceeded, 402},
      {base::errc::forbidden, 403},   {base::errc::not_found, 404},    {base::errc::conflict, 409},
      {base::errc::overloaded, 429},  {base::errc::unavailable, 503},  {base::errc::internal, 500},
      {base::errc::timeout, 500}};
  for (const auto& [code, status] : rows) {
    port_.set_handler([code = code](const principal&, const std::string& op, const json&, reply_fn& reply) {
      if (op != "task") return false;
      reply(base::fail(code, "failure for the test"));
      return true;
    });
    auto r = get("/v1/tasks/x");
    EXPECT_EQ(r.status, status) << base::to_string(code);
    EXPECT_EQ(error_of(r)["code"], std::string(base::to_string(code)));
    EXPECT_EQ(error_of(r)["message"], "failure for the test");
  }
}

TEST_F(http_server, malformed_requests_get_4xx_with_reasons) {
  start();
  auto not_json = post("/v1/tasks", "{\"team\": nope}");
  EXPECT_EQ(not_json.status, 400);
  const std::string msg = error_of(not_json)["message"];
  EXPECT_NE(msg.find("body is not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at byte"), std::string::npos) << msg;

  auto not_object = post("/v1/tasks", "\"text\"");
  EXPECT_EQ(not_object.status, 400);
  EXPECT_NE(error_of(not_object)["message"].get<std::string>().find("JSON object, got string"), std::string::npos);

  auto wrong_method = http_call(url_, method::del, "/v1/tasks", {});
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->headers["allow"], "GET, POST");

  auto unknown = get("/v1/nothing/here");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(error_of(unknown)["code"], "not_found");

  auto no_upgrade = get("/v1/ws");
  EXPECT_EQ(no_upgrade.status, 426);

  auto bad_limit = get("/v1/tasks?limit=-3");
  EXPECT_EQ(bad_limit.status, 400);
}

TEST_F(http_server, oversized_body_gets_413_naming_the_limit) {
  server_options o;
  o.settings.max_body_bytes = 1024;
  start(o);
  auto r = post("/v1/tasks", "{\"input\":\"" + std::string(4096, 'x') + "\"}");
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(error_of(r)["message"].get<std::string>().find("1024 bytes"), std::string::npos);
}

TEST_F(http_server, oversized_headers_get_431) {
  start();
  auto c = connect();
  auto r = c.raw("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 431);
}

TEST_F(http_server, bad_chunked_encoding_gets_400) {
  start();
  auto c = connect();
  auto r = c.raw("POST /v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(error_of(*r)["message"].get<std::string>().find("bad chunked encoding"), std::string::npos) << r->body;
}

TEST_F(http_server, garbage_request_line_gets_400) {
  start();
  auto c = connect();
  auto r = c.raw("HELLO THERE\r\n\r\n");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(error_of(*r)["message"].get<std::string>().find("malformed HTTP request"), std::string::npos);
}

TEST_F(http_server, slow_loris_gets_408_and_is_closed) {
  server_options o;
  o.request_timeout_ms = 300;
  start(o);
  auto c = connect();
  ASSERT_TRUE(c.send_raw("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
  auto r = c.read_reply();  // the server answers on its own once the deadline passes
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 408);
  EXPECT_FALSE(r->keep_alive);
  EXPECT_TRUE(c.peer_closed());
}

TEST_F(http_server, keep_alive_and_pipelined_requests_answer_in_order) {
  start();
  // The first reply is held back by the port until the second request arrived.
  std::promise<reply_fn> held;
  port_.set_handler([&held](const principal&, const std::string& op, const json& args, reply_fn& reply) {
    if (op != "task" || args.value("id", "") != "slow") return false;
    held.set_value(std::move(reply));
    return true;
  });
  auto c = connect();
  ASSERT_TRUE(c.send_raw("GET /v1/tasks/slow HTTP/1.1\r\nHost: x\r\n\r\n"
                         "GET /v1/tasks/fast HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto fut = held.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  fut.get()(json{{"id", "slow"}});
  auto first = c.read_reply();
  auto second = c.read_reply();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(json::parse(first->body)["id"], "slow");
  EXPECT_EQ(json::parse(second->body)["id"], "fast");
  auto third = c.request(method::get, "/healthz");  // the connection is still usable
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 200);
}

TEST_F(http_server, connection_close_ends_the_keep_alive) {
  start();
  auto c = connect();
  auto r = c.request(method::get, "/healthz", {}, {{"Connection", "close"}});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->keep_alive);
  EXPECT_TRUE(c.peer_closed());
  EXPECT_FALSE(c.request(method::get, "/healthz"));
}

TEST_F(http_server, tokens_and_roles_are_enforced) {
  start(with_tokens());
  EXPECT_EQ(get("/healthz").status, 200);
  EXPECT_EQ(get("/readyz").status, 200);
  auto missing = get("/v1/agents");
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(error_of(missing)["code"], "unauthorized");
  EXPECT_EQ(get("/v1/agents", "nope").status, 401);
  EXPECT_EQ(get("/metrics").status, 401);
  EXPECT_EQ(get("/metrics", "viewer-secret").status, 200);
  EXPECT_EQ(get("/v1/agents?access_token=viewer-secret").status, 200);
  EXPECT_EQ(get("/v1/agents", "viewer-secret").status, 200);

  auto forbidden = post("/v1/tasks", R"({"team":"t","input":"x"})", "viewer-secret");
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(error_of(forbidden)["code"], "forbidden");
  auto accepted = post("/v1/tasks", R"({"team":"t","input":"x"})", "operator-secret");
  EXPECT_EQ(accepted.status, 202);
  auto call = port_.wait_call("submit");
  ASSERT_TRUE(call);
  EXPECT_EQ(call->who.name, "ops");
  EXPECT_EQ(call->who.granted, config::role::operator_);
}

TEST_F(http_server, start_refuses_bad_or_unsafe_addresses) {
  fake_port port;
  for (const std::string bad : {"nonsense", "999.1.1.1:80", "127.0.0.1:99999", "127.0.0.1:", ":80"}) {
    server_options o;
    o.listen = bad;
    control_server s(o, port);
    auto r = s.start();
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, base::errc::invalid_config);
    EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
  }
  server_options open;
  open.listen = "0.0.0.0:0";
  control_server exposed(open, port);
  auto r = exposed.start();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a loopback address"), std::string::npos);

  auto secured = with_tokens();
  secured.listen = "0.0.0.0:0";
  control_server ok(secured, port);
  EXPECT_TRUE(ok.start());
  ok.stop();

  start();
  server_options taken;
  taken.listen = server_->endpoint();
  control_server second(taken, port);
  auto busy = second.start();
  ASSERT_FALSE(busy);
  EXPECT_NE(busy.error().message.find("cannot listen"), std::string::npos);
}

TEST_F(http_server, late_replies_after_disconnect_or_stop_are_dropped) {
  start();
  std::mutex mu;
  std::vector<reply_fn> held;
  port_.set_handler([&](const principal&, const std::string& op, const json&, reply_fn& reply) {
    if (op != "task") return false;
    std::lock_guard lock(mu);
    held.push_back(std::move(reply));
    return true;
  });
  {
    auto c = connect();
    ASSERT_TRUE(c.send_raw("GET /v1/tasks/a HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(test::eventually([&] { std::lock_guard lock(mu); return held.size() == 1; }));
  }  // client gone
  {
    auto c = connect();
    ASSERT_TRUE(c.send_raw("GET /v1/tasks/b HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(test::eventually([&] { std::lock_guard lock(mu); return held.size() == 2; }));
  }
  held[0](json{{"id", "a"}});  // client disconnected: dropped
  EXPECT_EQ(get("/healthz").status, 200);
  server_->stop();
  held[1](json{{"id", "b"}});  // server stopped: dropped
  server_.reset();
  EXPECT_EQ(port_.listener_count(), 0u);
}

}  // namespace
}  // namespace troupe::protocols::control
