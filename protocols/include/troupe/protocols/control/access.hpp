#pragma once
/// Access rules of the control plane, shared by the HTTP routes and the
/// WebSocket protocol: the op -> minimal role table, token authentication and
/// the base::errc -> HTTP status mapping. Pure functions, no I/O, thread-safe.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/base/result.hpp"
#include "troupe/config/config.hpp"
#include "troupe/protocols/control_port.hpp"

namespace troupe::protocols::control {

/// One row of the role table: an op and the least role allowed to run it.
struct op_rule {
  std::string_view op;
  config::role minimal;
  bool session_local;  ///< handled by the WebSocket session itself (hello, subscribe, ...)
};

/// The whole table, in documentation order. The single place that says who may
/// do what; HTTP and WebSocket both consult it.
const std::vector<op_rule>& op_table();

/// Least role needed for `op`; nullopt when the op is unknown.
std::optional<config::role> required_role(std::string_view op);

/// True when `granted` is at least `needed` (viewer < operator < admin).
bool role_allows(config::role granted, config::role needed);

/// "viewer" | "operator" | "admin".
std::string_view role_name(config::role r);

/// Checks that `who` may run `op`: errc::bad_request for an unknown op,
/// errc::forbidden (naming the op, the role needed and the role held) otherwise.
base::result<void> authorize(const principal& who, std::string_view op);

/// Compares two secrets in time that depends only on their lengths, not on
/// where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

/// Resolves the presented token. Without configured tokens everybody is
/// {"anonymous", admin}. With tokens, a missing or unknown token is
/// errc::unauthorized. Every configured token is compared (constant time) so the
/// answer time does not reveal which one nearly matched.
base::result<principal> authenticate(const config::control& settings, std::string_view token);

/// Extracts the token of an `Authorization: Bearer <token>` header value; empty
/// when the header is absent or uses another scheme.
std::string bearer_token(std::string_view authorization_header);

/// HTTP status for an error code: bad_request 400, unauthorized 401,
/// budget_exceeded 402, forbidden 403, not_found 404, conflict 409,
/// overloaded 429, unavailable 503, everything else 500.
int http_status(base::errc code);

}  // namespace troupe::protocols::control
