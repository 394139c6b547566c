#pragma once
/// Versioned schema migrations for both SQL dialects.
///
/// Each step moves the schema from version N-1 to N and is applied in its own
/// transaction together with the update of the `schema_version` row, so a crash
/// in the middle of a migration leaves the database at a whole version.
#include <span>
#include <string>
#include <string_view>

namespace troupe::persistence::detail {

/// One numbered migration step; each SQL text may hold several statements.
struct migration {
  int version = 0;
  const char* description = "";
  const char* sqlite_sql = "";
  const char* postgres_sql = "";
};

/// All steps in order; the last one is base::store_schema_version (checked at
/// compile time).
std::span<const migration> migrations() noexcept;

/// Terminal task states, as a SQL list for IN (...) clauses.
inline constexpr const char* terminal_states_sql = "('succeeded','failed','cancelled')";
/// The same test as comparisons: the predicate of SQLite's pruning index since
/// schema version 5, which a query must repeat for the planner to use the index.
inline constexpr const char* sqlite_terminal_sql =
    "(state = 'succeeded' OR state = 'failed' OR state = 'cancelled')";

/// The message both stores give when the database is newer than this build.
std::string newer_schema_message(int database_version);

/// True for succeeded, failed and cancelled.
bool is_terminal_state(std::string_view state) noexcept;

}  // namespace troupe::persistence::detail
