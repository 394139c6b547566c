#pragma once
/// The PostgreSQL implementation of base::snapshot_store over libpqxx (private header).
#include <memory>
#include <string>

#include "troupe/base/result.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::persistence::detail {

/// Connects to `url` (handed to libpq as is) and prepares the statements.
/// errc::invalid_config when libpq rejects the URL itself, errc::unavailable
/// (retryable) with the reason when the server cannot be reached. Does not migrate.
[[nodiscard]] base::result<std::unique_ptr<base::snapshot_store>> open_pg_store(
    const std::string& url);

}  // namespace troupe::persistence::detail
