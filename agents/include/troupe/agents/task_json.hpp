#pragma once
/// JSON forms of a task: the wire shape (control plane, HTTP), the snapshot stored
/// in the database (the wire shape without the derived RFC 3339 timestamps), and
/// the journal delta ("patch") that records a change without rewriting the whole task.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "troupe/agents/task.hpp"
#include "troupe/base/result.hpp"

namespace troupe::agents {

nlohmann::json to_json(const step_run& s);
nlohmann::json to_json(const decision_record& d);
nlohmann::json to_json(const task& t);
nlohmann::json to_json(const usage_cost& c);
nlohmann::json to_json(const base::error& e);

/// Rebuilds a task from its snapshot JSON. errc::bad_request naming the field on a malformed document.
base::result<task> task_from_json(const nlohmann::json& j);

/// A delta: task-level fields plus the steps and decisions that changed.
nlohmann::json make_patch(const task& t, const std::vector<std::size_t>& steps,
                          const std::vector<std::size_t>& decisions);
/// Applies a delta made by make_patch or patch_text to a task restored from an older snapshot.
base::result<void> apply_patch(task& t, const nlohmann::json& patch);

/// The stored forms, as text written directly (no JSON tree: they are written for
/// every step's result and every task's end). `snapshot_text(t)` parses to
/// `to_json(t)` and `patch_text(...)` to `make_patch(...)`, both without the
/// derived "created", "updated", "started" and "finished" strings, which
/// task_from_json and apply_patch never read. `t.metadata` must hold JSON text
/// (it is the submit's metadata as dumped); empty stands for {}.
std::string snapshot_text(const task& t);
std::string patch_text(const task& t, const std::vector<std::size_t>& steps,
                       const std::vector<std::size_t>& decisions);

}  // namespace troupe::agents
