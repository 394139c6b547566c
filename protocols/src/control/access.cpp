#include "troupe/protocols/control/access.hpp"

#include <algorithm>
#include <cctype>

namespace troupe::protocols::control {

using config::role;

const std::vector<op_rule>& op_table() {
  // One row per op. Reads and subscriptions are viewer work; anything that
  // changes tasks or agents needs an operator; reconfiguring or stopping the
  // daemon needs an admin.
  static const std::vector<op_rule> table = {
      {"hello", role::viewer, true},         {"subscribe", role::viewer, true},
      {"unsubscribe", role::viewer, true},   {"task", role::viewer, false},
      {"tasks", role::viewer, false},        {"agents", role::viewer, false},
      {"teams", role::viewer, false},        {"decisions", role::viewer, false},
      {"metrics", role::viewer, false},      {"audit", role::viewer, false},
      {"ready", role::viewer, false},        {"submit", role::operator_, false},
      {"cancel", role::operator_, false},    {"decide", role::operator_, false},
      {"pause", role::operator_, false},     {"resume", role::operator_, false},
      {"reload", role::admin, false},        {"shutdown", role::admin, false},
  };
  return table;
}

std::optional<role> required_role(std::string_view op) {
  for (const auto& rule : op_table())
    if (rule.op == op) return rule.minimal;
  return std::nullopt;
}

namespace {
int rank(role r) {
  switch (r) {
    case role::viewer: return 0;
    case role::operator_: return 1;
    case role::admin: return 2;
  }
  return 0;
}
}  // namespace

bool role_allows(role granted, role needed) { return rank(granted) >= rank(needed); }

std::string_view role_name(role r) {
  switch (r) {
    case role::viewer: return "viewer";
    case role::operator_: return "operator";
    case role::admin: return "admin";
  }
  return "viewer";
}

base::result<void> authorize(const principal& who, std::string_view op) {
  auto needed = required_role(op);
  if (!needed) return base::fail(base::errc::bad_request, "unknown op '" + std::string(op) + "'");
  if (!role_allows(who.granted, *needed))
    return base::fail(base::errc::forbidden,
                      "op '" + std::string(op) + "' needs role " + std::string(role_name(*needed)) +
                          "; token '" + who.name + "' has role " +
                          std::string(role_name(who.granted)));
  return {};
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the longer length whatever the content so timing leaks only lengths.
  const std::size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0U : 1U;
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

base::result<principal> authenticate(const config::control& settings, std::string_view token) {
  if (settings.tokens.empty()) return principal{"anonymous", role::admin};
  if (token.empty())
    return base::fail(base::errc::unauthorized,
                      "missing token: send 'Authorization: Bearer <token>' or ?access_token=");
  const config::token* match = nullptr;
  for (const auto& t : settings.tokens)
    if (constant_time_equal(t.value, token) && !t.value.empty() && match == nullptr) match = &t;
  if (match == nullptr) return base::fail(base::errc::unauthorized, "invalid token");
  return principal{match->name, match->granted};
}

std::string bearer_token(std::string_view header) {
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  constexpr std::string_view scheme = "bearer ";
  if (header.size() <= scheme.size()) return {};
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != scheme[i]) return {};
  header.remove_prefix(scheme.size());
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  while (!header.empty() && header.back() == ' ') header.remove_suffix(1);
  return std::string(header);
}

int http_status(base::errc code) {
  using base::errc;
  switch (code) {
    case errc::bad_request: return 400;
    case errc::unauthorized: return 401;
    case errc::budget_exceeded: return 402;
    case errc::forbidden: return 403;
    case errc::not_found: return 404;
    case errc::conflict: return 409;
    case errc::overloaded: return 429;
    case errc::unavailable: return 503;
    default: return 500;
  }
}

}  // namespace troupe::protocols::control
