#pragma once
/// Decoding of the `submit` op / POST /v1/tasks body into a task_spec, with an
/// error that names the field, what was expected and what arrived.
#include <nlohmann/json.hpp>

#include "troupe/agents/task.hpp"
#include "troupe/base/result.hpp"

namespace troupe::protocols::wire {

/// Fields: team | agent (exactly one), input (string, required), priority
/// (0-9 or low|normal|high|urgent), idempotency_key, deadline_ms (> 0),
/// max_attempts (1-100), depends_on (array of task ids), metadata (object).
/// Unknown fields are rejected (a typo must not silently drop a setting).
base::result<agents::task_spec> parse_submit(const nlohmann::json& body);

/// Name of a JSON value's type for messages ("string", "number", ...).
const char* json_type_name(const nlohmann::json& j);

}  // namespace troupe::protocols::wire
