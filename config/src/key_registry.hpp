#pragma once
/// Private lookups over the declared key table (declared_keys()).
#include <string>
#include <string_view>
#include <vector>

#include "troupe/config/config.hpp"

namespace troupe::config::detail {

/// The key declared at `pattern` ("teams[].max_queued"), or nullptr.
const key_info* find_key(std::string_view pattern);

/// Names of the keys declared directly under `parent` ("" for the top level,
/// "providers.*" for a provider object), in declaration order.
std::vector<std::string> child_keys(std::string_view parent);

}  // namespace troupe::config::detail
