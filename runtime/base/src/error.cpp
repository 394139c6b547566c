#include "troupe/base/error.hpp"

#include <array>

namespace troupe::base {
namespace {
constexpr std::array<std::string_view, 16> names = {
    "bad_request",       "unauthorized",      "forbidden", "not_found",      "conflict",
    "overloaded",        "unavailable",       "budget_exceeded", "internal", "deadline_exceeded",
    "dependency_failed", "cancelled",         "provider_error",  "timeout",  "loop_limit",
    "invalid_config"};
}  // namespace

std::string_view to_string(errc code) noexcept {
  auto i = static_cast<std::size_t>(code);
  return i < names.size() ? names[i] : "internal";
}

std::optional<errc> errc_from_string(std::string_view name) noexcept {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<errc>(i);
  return std::nullopt;
}

}  // namespace troupe::base
