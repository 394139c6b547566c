#pragma once
/// HTTP routing of the control plane, free of any socket code: turns a method,
/// a request target and a body into what the server must do (answer locally,
/// call an op on the control_port, upgrade to WebSocket, or reject with a
/// status and a message saying what was wrong). Pure functions, thread-safe.
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "troupe/base/result.hpp"

namespace troupe::protocols::control {

/// What a request resolves to.
enum class route_kind { healthz, readyz, metrics, op, websocket, reject };

/// The outcome of routing one request: what to do and, for a rejection, the
/// status and the error to answer with.
struct route {
  route_kind kind = route_kind::reject;
  std::string label;            ///< route template for metrics ("/v1/tasks/{id}", "other")
  std::string op;               ///< route_kind::op: the control_port op
  nlohmann::json args = nlohmann::json::object();  ///< op arguments
  int success_status = 200;     ///< 202 for submit
  bool needs_auth = true;       ///< false for /healthz and /readyz
  // route_kind::reject
  int status = 0;               ///< 400, 404, 405, 426 ...
  base::error err;
  std::string allow;            ///< the Allow header value for 405
};

/// Splits "path?query" and decodes the query ("a=1&b=x%20y"). Later keys win.
std::map<std::string, std::string> parse_query(std::string_view target);
/// The path part of a request target, percent-decoded.
std::string target_path(std::string_view target);
/// Percent-decodes (and turns '+' into ' ' when `plus_is_space`).
std::string percent_decode(std::string_view s, bool plus_is_space = false);

/// Resolves a request. `body` is only parsed for routes that take one; a body
/// that is not JSON is rejected with "body is not valid JSON: <why> at byte N".
route resolve_route(std::string_view method, std::string_view target, std::string_view body);

/// The JSON error document {"error":{"code","message"}}.
std::string error_body(const base::error& e);

}  // namespace troupe::protocols::control
