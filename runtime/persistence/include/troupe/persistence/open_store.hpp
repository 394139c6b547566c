#pragma once
/// Opening a snapshot_store from the `store` URL of the config.
#include <cstddef>
#include <memory>
#include <string>

#include "troupe/base/result.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::persistence {

/// Opens the store named by `url` and checks that it is reachable now (it does
/// not connect lazily); it does not migrate (call migrate() next).
///
/// Accepted forms:
/// - `sqlite:PATH` with optional `?sync=full|normal&busy_timeout_ms=N`
///   (default sync=normal: durable against a crash of the process; WAL mode);
/// - `postgresql://...` or `postgres://...`, handed to libpq as is.
///
/// Errors: errc::invalid_config for a malformed or unknown URL (the message
/// says what was expected); errc::unavailable with the reason when the
/// database cannot be opened or reached. Messages never contain a password.
/// The returned store is single-threaded: one owner (the store actor) uses it.
[[nodiscard]] base::result<std::unique_ptr<base::snapshot_store>> open_store(
    const std::string& url);

/// How many more connections the store actor should open to `url` to overlap
/// commits (actors::store_options::extra_writers). 0 for SQLite: one writer at
/// a time, and a commit does not wait on a flush (synchronous=NORMAL). 3 for
/// PostgreSQL: a commit there mostly waits for its WAL flush, and commits in
/// flight together share one flush (measured in docs/benchmarks.md). The
/// environment variable TROUPE_PG_WRITERS=N (0-16) overrides it, for A/B runs.
std::size_t overlapped_writers(const std::string& url);

/// `url` with any password replaced by "***", safe for logs and error messages.
std::string redact_store_url(const std::string& url);

}  // namespace troupe::persistence
