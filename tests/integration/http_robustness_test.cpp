// HTTP robustness against the real daemon: bad requests get a 4xx with a JSON
// error body, and the daemon keeps serving afterwards.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>

#include "daemon_process.hpp"
#include "integration_env.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace client = protocols::client;

// Asserts a 4xx status (exactly `status` when non-zero) and a JSON body
// {"error":{"code","message"}}.
void expect_json_error(const base::result<client::http_reply>& r, int status,
                       const std::string& code, const std::string& what) {
  ASSERT_TRUE(r) << what << ": no reply: " << r.error().message;
  if (status) {
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
  }
  EXPECT_GE(r->status, 400) << what;
  EXPECT_LT(r->status, 500) << what;
  auto doc = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(doc.is_object() && doc.contains("error"))
      << what << ": body is not a JSON error: " << r->body;
  EXPECT_EQ(doc["error"].value("code", ""), code) << what << ": " << r->body;
  EXPECT_FALSE(doc["error"].value("message", "").empty()) << what;
}

class http_robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    ASSERT_TRUE(write_text(dir_.file("cfg.json"), R"({
      "control": { "listen": "127.0.0.1:0", "max_body_bytes": 65536 },
      "providers": { "p": { "kind": "scripted", "replies": [ { "text": "ok {{input}}" } ] } },
      "models": { "m": { "provider": "p", "name": "m" } },
      "agents": [ { "name": "solo", "model": "m", "system": "s" } ],
      "teams": [ { "name": "t", "agents": ["solo"], "workflow": [ { "id": "only", "agent": "solo" } ] } ]
    })"));
    ASSERT_TRUE(d_.start(troupe_exe(),
                         {"run", dir_.file("cfg.json"), "--listen", "127.0.0.1:0", "--store",
                          "sqlite:" + dir_.file("troupe.db")},
                         dir_.file("daemon.log"), why))
        << why;
    auto port = d_.wait_until_ready(120s);
    ASSERT_TRUE(port) << d_.output();
    port_ = *port;
  }

  void TearDown() override {
    d_.signal(SIGTERM);
    auto code = d_.wait_exit(10s);
    EXPECT_TRUE(code && *code == 0) << "daemon exit " << (code ? *code : -1);
    if (HasFailure()) dir_.keep();
  }

  // The daemon still answers and still runs tasks.
  void expect_still_serving() {
    api_client api{port_};
    auto h = api.call(client::method::get, "/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    auto r = api.submit("t", "still here");
    ASSERT_EQ(r.outcome, submit_outcome::acknowledged) << r.status << " " << r.body.dump();
  }

  scratch_dir dir_{"troupe-http"};
  daemon_process d_;
  std::uint16_t port_ = 0;
};

}  // namespace

TEST_F(http_robustness, malformed_json_is_400_bad_request) {
  api_client api{port_};
  expect_json_error(api.call(client::method::post, "/v1/tasks", R"({"team": "t", "input": )"), 400,
                    "bad_request", "truncated JSON");
  expect_json_error(api.call(client::method::post, "/v1/tasks", "[1,2,3]"), 400, "bad_request",
                    "JSON array body");
  expect_json_error(api.call(client::method::post, "/v1/tasks", R"({"team": 7, "input": "x"})"),
                    400, "bad_request", "team of the wrong type");
  expect_json_error(api.call(client::method::post, "/v1/tasks", "\xff\xfe{}"), 400, "bad_request",
                    "invalid UTF-8");
  expect_still_serving();
}

TEST_F(http_robustness, oversized_body_is_413) {
  api_client api{port_};
  const std::string big = R"({"team":"t","input":")" + std::string(200 * 1024, 'x') + R"("})";
  auto r = api.call(client::method::post, "/v1/tasks", big);
  expect_json_error(r, 413, "bad_request", "200 KiB body over a 64 KiB limit");
  expect_still_serving();
}

TEST_F(http_robustness, unknown_route_is_404_and_wrong_method_is_405) {
  api_client api{port_};
  expect_json_error(api.call(client::method::get, "/v2/nothing"), 404, "not_found",
                    "unknown route");
  expect_json_error(api.call(client::method::get, "/v1/tasks/t_does_not_exist"), 404, "not_found",
                    "unknown task");
  expect_json_error(api.call(client::method::del, "/v1/tasks"), 405, "bad_request",
                    "DELETE /v1/tasks");
  expect_json_error(api.call(client::method::post, "/healthz", "{}"), 405, "bad_request",
                    "POST /healthz");
  expect_still_serving();
}

TEST_F(http_robustness, garbage_bytes_do_not_take_the_daemon_down) {
  {
    client::http_connection raw{5s};
    ASSERT_TRUE(raw.connect("127.0.0.1", port_));
    auto r = raw.raw("THIS IS NOT HTTP\r\n\r\n");
    if (r) {
      EXPECT_GE(r->status, 400);
      EXPECT_LT(r->status, 500);
    }  // else the server just closed the connection, which is also fine
  }
  {
    client::http_connection raw{5s};
    ASSERT_TRUE(raw.connect("127.0.0.1", port_));
    // A request line and a declared body that never arrives, then the client goes away.
    ASSERT_TRUE(raw.send_raw("POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"));
  }
  expect_still_serving();
}

}  // namespace troupe::test
