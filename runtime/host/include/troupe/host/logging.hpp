#pragma once
/// Logging set-up for the troupe binary: spdlog with a text or JSON line format.
#include <string>

#include "troupe/base/result.hpp"

namespace troupe::host {

/// format: "text" | "json"; level: trace|debug|info|warn|error|critical|off.
[[nodiscard]] base::result<void> setup_logging(const std::string& format, const std::string& level);

}  // namespace troupe::host
