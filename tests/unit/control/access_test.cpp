#include "troupe/protocols/control/access.hpp"

#include <gtest/gtest.h>

#include "troupe/protocols/control/http_routes.hpp"

namespace troupe::protocols::control {
namespace {

using config::role;

TEST(access, role_table_orders_viewer_operator_admin) {
  EXPECT_EQ(required_role("tasks"), role::viewer);
  EXPECT_EQ(required_role("subscribe"), role::viewer);
  EXPECT_EQ(required_role("submit"), role::operator_);
  EXPECT_EQ(required_role("decide"), role::operator_);
  EXPECT_EQ(required_role("shutdown"), role::admin);
  EXPECT_EQ(required_role("reload"), role::admin);
  EXPECT_FALSE(required_role("fly").has_value());
  EXPECT_TRUE(role_allows(role::admin, role::operator_));
  EXPECT_FALSE(role_allows(role::viewer, role::operator_));
}

TEST(access, authorize_names_op_and_roles) {
  auto r = authorize(principal{"dash", role::viewer}, "cancel");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, base::errc::forbidden);
  EXPECT_NE(r.error().message.find("'cancel' needs role operator"), std::string::npos);
  EXPECT_NE(r.error().message.find("'dash' has role viewer"), std::string::npos);
  auto unknown = authorize(principal{}, "fly");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, base::errc::bad_request);
}

TEST(access, http_status_maps_every_public_code) {
  EXPECT_EQ(http_status(base::errc::bad_request), 400);
  EXPECT_EQ(http_status(base::errc::unauthorized), 401);
  EXPECT_EQ(http_status(base::errc::budget_exceeded), 402);
  EXPECT_EQ(http_status(base::errc::forbidden), 403);
  EXPECT_EQ(http_status(base::errc::not_found), 404);
  EXPECT_EQ(http_status(base::errc::conflict), 409);
  EXPECT_EQ(http_status(base::errc::overloaded), 429);
  EXPECT_EQ(http_status(base::errc::unavailable), 503);
  EXPECT_EQ(http_status(base::errc::internal), 500);
  EXPECT_EQ(http_status(base::errc::deadline_exceeded), 500);
}

TEST(access, tokens_compare_and_resolve) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal("", "a"));
  EXPECT_EQ(bearer_token("Bearer xyz"), "xyz");
  EXPECT_EQ(bearer_token("bearer   xyz "), "xyz");
  EXPECT_EQ(bearer_token("Basic xyz"), "");
  EXPECT_EQ(bearer_token(""), "");

  config::control open;
  auto anon = authenticate(open, "");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->name, "anonymous");
  EXPECT_EQ(anon->granted, role::admin);

  config::control locked;
  locked.tokens.push_back({"ops", "OPS", "s3cret", role::operator_});
  EXPECT_EQ(authenticate(locked, "").error().code, base::errc::unauthorized);
  EXPECT_EQ(authenticate(locked, "wrong").error().code, base::errc::unauthorized);
  auto ops = authenticate(locked, "s3cret");
  ASSERT_TRUE(ops);
  EXPECT_EQ(ops->name, "ops");
  EXPECT_EQ(ops->granted, role::operator_);
}

TEST(routes, resolve_maps_paths_to_ops) {
  auto r = resolve_route("GET", "/v1/tasks?state=running&team=news&limit=5&access_token=x", "");
  EXPECT_EQ(r.kind, route_kind::op);
  EXPECT_EQ(r.op, "tasks");
  EXPECT_EQ(r.args, (nlohmann::json{{"state", "running"}, {"team", "news"}, {"limit", 5}}));
  r = resolve_route("POST", "/v1/tasks/task%201/cancel", "");
  EXPECT_EQ(r.op, "cancel");
  EXPECT_EQ(r.args["id"], "task 1");
  r = resolve_route("POST", "/v1/decisions/d1", R"({"option":"publish"})");
  EXPECT_EQ(r.op, "decide");
  EXPECT_EQ(r.args, (nlohmann::json{{"decision_id", "d1"}, {"option", "publish"}, {"comment", ""}}));
  r = resolve_route("POST", "/v1/tasks", R"({"team":"t","input":"x"})");
  EXPECT_EQ(r.op, "submit");
  EXPECT_EQ(r.success_status, 202);
}

TEST(routes, resolve_rejects_with_reasons) {
  auto r = resolve_route("POST", "/v1/tasks", "{nope");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.err.message.find("body is not valid JSON"), std::string::npos);
  EXPECT_NE(r.err.message.find(" at byte "), std::string::npos) << r.err.message;
  r = resolve_route("POST", "/v1/tasks", "[1]");
  EXPECT_NE(r.err.message.find("body must be a JSON object, got array"), std::string::npos);
  r = resolve_route("PUT", "/v1/tasks", "");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.allow, "GET, POST");
  r = resolve_route("GET", "/v2/nothing", "");
  EXPECT_EQ(r.status, 404);
  r = resolve_route("GET", "/v1/tasks?limit=ten", "");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.err.message.find("'limit' must be a non-negative integer, got 'ten'"), std::string::npos);
  r = resolve_route("POST", "/v1/decisions/d1", R"({"option":3})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.err.message.find("'option'"), std::string::npos);
}

}  // namespace
}  // namespace troupe::protocols::control
