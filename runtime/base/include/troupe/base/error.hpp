#pragma once
/// Error vocabulary shared by every module. The names are stable: they are the
/// public error codes of the wire protocol and of task failures.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace troupe::base {

enum class errc : std::uint8_t {
  bad_request,
  unauthorized,
  forbidden,
  not_found,
  conflict,
  overloaded,
  unavailable,
  budget_exceeded,
  internal,
  // task failure reasons
  deadline_exceeded,
  dependency_failed,
  cancelled,
  provider_error,
  timeout,
  loop_limit,
  invalid_config,
};

/// Stable snake_case name of a code ("bad_request", ...).
std::string_view to_string(errc code) noexcept;
/// Inverse of to_string; nullopt for an unknown name.
std::optional<errc> errc_from_string(std::string_view name) noexcept;

/// An error: a code plus a human-readable message saying what was wrong and where.
struct error {
  errc code = errc::internal;
  std::string message;
  /// True when retrying the same operation later may succeed (429, 5xx, timeouts).
  bool retryable = false;
  /// A failed write that may have been applied all the same: a store's connection
  /// lost during its COMMIT. Whoever wrote must find out later, by reading.
  bool in_doubt = false;
};

inline error make_error(errc code, std::string message, bool retryable = false) {
  return error{code, std::move(message), retryable};
}

}  // namespace troupe::base
