#pragma once
/// The embedded SQLite implementation of base::snapshot_store (private header).
#include <memory>
#include <string>

#include "troupe/base/result.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::persistence::detail {

/// Durability of a commit: `normal` survives a crash of the process (what
/// kill -9 tests) but may lose the last commits on power loss; `full` also
/// survives power loss at the cost of an fsync per commit.
enum class sqlite_sync { normal, full };

/// Options parsed from `sqlite:PATH?sync=full&busy_timeout_ms=N`.
struct sqlite_options {
  std::string path;
  sqlite_sync sync = sqlite_sync::normal;
  int busy_timeout_ms = 5000;
};

/// Opens (creating if needed) the database file in WAL mode. Does not migrate.
/// errc::unavailable with SQLite's reason when the file cannot be opened or is
/// not a database.
[[nodiscard]] base::result<std::unique_ptr<base::snapshot_store>> open_sqlite_store(
    const sqlite_options& options);

}  // namespace troupe::persistence::detail
